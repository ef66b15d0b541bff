"""Logging: the library's logger, its helpers, and the setup for applications.

The library itself never configures logging; `configure_logging` is for applications
and the CLI.

The message a task is handling is one ContextVar, set per message: binding three keys
with ``structlog.contextvars`` costs several microseconds per message, setting one
ContextVar a fraction of one. `merge_message_context` is the structlog processor that
adds ``message_id``, ``attempt`` and ``correlation_id`` to every event logged while a
message is handled.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any, Protocol

import structlog

from ._errors import BackendError, ConfigurationError

LEVELS = ["debug", "info", "warning", "error"]

#: The logger every foxactors module logs through.
logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("foxactors")


class _Properties(Protocol):
    @property
    def correlation_id(self) -> str | None: ...


class HandledMessage(Protocol):
    """What log lines take from the message being handled (a `Message` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def properties(self) -> _Properties: ...


#: The message being handled, if any.
current_message: ContextVar[HandledMessage | None] = ContextVar(
    "foxactors_current_message", default=None
)


def merge_message_context(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Structlog processor: add the handled message's id, attempt and correlation id.

    `configure_logging` installs it. An application that configures structlog itself
    adds ``foxactors.merge_message_context`` to its processors.
    """
    message = current_message.get()
    if message is not None:
        event.setdefault("message_id", message.id)
        event.setdefault("attempt", message.attempt)
        correlation_id = message.properties.correlation_id
        if correlation_id is not None:
            event.setdefault("correlation_id", correlation_id)
    return event


def describe(error: BaseException) -> str:
    """One line for logs: the error's type and message (never the message payload)."""
    return f"{type(error).__name__}: {error}"


def traceback_of(error: BaseException) -> BaseException | None:
    """What to log as ``exc_info`` with ``error``: nothing for a `BackendError`.

    A backend error says what the outside world did (a connection refused or lost);
    its one line is the whole story, and a broker outage would otherwise print a
    traceback for every reconnect attempt. Anything else may be a bug: traceback.
    """
    return None if isinstance(error, BackendError) else error


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
