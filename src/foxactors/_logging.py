"""Logging: the library's logger, its helpers, and the setup for applications.

The library itself never configures logging. Its events go to structlog's
configuration when the application has one (``structlog.configure`` was called:
by the application, by `configure_logging`, or by ``structlog.testing.capture_logs``),
and otherwise to stdlib logging, under the ``foxactors`` logger and its children, at
their levels: the application's logging configuration (a Django or FastAPI
``dictConfig``) decides what shows, and with none at all Python prints warnings and
errors on stderr and nothing else. `configure_logging` is for scripts and the CLI.

The message a task is handling is one ContextVar, set per message: binding keys
with ``structlog.contextvars`` costs several microseconds per message, setting one
ContextVar a fraction of one. `merge_message_context` is the structlog processor that
adds ``message_id``, ``message_type``, ``queue``, ``attempt``, ``tenant`` and
``correlation_id`` to every event logged while a message is handled.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any, Protocol, TextIO

import structlog

from ._errors import BackendError, ConfigurationError

LEVELS = ["debug", "info", "warning", "error"]

TENANT_HEADER = "x-tenant"
"""The header whose value log lines show as ``tenant`` (the jobs layer sets it)."""

_DEBUG = logging.DEBUG
_INFO = logging.INFO
_WARNING = logging.WARNING
_ERROR = logging.ERROR
_CRITICAL = logging.CRITICAL


class _Properties(Protocol):
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def message_type(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, Any]: ...


class HandledMessage(Protocol):
    """What log lines take from the message being handled (a `Message` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def queue(self) -> str: ...
    @property
    def properties(self) -> _Properties: ...


#: The message being handled, if any.
current_message: ContextVar[HandledMessage | None] = ContextVar(
    "foxactors_current_message", default=None
)


def message_fields(message: HandledMessage) -> dict[str, Any]:
    """The fields that name ``message`` in log lines (only those it has)."""
    properties = message.properties
    fields: dict[str, Any] = {"message_id": message.id, "attempt": message.attempt}
    if properties.message_type is not None:
        fields["message_type"] = properties.message_type
    if message.queue:
        fields["queue"] = message.queue
    tenant = properties.headers.get(TENANT_HEADER)
    if tenant is not None:
        fields["tenant"] = tenant
    if properties.correlation_id is not None:
        fields["correlation_id"] = properties.correlation_id
    return fields


def merge_message_context(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Structlog processor: add the fields of the message being handled to the event.

    They are its id, type, queue, attempt, tenant and correlation id (those it has).
    The library's own lines get them in any setup; an application that configures
    structlog itself adds ``foxactors.merge_message_context`` to its processors for
    its own lines logged in handlers to carry them too.
    """
    message = current_message.get()
    if message is not None:
        for key, value in message_fields(message).items():
            event.setdefault(key, value)
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


def attempt_of(attempt: int, most: int | None) -> str:
    """``"2 of 3"``, or ``"2"`` when the number of attempts is not known."""
    return str(attempt) if most is None else f"{attempt} of {most}"


def retry_in(delay: float) -> str:
    """What happens next to a message retried after ``delay`` seconds, for logs."""
    return f"retry in {delay:.1f}s" if delay >= 0.1 else f"retry in {delay:.2g}s"


# -- the stdlib side -------------------------------------------------------------------

_HIDDEN = frozenset({"event", "exc_info", "stack_info"})


def _show_attempt(event: MutableMapping[str, Any]) -> None:
    """Show ``attempt`` with ``max_attempts`` as "n of m" (both stay numbers in JSON)."""
    most = event.pop("max_attempts", None)
    attempt = event.get("attempt")
    if most is not None and isinstance(attempt, int):
        event["attempt"] = attempt_of(attempt, most)


class _Event(dict[str, Any]):
    """An event as a stdlib record's message.

    It is the event dict, for structlog's ``ProcessorFormatter`` (and JSON
    formatters that merge a dict message); any other formatter shows it as one line,
    ``event key=value ...`` (the traceback comes from the record's ``exc_info``).
    """

    __slots__ = ()

    def __str__(self) -> str:
        fields = {k: v for k, v in self.items() if k not in _HIDDEN and not k.startswith("_")}
        _show_attempt(fields)
        return " ".join([str(self.get("event", "")), *(f"{k}={v}" for k, v in fields.items())])


def to_record(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    """Structlog processor, last in a stdlib chain: hand the event to stdlib logging.

    Like ``structlog.stdlib.ProcessorFormatter.wrap_for_formatter``, so a
    ``ProcessorFormatter`` renders the event in full; besides, the record's message
    reads as a line to plain formatters and its ``exc_info`` carries the traceback.
    """
    kwargs: dict[str, Any] = {"extra": {"_logger": logger, "_name": method}}
    exc_info = event.get("exc_info")
    if exc_info:
        kwargs["exc_info"] = exc_info
    return (_Event(event),), kwargs


_STDLIB_CHAIN: list[Any] = [
    structlog.contextvars.merge_contextvars,
    merge_message_context,
    to_record,
]


class LibraryLogger:
    """The library's logger: the application's structlog setup if it has one, else stdlib.

    It is structlog's ``FilteringBoundLogger`` (``bind``, ``debug``, ``info``...), and
    decides at each call where the event goes: with structlog configured (by the
    application, `configure_logging`, or ``structlog.testing.capture_logs``), through
    that configuration; without, to the stdlib logger of its name, when that logger
    is enabled for the level (one cached check, nothing built for a line nobody sees).
    """

    __slots__ = ("_bound", "_context", "_name", "_std")

    def __init__(self, name: str, context: Mapping[str, Any] | None = None) -> None:
        self._name = name
        self._context: dict[str, Any] = dict(context or {})
        self._std = logging.getLogger(name)
        self._bound: Any = None  # the stdlib route, built on first use

    @property
    def name(self) -> str:
        """The stdlib logger name events go to when structlog is not configured."""
        return self._name

    def _emit(self, level: int, method: str, event: str, args: Any, kw: Any) -> Any:
        if structlog.is_configured():
            message = current_message.get()  # so that it needs no processor of ours
            if message is not None:
                kw = {**message_fields(message), **kw}
            target: Any = structlog.get_logger(self._name, **self._context)
            return getattr(target, method)(event, *args, **kw)
        if not self._std.isEnabledFor(level):
            return None
        bound = self._bound
        if bound is None:
            bound = self._bound = structlog.wrap_logger(
                self._std,
                processors=_STDLIB_CHAIN,
                wrapper_class=structlog.stdlib.BoundLogger,
                context_class=dict,
                **self._context,
            ).bind()
        if args:
            event = event % args
        return getattr(bound, method)(event, **kw)

    def bind(self, **new_values: Any) -> LibraryLogger:
        """A logger with ``new_values`` added to the context of every event."""
        return LibraryLogger(self._name, {**self._context, **new_values})

    def unbind(self, *keys: str) -> LibraryLogger:
        """A logger without ``keys`` in its context (KeyError if one is missing)."""
        context = dict(self._context)
        for key in keys:
            del context[key]
        return LibraryLogger(self._name, context)

    def try_unbind(self, *keys: str) -> LibraryLogger:
        """A logger without ``keys`` in its context (missing ones are fine)."""
        return LibraryLogger(self._name, {k: v for k, v in self._context.items() if k not in keys})

    def new(self, **new_values: Any) -> LibraryLogger:
        """A logger whose context is ``new_values`` only."""
        return LibraryLogger(self._name, new_values)

    def is_enabled_for(self, level: int) -> bool:
        """Whether the stdlib logger of this name is enabled for ``level``."""
        return self._std.isEnabledFor(level)

    def get_effective_level(self) -> int:
        """The effective level of the stdlib logger of this name."""
        return self._std.getEffectiveLevel()

    def debug(self, event: str, *args: Any, **kw: Any) -> Any:
        """Log ``event`` at debug."""
        return self._emit(_DEBUG, "debug", event, args, kw)

    def info(self, event: str, *args: Any, **kw: Any) -> Any:
        """Log ``event`` at info."""
        return self._emit(_INFO, "info", event, args, kw)

    def warning(self, event: str, *args: Any, **kw: Any) -> Any:
        """Log ``event`` at warning."""
        return self._emit(_WARNING, "warning", event, args, kw)

    warn = warning

    def error(self, event: str, *args: Any, **kw: Any) -> Any:
        """Log ``event`` at error."""
        return self._emit(_ERROR, "error", event, args, kw)

    err = error

    def exception(self, event: str, *args: Any, **kw: Any) -> Any:
        """Log ``event`` at error, with the exception being handled."""
        kw.setdefault("exc_info", True)
        return self._emit(_ERROR, "error", event, args, kw)

    def critical(self, event: str, *args: Any, **kw: Any) -> Any:
        """Log ``event`` at critical."""
        return self._emit(_CRITICAL, "critical", event, args, kw)

    fatal = critical

    def msg(self, event: str, *args: Any, **kw: Any) -> Any:
        """Log ``event`` at info."""
        return self._emit(_INFO, "info", event, args, kw)

    def log(self, level: int, event: str, *args: Any, **kw: Any) -> Any:
        """Log ``event`` at the stdlib ``level``."""
        method = logging.getLevelName(level).lower()
        if method not in ("debug", "info", "warning", "error", "critical"):
            method = "info"
        return self._emit(level, method, event, args, kw)

    async def adebug(self, event: str, *args: Any, **kw: Any) -> Any:
        """Log ``event`` at debug."""
        return self.debug(event, *args, **kw)

    async def ainfo(self, event: str, *args: Any, **kw: Any) -> Any:
        """Log ``event`` at info."""
        return self.info(event, *args, **kw)

    async def awarning(self, event: str, *args: Any, **kw: Any) -> Any:
        """Log ``event`` at warning."""
        return self.warning(event, *args, **kw)

    awarn = awarning

    async def aerror(self, event: str, *args: Any, **kw: Any) -> Any:
        """Log ``event`` at error."""
        return self.error(event, *args, **kw)

    async def aexception(self, event: str, *args: Any, **kw: Any) -> Any:
        """Log ``event`` at error, with the exception being handled."""
        return self.exception(event, *args, **kw)

    async def acritical(self, event: str, *args: Any, **kw: Any) -> Any:
        """Log ``event`` at critical."""
        return self.critical(event, *args, **kw)

    afatal = acritical

    async def amsg(self, event: str, *args: Any, **kw: Any) -> Any:
        """Log ``event`` at info."""
        return self.msg(event, *args, **kw)

    async def alog(self, level: int, event: str, *args: Any, **kw: Any) -> Any:
        """Log ``event`` at the stdlib ``level``."""
        return self.log(level, event, *args, **kw)


def get_logger(name: str = "foxactors", **context: Any) -> structlog.typing.FilteringBoundLogger:
    """The library's logger of ``name`` (a ``foxactors`` child), with ``context`` bound."""
    return LibraryLogger(name, context)


#: The logger every foxactors module logs through.
logger: structlog.typing.FilteringBoundLogger = get_logger("foxactors")


# -- configure_logging -------------------------------------------------------------------


class _Handler(logging.StreamHandler[TextIO]):
    """The handler `configure_logging` installs (and replaces when called again)."""


def configure_logging(fmt: str = "console", level: str = "info") -> None:
    """Set up logging for a script or the CLI: console lines or JSON, one per event.

    Installs one stdlib handler on the root logger, writing to stdout with
    structlog's ``ProcessorFormatter``, and routes structlog (the library's events and
    the application's own ``structlog.get_logger()`` lines) through stdlib logging,
    so stdlib records of other libraries come out in the same format. A failed
    attempt (``message.failed``, ``job.failed``) carries its traceback in both
    formats; other errors (an actor crash) show theirs in JSON, and on the console
    at debug. Calling it again replaces the earlier setup.

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
    stream = sys.stdout
    renderer: list[Any]
    if fmt == "json":
        tracebacks = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        renderer = [  # without the frames' locals: they hold payloads
            structlog.processors.ExceptionRenderer(tracebacks),
            structlog.processors.JSONRenderer(),
        ]
    else:
        console = structlog.dev.ConsoleRenderer(
            colors=stream.isatty(),
            # plain: a fancier one shows the frames' locals, and with them payloads
            exception_formatter=structlog.dev.plain_traceback,
        )
        renderer = [_attempt_for_console, _traceback_for_failures(level), console]
    stamp = structlog.processors.TimeStamper(fmt="iso" if fmt == "json" else "%H:%M:%S")
    before: list[Any] = [structlog.stdlib.add_log_level, stamp]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=before,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *before, *renderer],
    )
    handler = _Handler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *_STDLIB_CHAIN],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        context_class=dict,
        cache_logger_on_first_use=False,
    )


FAILURES = frozenset({"message.failed", "job.failed"})
"""The events of failed attempts: on the console, their tracebacks show at any level."""


def _traceback_for_failures(level: str) -> Any:
    """On the console, tracebacks of failed attempts, and of anything else at debug.

    An actor crash says what it is in one line; its traceback at debug keeps a
    supervised restart from filling the screen.
    """

    def processor(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        if level != "debug" and event.get("event") not in FAILURES:
            event.pop("exc_info", None)
        return event

    return processor


def _attempt_for_console(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    _show_attempt(event)
    return event
