"""The ``foxactors`` command: run an application's tree until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

import structlog

from . import __version__
from ._errors import ConfigurationError, FoxactorsError
from ._logging import LEVELS, configure_logging
from ._spec import ChildSpec
from ._system import run


def load_app(target: str) -> ChildSpec:
    """Import ``module:attr`` and return its tree (a ChildSpec or a callable making one).

    Raises:
        ConfigurationError: The target is malformed, missing, or not a tree.
    """
    module_name, _, attr = target.partition(":")
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
    if not isinstance(app, ChildSpec):
        raise ConfigurationError(
            f"{target} is {app!r}; it must be a ChildSpec (e.g. Supervisor.spec(...)) "
            "or a function returning one"
        )
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``foxactors`` command; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="foxactors", description="Run foxactors applications.")
    parser.add_argument("--version", action="version", version=f"foxactors {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="run a tree until it stops or SIGINT/SIGTERM")
    run_cmd.add_argument("app", help="MODULE:ATTRIBUTE naming a ChildSpec or a function")
    run_cmd.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    run_cmd.add_argument("--log-format", choices=["console", "json"], default="console")
    run_cmd.add_argument("--log-level", choices=LEVELS, default="info")
    args = parser.parse_args(argv)

    configure_logging(args.log_format, args.log_level)
    log = structlog.get_logger("foxactors")
    try:
        app = load_app(args.app)
        exit = run(app, backend=args.backend)
    except FoxactorsError as exc:
        log.error("system.failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    log.info("system.stopped", exit=str(exit))
    return 0 if not exit.abnormal else 1
