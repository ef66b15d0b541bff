"""The layer order of docs/design.md, kept: every import points down or sideways.

Each module of the package is read as source (nothing is imported), and every import
it makes counts: at module level, under ``TYPE_CHECKING``, inside functions. Two rules:

1. A module imports only from its own layer or a lower one.
2. A private module (``_name``) is private to its package: a subpackage may use the
   private modules of the packages above it (the core is the package root), never
   those of a sibling package. Siblings talk through each other's ``__init__``.

A third test keeps the core free of import cycles, so each core module can be read
(and tested) on its own.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "foxactors"

# Lowest first. A module not named here takes the layer of its package (below).
LAYERS: list[tuple[str, list[str]]] = [
    (
        "core",
        [
            "foxactors._errors",
            "foxactors._ids",
            "foxactors._validate",
            "foxactors._redact",
            "foxactors._gc",
            "foxactors._waiter",
            "foxactors._batch",
            "foxactors._logging",
            "foxactors._lifecycle",
            "foxactors._mailbox",
            "foxactors._policy",
            "foxactors._spec",
            "foxactors._actor",
            "foxactors._cell",
            "foxactors._snapshot",
            "foxactors._system",
        ],
    ),
    ("supervision", ["foxactors._supervisor"]),
    (
        "messages",
        ["foxactors._message", "foxactors._ack", "foxactors._codec", "foxactors._tracing"],
    ),
    ("backends", ["foxactors.backends", "foxactors._redis_packing"]),
    ("pipeline", ["foxactors.pipeline"]),
    ("jobs", ["foxactors.jobs"]),
    (
        "ops",
        [
            "foxactors._cli",
            "foxactors._cli_jobs",
            "foxactors._cli_cron",
            "foxactors._processes",
            "foxactors._cli_settings",
            "foxactors._settings",
            "foxactors.__main__",
            "foxactors.ops",
            "foxactors.observe",
        ],
    ),
    ("testing", ["foxactors.testing"]),
    ("api", ["foxactors"]),  # the package root re-exports everything
]


def layer_of(module: str) -> int:
    """Index of the layer ``module`` belongs to (longest matching name wins)."""
    best: tuple[int, int] | None = None
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (
                best is None or len(name) > best[0]
            ):
                best = (len(name), index)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield module_name(path), path


def imports_of(module: str, path: Path) -> Iterator[tuple[int, str]]:
    """Every foxactors module ``module`` imports, with its line, wherever it stands."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "foxactors":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != "foxactors":
                continue
            # ``from . import _x`` and ``from .pkg import name``: a submodule or a name.
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                yield node.lineno, candidate if _exists(candidate) else target


def _exists(module: str) -> bool:
    relative = Path(*module.split("."))
    return (SRC / relative).with_suffix(".py").exists() or (SRC / relative / "__init__.py").exists()


def _private_owner(target: str) -> str | None:
    """The package whose private module ``target`` is, or None if it is public."""
    parts = target.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index])
    return None


def violations() -> list[str]:
    found: list[str] = []
    for module, path in modules():
        own = layer_of(module)
        own_package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for line, target in imports_of(module, path):
            where = f"{module}:{line}"
            if layer_of(target) > own:
                found.append(
                    f"{where}: {module} ({LAYERS[own][0]}) imports {target} "
                    f"({LAYERS[layer_of(target)][0]}), a higher layer"
                )
            owner = _private_owner(target)
            if owner is not None and not (
                own_package == owner or own_package.startswith(owner + ".")
            ):
                found.append(
                    f"{where}: {module} imports {target}, private to {owner}; "
                    f"use what {owner} exports"
                )
    return sorted(set(found))


def test_imports_point_down_and_stay_out_of_siblings_private_modules() -> None:
    assert violations() == []


def test_core_has_no_import_cycle() -> None:
    core = {m for m, _ in modules() if layer_of(m) == 0}
    graph = {
        m: {t for _, t in imports_of(m, p) if t in core and t != m}
        for m, p in modules()
        if m in core
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


PLANTED = {
    "upward": ("foxactors._cell", "from foxactors.pipeline import WorkerApp\n"),
    "upward, function-local": (
        "foxactors._mailbox",
        "def f() -> None:\n    from .backends import MemoryBackend  # noqa\n",
    ),
    "upward, type checking": (
        "foxactors._supervisor",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._message import Message\n",
    ),
    "sibling private": (
        "foxactors.pipeline._stage",
        "from foxactors.backends._memory import MemoryBackend\n",
    ),
}


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_a_planted_import_is_caught(
    case: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    module, line = PLANTED[case]
    target = PACKAGE.joinpath(*module.split(".")[1:]).with_suffix(".py")
    planted = tmp_path / "planted.py"
    planted.write_text(target.read_text() + "\n" + line)
    real_modules = modules

    def with_plant() -> Iterator[tuple[str, Path]]:
        for name, path in real_modules():
            yield name, planted if name == module else path

    monkeypatch.setitem(globals(), "modules", with_plant)
    assert any(module in v for v in violations()), case
