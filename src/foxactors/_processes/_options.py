"""The options of ``foxactors run`` that this package adds, and what they change.

``--processes``, ``--reload``, ``--max-restarts``, ``--restart-window`` and
``--stop-timeout`` shape the parent; ``--concurrency``, ``--prefetch`` and
``--queue`` override what a `WorkerApp` was built with, in a single process as in
every child.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

import attrs

from foxactors._errors import ConfigurationError
from foxactors._spec import ChildSpec
from foxactors.backends import MemoryBackend
from foxactors.pipeline import WorkerApp

#: Restarts tolerated within the window before the parent gives up (OTP's intensity).
MAX_RESTARTS = 5
#: The window of `MAX_RESTARTS`, in seconds.
RESTART_WINDOW = 60.0
#: Seconds a child has to exit after SIGTERM before the parent kills it (SIGKILL):
#: twice the default drain timeout, so that a full drain and the rest of a stop fit.
STOP_TIMEOUT = 60.0


def add_process_options(run_cmd: argparse.ArgumentParser) -> None:
    """Add the process and override options to the ``run`` command."""
    run_cmd.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help="run N worker processes under a parent that restarts one that dies and "
        "serves their merged metrics and health on --http-port",
    )
    run_cmd.add_argument(
        "--max-restarts",
        type=int,
        default=MAX_RESTARTS,
        metavar="N",
        help=f"with --processes: give up after more than N restarts within --restart-window "
        f"(default {MAX_RESTARTS})",
    )
    run_cmd.add_argument(
        "--restart-window",
        type=float,
        default=RESTART_WINDOW,
        metavar="SECONDS",
        help=f"the window of --max-restarts (default {RESTART_WINDOW:g})",
    )
    run_cmd.add_argument(
        "--stop-timeout",
        type=float,
        default=STOP_TIMEOUT,
        metavar="SECONDS",
        help=f"with --processes: kill (SIGKILL) a child still running this long after it was "
        f"told to stop (default {STOP_TIMEOUT:g}; longer than the app's drain timeout)",
    )
    run_cmd.add_argument(
        "--reload",
        action="store_true",
        help="development: restart the worker processes when a .py file under the current "
        "directory changes (the reload extra)",
    )
    run_cmd.add_argument(
        "--concurrency", type=int, default=None, metavar="N", help="a WorkerApp's worker actors"
    )
    run_cmd.add_argument(
        "--prefetch", type=int, default=None, metavar="N", help="a WorkerApp's prefetch"
    )
    run_cmd.add_argument(
        "--queue", default=None, metavar="NAME", help="the queue (or stream) a WorkerApp consumes"
    )


def wants_processes(args: argparse.Namespace) -> bool:
    """Whether the command runs a parent of worker processes (``--processes``, ``--reload``)."""
    return args.processes is not None or bool(args.reload)


@attrs.frozen
class Overrides:
    """``--concurrency``, ``--prefetch`` and ``--queue``: a WorkerApp's options, replaced.

    Attributes:
        concurrency: Worker actors, or None to keep the app's.
        prefetch: Unsettled deliveries at most, or None to keep the app's.
        queue: The queue to consume, or None to keep the app's.
    """

    concurrency: int | None = None
    prefetch: int | None = None
    queue: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Overrides:
        """The overrides given on the command line."""
        return cls(args.concurrency, args.prefetch, args.queue)

    def given(self) -> list[str]:
        """The options given, as written on the command line."""
        return [f"--{name}" for name, value in attrs.asdict(self).items() if value is not None]

    def apply(self, app: object, target: str) -> object:
        """``app`` with the overrides applied (unchanged when none is given).

        Raises:
            ConfigurationError: An override is given and ``app`` is not a `WorkerApp`,
                or a value is out of range (the message names the option).
        """
        given = self.given()
        if not given:
            return app
        if not isinstance(app, WorkerApp):
            raise ConfigurationError(
                f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to a "
                f"WorkerApp; {target} is "
                f"{type(app).__name__}: set them where the tree is built"
            )
        try:
            if self.concurrency is not None:
                app = app.with_concurrency_limit(self.concurrency)
            if self.prefetch is not None:
                app = app.with_prefetch(self.prefetch)
        except ConfigurationError as exc:
            option = "--concurrency" if "concurrency" in str(exc) else "--prefetch"
            raise ConfigurationError(f"{option}: {exc}") from None
        if self.queue is not None:
            backend = app.options.backend
            if backend is None:
                raise ConfigurationError(
                    f"--queue needs an app bound with with_backend(backend, queue); {target} "
                    "has no backend"
                )
            if not self.queue:
                raise ConfigurationError("--queue needs a queue name, got ''")
            app = app.with_backend(backend, self.queue)
        return app


def check_processes(args: argparse.Namespace) -> None:
    """Fail on a process count or restart limit that cannot be run.

    Raises:
        ConfigurationError: The value and how to fix it.
    """
    processes = 1 if args.processes is None else args.processes
    if processes < 1:
        raise ConfigurationError(
            f"--processes must be 1 or more, got {processes}; leave it out to run one "
            "process without a parent"
        )
    if args.max_restarts < 0:
        raise ConfigurationError(f"--max-restarts must be 0 or more, got {args.max_restarts}")
    if not args.restart_window > 0:
        raise ConfigurationError(
            f"--restart-window must be a number of seconds above 0, got {args.restart_window}"
        )
    if not args.stop_timeout > 0:
        raise ConfigurationError(
            f"--stop-timeout must be a number of seconds above 0, got {args.stop_timeout}"
        )


def uses_memory_backend(app: object) -> bool:
    """Whether ``app`` (a WorkerApp or a tree) consumes from a `MemoryBackend` anywhere.

    A tree is searched through its child specs' factories (``functools.partial``
    arguments, attrs values, collections), as `WorkerApp.build` and
    ``Supervisor.spec`` make them.
    """
    seen: set[int] = set()

    def search(value: Any, depth: int) -> bool:  # noqa: PLR0911 - one return per kind
        if depth > 12 or id(value) in seen:
            return False
        seen.add(id(value))
        if isinstance(value, MemoryBackend):
            return True
        if isinstance(value, WorkerApp):
            return search(value.options, depth + 1)
        if isinstance(value, ChildSpec):
            return search(value.factory, depth + 1)
        if isinstance(value, functools.partial):
            parts = [value.func, *value.args, *value.keywords.values()]
            return any(search(part, depth + 1) for part in parts)
        if attrs.has(type(value)):
            fields = attrs.fields(type(value))
            return any(search(getattr(value, f.name, None), depth + 1) for f in fields)
        if isinstance(value, list | tuple | set | frozenset):
            return any(search(part, depth + 1) for part in value)
        if isinstance(value, dict):
            return any(search(part, depth + 1) for part in value.values())
        return False

    return search(app, 0)
