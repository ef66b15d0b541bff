"""Logging setup for applications (the library itself never configures logging)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from ._context import merge_message_context
from ._errors import ConfigurationError

LEVELS = ["debug", "info", "warning", "error"]


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    """Configure structlog for an application: console lines or JSON, one per event.

    The library itself never configures logging; the CLI does, for the application.
    On the console an error shows as one line (its type and message); in JSON the
    full traceback is included.

    Args:
        fmt: ``"console"`` (readable lines) or ``"json"`` (one object per line).
        level: ``"debug"``, ``"info"``, ``"warning"`` or ``"error"``.

    Raises:
        ConfigurationError: An unknown format or level.
    """
    if fmt not in ("console", "json"):
        raise ConfigurationError(f"log format must be 'console' or 'json', got {fmt!r}")
    if level not in LEVELS:
        raise ConfigurationError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        merge_message_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso" if fmt == "json" else "%H:%M:%S"),
    ]
    if fmt == "json":
        processors = [
            *shared,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors = [
            *shared,
            _drop_traceback_unless_debug(level),
            structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty()),
        ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )


def _drop_traceback_unless_debug(level: str) -> Any:
    def processor(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        if level != "debug":
            event.pop("exc_info", None)
        return event

    return processor
