"""``foxactors run APP --processes N``: check everything once, then run the parent.

Whatever can be wrong with the command is found here, before a child starts, and
said in one line with a non-zero exit: a process count below 1, an application
that cannot be imported, overrides for an app that is not a `WorkerApp`, the
memory backend (it lives in one process: N processes would be N separate
queues), a port in use. Children that would only crash, one after another, are
never started.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import anyio

from foxactors._errors import ConfigurationError, FoxactorsError
from foxactors._logging import configure_logging
from foxactors._policy import RestartIntensity

from ._options import Overrides, check_processes, uses_memory_backend
from ._parent import ProcessPlan, ProcessSupervisor


def child_argv(args: argparse.Namespace) -> tuple[str, ...]:
    """The command of one child: ``foxactors run`` with the parent's options but its own."""
    argv = [sys.executable, "-m", "foxactors", "run", args.app]
    loop = args.loop or args.backend
    if loop is not None:
        argv += ["--loop", loop]
    argv += ["--log-format", args.log_format, "--log-level", args.log_level]
    for name, value in (
        ("--concurrency", args.concurrency),
        ("--prefetch", args.prefetch),
        ("--queue", args.queue),
    ):
        if value is not None:
            argv += [name, str(value)]
    return tuple(argv)


def plan_of(args: argparse.Namespace, import_app: Callable[[str], object]) -> ProcessPlan:
    """The parent's plan, once the command and the app are checked.

    Raises:
        ConfigurationError: What is wrong, in one line.
    """
    check_processes(args)
    processes = 1 if args.processes is None else args.processes
    try:
        imported = import_app(args.app)
    except ConfigurationError:
        raise
    except Exception as exc:  # the app's own import failed: said once, not by N children
        raise ConfigurationError(f"cannot import {args.app}: {type(exc).__name__}: {exc}") from exc
    app = Overrides.from_args(args).apply(imported, args.app)
    if processes > 1 and uses_memory_backend(app):
        raise ConfigurationError(
            f"--processes {processes}: {args.app} uses the memory backend, whose queue lives "
            "in one process; run it without --processes, or bind it to RabbitMQ or Redis"
        )
    http = None if args.http_port is None else (args.http_host, args.http_port)
    if http is not None:
        from foxactors.observe import check_http_port  # noqa: PLC0415 - the metrics extra

        check_http_port(*http)
    if args.reload:
        from . import _reload  # noqa: F401, PLC0415 - the reload extra, checked now
    return ProcessPlan(
        argv=child_argv(args),
        processes=processes,
        log_format=args.log_format,
        http=http,
        intensity=RestartIntensity(max_restarts=args.max_restarts, within=args.restart_window),
        reload=bool(args.reload),
        stop_timeout=args.stop_timeout,
    )


def run_processes(args: argparse.Namespace, import_app: Callable[[str], object]) -> int:
    """Run the parent of ``args`` (``foxactors run ... --processes N``); its exit status.

    ``import_app`` imports ``MODULE:ATTRIBUTE`` as the command does (raising
    `ConfigurationError` when it cannot): the app is checked once, here, before any
    child starts.
    """
    try:
        plan = plan_of(args, import_app)
    except (ConfigurationError, ImportError) as exc:
        print(f"foxactors: {exc}", file=sys.stderr)
        return 1
    except FoxactorsError as exc:
        print(f"foxactors: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    configure_logging(args.log_format, args.log_level)
    return anyio.run(ProcessSupervisor(plan).run)
