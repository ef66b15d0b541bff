"""The ``foxactors`` command: run an application's tree until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from ._cli_jobs import add_jobs_commands, run_jobs
from ._cli_settings import configure, run_settings
from ._errors import ConfigurationError, FoxactorsError
from ._logging import LEVELS, configure_logging, get_logger
from ._processes import (
    Overrides,
    add_process_options,
    follow_parent,
    run_processes,
    wants_processes,
)
from ._redact import redact
from ._spec import ChildSpec
from ._system import run

if TYPE_CHECKING:
    from ._settings import Settings
    from .backends import Backend, DeadLetter
    from .pipeline import WorkerApp

log = get_logger("foxactors")


def load_app(
    target: str,
    *,
    http: tuple[str, int] | None = None,
    overrides: Overrides | None = None,
    settings: Settings | None = None,
) -> ChildSpec:
    """Import ``module:attr`` and return its tree (a ChildSpec or a callable making one).

    With ``http`` (host, port), the tree serves its metrics and health there
    (``--http-port``, see `foxactors.observe`). With ``settings``, a `WorkerApp` is
    configured by them (see `foxactors.Settings`), and they are logged as
    ``settings``; then ``overrides`` replace its options (``--concurrency``,
    ``--prefetch``, ``--queue``).

    Raises:
        ConfigurationError: The target is malformed, missing, or not a tree.
    """
    app = configure(import_app(target), settings)
    if overrides is not None:
        app = overrides.apply(app, target)
    return _tree_of(target, app, http)


def import_app(target: str) -> Any:
    """Import ``module:attr`` and return what it names (called, if it is a function).

    Raises:
        ConfigurationError: The target is malformed or missing.
    """
    module_name, _, attr = target.partition(":")
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        raise ConfigurationError(_file_hint(target, module_name, attr))
    if not module_name or not attr:
        raise ConfigurationError(
            f"expected MODULE:ATTRIBUTE (for example examples.supervision_tree:app), got {target!r}"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # let 'foxactors run app:tree' find local modules
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(f"cannot import module {module_name!r}: {exc}") from exc
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None
    if callable(app) and not isinstance(app, ChildSpec):
        app = app()
    return app


def _tree_of(target: str, app: Any, http: tuple[str, int] | None) -> ChildSpec:
    from .pipeline import WorkerApp  # noqa: PLC0415 - the pipeline sits above the CLI's core

    if not isinstance(app, WorkerApp | ChildSpec):
        raise ConfigurationError(
            f"{target} is {app!r}; it must be a ChildSpec (e.g. Supervisor.spec(...)), "
            "a WorkerApp bound with with_backend(), or a function returning one"
        )
    if http is not None:
        from .observe import attach_http  # noqa: PLC0415 - the metrics extra, if asked

        spec = attach_http(app, host=http[0], port=http[1])
    else:
        spec = app.build() if isinstance(app, WorkerApp) else app
    if isinstance(app, WorkerApp):
        log.info("app.starting", **banner(app))
    else:  # a tree of the application's own: its pipelines say what they consume
        log.info("app.starting", app=target, root=app.id)
    return spec


def banner(app: WorkerApp) -> dict[str, object]:
    """What the start line of a worker app says: no credentials (URLs are redacted)."""
    options = app.options
    backend = options.backend
    shown = type(backend).__name__ if backend is not None else None
    url = getattr(backend, "url", None)
    if isinstance(url, str):
        shown = f"{shown} {redact(url)}"
    handlers = [f"{kind}: {_handler_name(h.handler)}" for kind, h in options.routes]
    if options.handler is not None:
        handlers.append(_handler_name(options.handler.handler))
    if options.batch is not None:
        handlers.append(f"batch {_handler_name(options.batch.handler)}")
    return {
        "app": options.name,
        "queue": options.queue,
        "backend": shown,
        "concurrency": options.concurrency,
        "prefetch": options.prefetch,
        "handlers": handlers,
    }


def _handler_name(handler: object) -> str:
    name = getattr(handler, "__qualname__", None) or getattr(handler, "id", None)
    return str(name or type(handler).__qualname__)


def _file_hint(target: str, module_name: str, attr: str) -> str:
    """Say how to name the module of a file given as ``path/to/file.py:attr``."""
    path = PurePath(module_name)
    stem = path.with_suffix("") if path.suffix == ".py" else path
    parts = [part for part in stem.parts if part != "."]
    where = "run from the directory the module path starts in, or put it on PYTHONPATH"
    if path.is_absolute() or ".." in parts:
        parts = [stem.name]
        where = f"run from {path.parent}, or put it on PYTHONPATH"
    example = f"{'.'.join(parts)}:{attr or 'app'}"
    return f"{target!r} names a file: use a module path, e.g. {example} ({where})"


def _list_dead_letters(path: str, *, as_json: bool) -> int:
    from .pipeline import read_dead_letters  # noqa: PLC0415 - only this command needs it

    try:
        letters = read_dead_letters(path)
    except (OSError, ValueError, TypeError) as exc:
        print(f"foxactors: cannot read dead letters from {path}: {exc}", file=sys.stderr)
        return 1
    _print_letters(letters, as_json=as_json)
    return 0


def _print_letters(letters: Sequence[DeadLetter], *, as_json: bool) -> None:
    for letter in letters:
        if as_json:
            print(
                json.dumps(
                    {
                        "id": letter.id,
                        "queue": letter.queue,
                        "reason": letter.reason,
                        "attempts": letter.attempts,
                        "failed_at": letter.failed_at,
                        "message_type": letter.properties.message_type,
                    }
                )
            )
        else:
            when = (
                datetime.fromtimestamp(letter.failed_at, tz=UTC).isoformat(timespec="seconds")
                if math.isfinite(letter.failed_at)
                else "?"
            )
            print(
                f"{when}  {letter.queue}  {letter.id}  attempts={letter.attempts}  {letter.reason}"
            )
    print(f"{len(letters)} dead letter(s)", file=sys.stderr)


def _broker_backend(broker: str, url: str) -> Backend:
    """The backend a ``--rabbitmq`` or ``--redis`` flag names, on ``url``."""
    from . import backends  # noqa: PLC0415 - only these commands need them

    brokers: dict[str, Callable[[str], Backend]] = {
        # lambdas: import only the broker asked for (the other extra may be missing)
        "rabbitmq": lambda url: backends.RabbitMQBackend(url),  # noqa: PLW0108
        "redis": lambda url: backends.RedisBackend(url),  # noqa: PLW0108
    }
    return brokers[broker](url)


def _broker_dead_letters(action: str, broker: str, url: str, queue: str, *, as_json: bool) -> int:
    import asyncio  # noqa: PLC0415 - the broker clients run on asyncio

    backend = _broker_backend(broker, url)
    letters = backend.dead_letter_queue(queue)

    async def act() -> None:
        try:
            if action == "list":
                _print_letters(await letters.list(), as_json=as_json)
            elif action == "replay":
                print(f"replayed {await letters.replay()} dead letter(s)")
            else:
                print(f"purged {await letters.purge()} dead letter(s)")
        finally:
            await backend.close()

    asyncio.run(act())
    return 0


def _http_error(host: str, port: int) -> str | None:
    """Why ``--http-port``/``--http-host`` cannot be served (the extra, the port), if so."""
    try:
        from .observe import check_http_port  # noqa: PLC0415 - the metrics extra

        check_http_port(host, port)
    except (ImportError, ConfigurationError) as exc:
        return str(exc)
    return None


LOOPS = ["asyncio", "trio", "uvloop"]
_LOOP_EXTRAS = {"trio": "pip install 'foxactors[trio]'", "uvloop": "pip install uvloop"}


def _loop_of(args: argparse.Namespace) -> dict[str, Any] | None:
    """The keywords of `run` for ``--loop`` (or the old ``--backend``); None: said why."""
    loop = args.loop
    if args.backend is not None:
        print(
            "foxactors: --backend is deprecated (it names the event loop, not the message "
            f"backend): use --loop {args.backend}",
            file=sys.stderr,
        )
        loop = loop or args.backend
    loop = loop or "asyncio"
    if loop != "asyncio" and importlib.util.find_spec(loop) is None:
        print(f"foxactors: --loop {loop} needs {loop}: {_LOOP_EXTRAS[loop]}", file=sys.stderr)
        return None
    if loop == "uvloop":
        return {"backend": "asyncio", "backend_options": {"use_uvloop": True}}
    return {"backend": loop}


def _top(url: str, *, interval: float, once: bool) -> int:
    try:
        from .observe import top  # noqa: PLC0415 - the metrics and top extras

        return top(url, interval=interval, once=once)
    except ImportError as exc:
        print(f"foxactors: {exc}", file=sys.stderr)
        return 1


def _add_run_command(commands: Any) -> None:
    """The ``run`` command and its options."""
    run_cmd = commands.add_parser("run", help="run a tree until it stops or SIGINT/SIGTERM")
    run_cmd.add_argument("app", help="MODULE:ATTRIBUTE naming a ChildSpec or a function")
    run_cmd.add_argument(
        "--loop",
        choices=LOOPS,
        default=None,
        help="the event loop: asyncio (the default), trio (the trio extra), or uvloop "
        "(asyncio on uvloop's loop, when uvloop is installed); the message backend is the "
        "app's own choice",
    )
    run_cmd.add_argument(  # the old name of --loop, kept for one release
        "--backend", choices=["asyncio", "trio"], default=None, help=argparse.SUPPRESS
    )
    run_cmd.add_argument(  # None: not given, so $FOXACTORS_LOG_FORMAT or the default decides
        "--log-format", choices=["console", "json"], default=None, help="default: console"
    )
    run_cmd.add_argument("--log-level", choices=LEVELS, default=None, help="default: info")
    run_cmd.add_argument(
        "--http-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve /metrics, /health, /ready and /tree on this port (0: a free one, logged "
        "as http.serving); needs the metrics extra",
    )
    run_cmd.add_argument(
        "--http-host",
        default=None,
        metavar="HOST",
        help="the address to serve on (default 127.0.0.1; 0.0.0.0 serves every interface)",
    )
    add_process_options(run_cmd)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``foxactors`` command; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="foxactors", description="Run foxactors applications.")
    parser.add_argument(
        "--version",
        action="version",
        version=f"foxactors {importlib.metadata.version('foxactors')}",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run_command(commands)
    top_cmd = commands.add_parser("top", help="a live view of a tree run with --http-port")
    top_cmd.add_argument("url", help="the base URL it serves, e.g. http://127.0.0.1:9464")
    top_cmd.add_argument(
        "--interval", type=float, default=1.0, help="seconds between refreshes (default 1)"
    )
    top_cmd.add_argument(
        "--once", action="store_true", help="print one frame (two scrapes, --interval apart)"
    )
    dead = commands.add_parser("dead-letters", help="list, replay or purge dead letters")
    dead_commands = dead.add_subparsers(dest="action", required=True)
    for action, text in [
        ("list", "list dead letters: of a JSON-lines file, or of a broker queue or stream"),
        ("replay", "move a queue's or stream's dead letters back (needs --rabbitmq or --redis)"),
        ("purge", "delete a queue's or stream's dead letters (needs --rabbitmq or --redis)"),
    ]:
        sub = dead_commands.add_parser(action, help=text)
        sub.add_argument("target", help="a JsonLinesSink file, or a queue or stream name")
        brokers = sub.add_mutually_exclusive_group()
        for broker in ("rabbitmq", "redis"):
            brokers.add_argument(
                f"--{broker}",
                metavar="URL",
                default=None,
                help=f"{broker} URL (default: $FOXACTORS_{broker.upper()}_URL, which keeps "
                "the password off the command line)",
            )
        sub.add_argument("--json", action="store_true", help="one JSON object per line")
    add_jobs_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "jobs":
        return run_jobs(args)
    if args.command == "top":
        return _top(args.url, interval=args.interval, once=args.once)
    if args.command == "dead-letters":
        choices = [(b, getattr(args, b)) for b in ("rabbitmq", "redis")]  # flags first
        choices += [
            (b, os.environ.get(f"FOXACTORS_{b.upper()}_URL")) for b in ("rabbitmq", "redis")
        ]
        broker, url = next(((b, u) for b, u in choices if u), ("", None))
        if url is None:
            if args.action != "list":
                parser.error(f"dead-letters {args.action} needs --rabbitmq URL or --redis URL")
            return _list_dead_letters(args.target, as_json=args.json)
        try:
            return _broker_dead_letters(args.action, broker, url, args.target, as_json=args.json)
        except FoxactorsError as exc:
            print(f"foxactors: {exc}", file=sys.stderr)
            return 1

    return _run(args)


def _run(args: argparse.Namespace) -> int:
    """``foxactors run``: settings, then one process or a parent of several."""
    try:
        chosen = run_settings(args)  # options, then FOXACTORS_* variables, then defaults
    except ConfigurationError as exc:
        print(f"foxactors: {exc}", file=sys.stderr)
        return 1
    http = chosen.http
    if wants_processes(args):  # the parent: its children read the same settings
        args.log_format, args.log_level = chosen.log_format, chosen.log_level
        args.http_host, args.http_port = http if http is not None else ("127.0.0.1", None)
        return run_processes(args, import_app)
    loop = _loop_of(args)
    if loop is None:
        return 1
    if http is not None and (error := _http_error(*http)):
        print(f"foxactors: {error}", file=sys.stderr)
        return 1
    configure_logging(chosen.log_format, chosen.log_level)
    follow_parent()  # a child of --processes: stop when the parent dies
    try:
        app = load_app(
            args.app, http=http, overrides=Overrides.from_args(args), settings=chosen.settings
        )
        exit = run(app, **loop)  # it freezes the start-up objects once started (freeze_gc)
    except FoxactorsError as exc:
        log.error("system.failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    log.info("system.stopped", exit=str(exit))
    return 0 if not exit.abnormal else 1
