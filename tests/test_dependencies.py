"""Every module the package imports at load time is the standard library's or declared.

The test environment has more installed than a user's (trio, hypothesis, the brokers'
clients), so an undeclared import would pass every other test and fail on a fresh
machine. Imports inside functions or ``try`` blocks are optional by construction.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

import foxactors.backends

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "foxactors"
# module name -> distribution name, where they differ
DISTRIBUTIONS = {
    "attr": "attrs",
    "redis": "redis",
    "aio_pika": "aio-pika",
    "aiormq": "aio-pika",  # aio-pika's own dependencies, which come with it
    "pamqp": "aio-pika",
    "prometheus_client": "prometheus-client",
}


def declared(extra: str | None = None) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return {re.split(r"[<>=\[ ;]", spec, maxsplit=1)[0].lower() for spec in specs}


def load_time_imports(path: Path) -> set[str]:
    """Top-level module names imported when ``path`` is loaded (not in try/def)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"foxactors", "__future__"}


# A broker's folder may import its extra: its __init__ turns a missing one into a hint.
# So may the Redis job store's link, which `RedisJobStore()` imports when it is built.
BROKERS = {
    SOURCE / "backends" / "rabbitmq": "rabbitmq",
    SOURCE / "backends" / "redis": "redis",
    SOURCE / "jobs" / "_redis_link.py": "redis",
    # foxactors.observe's __init__ turns a missing metrics extra into a hint
    SOURCE / "observe": "metrics",
    SOURCE / "observe" / "_top.py": "top",
    # the pytest plugin: loaded by pytest (its entry point), so pytest is there
    SOURCE / "testing" / "_plugin.py": "testing",
}


def test_the_core_imports_only_declared_dependencies() -> None:
    base = declared()
    for path in sorted(SOURCE.rglob("*.py")):
        allowed = base
        for folder, extra in BROKERS.items():
            if (folder == path or folder in path.parents) and path.name != "__init__.py":
                allowed = allowed | declared(extra)
        for name in load_time_imports(path):
            assert DISTRIBUTIONS.get(name, name).lower() in allowed, (
                f"{path.relative_to(ROOT)} imports {name!r} at load time, but it is not "
                "a declared dependency: declare it, or import it where it is needed"
            )


@pytest.mark.parametrize(
    ("name", "client", "extra"),
    [("RabbitMQBackend", "aio_pika", "rabbitmq"), ("RedisBackend", "redis", "redis")],
)
def test_a_broker_without_its_extra_says_what_to_install(
    name: str, client: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in list(sys.modules):  # as in a fresh process without the client
        if module == client or module.startswith((f"{client}.", f"foxactors.backends.{extra}")):
            monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, client, None)  # None: "import client" fails
    with pytest.raises(ImportError, match=re.escape(f"pip install 'foxactors[{extra}]'")):
        getattr(foxactors.backends, name)


def test_the_broker_clients_are_declared_as_extras() -> None:
    assert {"aio-pika"} <= declared("rabbitmq")
    assert {"redis", "hiredis"} <= declared("redis")


def test_every_extra_the_docs_name_is_declared() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    named = set()
    for page in [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]:
        for group in re.findall(r"(?:foxactors|\.)\[([\w,-]+)\]", page.read_text()):
            named.update(group.split(","))
    assert named
    assert named <= set(extras)


def test_users_can_install_what_the_docs_use() -> None:
    index = (ROOT / "docs" / "index.md").read_text()
    assert 'pip install ".[redis]"' in index  # from the source tree: not on the index yet
    assert not re.search(r"pip install '?foxactors", index)
    testing = (ROOT / "docs" / "testing.md").read_text()
    assert "pip install 'foxactors[testing]'" in testing
    assert {"trio", "hypothesis"} <= declared("testing")  # the snippets run on trio
    assert {"trio"} <= declared("trio")


def test_the_redis_job_store_without_its_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in list(sys.modules):  # as in a fresh process without redis-py
        if module == "redis" or module.startswith(("redis.", "foxactors.jobs._redis_link")):
            monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "redis", None)
    from foxactors.jobs import RedisJobStore  # noqa: PLC0415 - the package loads without it

    with pytest.raises(ImportError, match=re.escape("pip install 'foxactors[redis]'")):
        RedisJobStore("redis://127.0.0.1:1")
