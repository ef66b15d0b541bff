"""`Settings`: what a deployment decides, read from ``FOXACTORS_*`` variables and from code.

Precedence, highest first: the command line's options (`Settings.override`), the
environment, then the values code passes (``Settings(concurrency=8)``: defaults the
environment may change), then the built-in defaults. A value left unset (``None``)
leaves the app's own choice alone, so `Settings.apply` changes only what was said.

This module sits in the ops layer: it may build backends and configure a `WorkerApp`;
nothing below it imports it.
"""

from __future__ import annotations

import difflib
import os
from contextvars import ContextVar
from typing import TYPE_CHECKING, Annotated, Any, Literal

import attrs

from ._errors import ConfigurationError
from ._redact import redact

try:
    from pydantic import Field, PrivateAttr, ValidationError, field_validator
    from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
except ImportError as missing:  # pragma: no cover - the test environment has the extra
    raise ImportError(
        f"foxactors.Settings needs the settings extra ({missing.name} is missing): "
        "pip install 'foxactors[settings]'"
    ) from missing

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .backends import Backend
    from .pipeline import WorkerApp

PREFIX = "FOXACTORS_"
BROKERS = ("rabbitmq", "redis", "memory")
SCHEMES = {
    "rabbitmq_url": ("amqp://", "amqps://"),
    "redis_url": ("redis://", "rediss://", "unix://"),
}
URLS = tuple(SCHEMES)
# While `Settings.override` builds its result: the options given, which outrank the
# environment (so it is not read again) and which its errors name as options.
_OVERRIDE: ContextVar[dict[str, Any] | None] = ContextVar("_OVERRIDE", default=None)

# What a valid value looks like, per field: the second half of an error's one line.
EXPECTED = {
    "rabbitmq_url": "must be a URL starting with amqp:// or amqps://",
    "redis_url": "must be a URL starting with redis://, rediss:// or unix://",
    "broker": "must be one of rabbitmq, redis, memory",
    "queue": "must be a non-empty queue name",
    "concurrency": "must be an integer >= 1",
    "prefetch": "must be an integer >= 1",
    "max_retries": "must be an integer >= 0",
    "retry_backoff": "must be a number of seconds >= 0",
    "retry_max_backoff": "must be a number of seconds >= 0",
    "http_host": "must be a host name or address",
    "http_port": "must be an integer from 0 to 65535",
    "log_format": "must be console or json",
    "log_level": "must be one of debug, info, warning, error",
}


class SettingsError(ConfigurationError):
    """A setting has a wrong value; the message names its variable (or option) and the fix.

    Raised by `Settings()` for a bad ``FOXACTORS_*`` variable or keyword, by
    `Settings.override` for a bad command-line option, and by `Settings.backend` when
    the broker is not said or said twice. Correct the value and start again.
    """


def variable(field: str) -> str:
    """The environment variable of ``field``: ``concurrency`` -> ``FOXACTORS_CONCURRENCY``."""
    return PREFIX + field.upper()


def _environ() -> dict[str, str]:
    """The process's ``FOXACTORS_*`` variables that are set and not empty, by upper name."""
    return {k.upper(): v for k, v in os.environ.items() if k.upper().startswith(PREFIX) and v}


def near_misses() -> list[tuple[str, str]]:
    """``FOXACTORS_*`` variables set that are no setting but look like one, with the setting.

    ``FOXACTORS_CONCURENCY`` gives ``("FOXACTORS_CONCURENCY", "FOXACTORS_CONCURRENCY")``.
    Variables far from every setting are the application's own, and left alone.
    """
    known = [field.upper() for field in EXPECTED]  # compared without the shared prefix
    found = []
    for name in sorted(_environ()):
        rest = name.removeprefix(PREFIX)
        if rest not in known and (close := difflib.get_close_matches(rest, known, 1, 0.85)):
            found.append((name, PREFIX + close[0]))
    return found


def _shown(field: str, value: object) -> str:
    """``value`` as an error quotes it: a URL without its password."""
    if field in URLS and isinstance(value, str):
        return repr(redact(value))
    return repr(value)


def _describe(error: ValidationError, name: Callable[[str], tuple[str, object]]) -> str:
    """One line for all that is wrong: ``NAME='value': must be ...``, joined by ``; ``."""
    lines: list[str] = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        if field not in EXPECTED:  # an unknown keyword (extra="forbid")
            lines.append(f"{field!r} is not a setting; the settings are {', '.join(EXPECTED)}")
            continue
        label, value = name(field)
        line = f"{label}={_shown(field, value)}: {EXPECTED[field]}"
        if line not in lines:
            lines.append(line)
    return "; ".join(lines)


def _no_bool(value: object) -> object:
    """Refuse True/False where a number is meant (pydantic would take them as 1/0)."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")  # pydantic turns ValueError into its error
    return value


Count = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Settings(BaseSettings):
    """What a deployment decides: broker, queue, concurrency, retry, ports, logging.

    Read from ``FOXACTORS_<NAME>`` variables (``FOXACTORS_CONCURRENCY=16``) and from
    the keywords code passes, which the environment overrides (code gives defaults, a
    deployment changes them). ``None`` means "not said": `apply` leaves the app's own
    value. URLs are shown without their passwords (`redacted`, ``repr``).

    Example:
        ```python
        settings = Settings(queue="emails")  # FOXACTORS_QUEUE may say otherwise
        app = settings.apply(WorkerApp("emails").add_worker(send))
        ```

    Raises:
        SettingsError: A wrong value, naming its variable, e.g.
            ``FOXACTORS_CONCURRENCY='abc': must be an integer >= 1``.
        ImportError: The ``settings`` extra is not installed.
    """

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        case_sensitive=False,
        env_ignore_empty=True,  # FOXACTORS_QUEUE= is unset, not an empty name
        extra="forbid",
        frozen=True,
    )

    rabbitmq_url: str | None = None
    """RabbitMQ URL (``amqp://`` or ``amqps://``); password redacted wherever shown."""
    redis_url: str | None = None
    """Redis URL (``redis://``, ``rediss://`` or ``unix://``); password redacted."""
    broker: Literal["rabbitmq", "redis", "memory"] | None = None
    """Which broker `backend` builds; by default the one whose URL is set."""
    queue: Annotated[str, Field(min_length=1)] | None = None
    """The queue (RabbitMQ) or stream (Redis) the app consumes."""
    concurrency: Count | None = None
    """Worker actors: messages handled at once (the app's own by default, 8)."""
    prefetch: Count | None = None
    """Unsettled deliveries at most (the app's own by default, 100)."""
    max_retries: Annotated[int, Field(ge=0)] | None = None
    """Retries after the first attempt; 0 sends failures to the dead letters."""
    retry_backoff: Seconds | None = None
    """Delay before the first retry, seconds; doubles each retry."""
    retry_max_backoff: Seconds | None = None
    """Cap on any retry delay, seconds."""
    http_host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    """Address of /metrics, /health, /ready, /tree (loopback unless told)."""
    http_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    """Serve the endpoints on this port (0: a free one); unset: not served."""
    log_format: Literal["console", "json"] = "console"
    """``foxactors run``'s log lines: readable (console) or one JSON object each."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """The lowest level logged by ``foxactors run``."""

    _environment: tuple[str, ...] = PrivateAttr(default=())

    def __init__(self, **values: Any) -> None:
        given = _OVERRIDE.get()
        environ = _environ() if given is None else {}

        def name(field: str) -> tuple[str, object]:
            if given is not None and field in given:
                return "--" + field.replace("_", "-"), given[field]
            if variable(field) in environ:  # the environment wins, so its value failed
                return variable(field), environ[variable(field)]
            return field, values.get(field)

        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_describe(exc, name)) from None
        read = [variable(f) for f in type(self).model_fields if variable(f) in environ]
        self._environment = tuple(read)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment first, then code: code gives defaults a deployment overrides.

        No ``.env`` file and no secrets directory: the process environment is the one
        place a deployment speaks, so what runs is what ``env`` shows.
        """
        if _OVERRIDE.get() is not None:  # `override`: the values are all given
            return (init_settings,)
        return (env_settings, init_settings)

    @field_validator("concurrency", "prefetch", "max_retries", "http_port", mode="before")
    @classmethod
    def _integers_are_not_booleans(cls, value: object) -> object:
        return _no_bool(value)

    @field_validator("retry_backoff", "retry_max_backoff", mode="before")
    @classmethod
    def _seconds_are_not_booleans(cls, value: object) -> object:
        return _no_bool(value)

    @field_validator("log_format", "log_level", "broker", mode="before")
    @classmethod
    def _words_ignore_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("rabbitmq_url", "redis_url")
    @classmethod
    def _url_scheme(cls, value: str | None, info: Any) -> str | None:
        if value is not None and not value.lower().startswith(SCHEMES[info.field_name]):
            raise ValueError("wrong scheme")
        return value

    @property
    def environment(self) -> tuple[str, ...]:
        """The ``FOXACTORS_*`` variables these settings took a value from."""
        return self._environment

    def override(self, **options: Any) -> Settings:
        """These settings with ``options`` (not ``None``) above all: the command line's.

        Errors name the option as typed, e.g. ``--http-port=-1: must be an integer
        from 0 to 65535``.

        Raises:
            SettingsError: A wrong value.
        """
        given = {k: v for k, v in options.items() if v is not None}
        if not given:
            return self
        merged = {**{f: getattr(self, f) for f in self.model_fields_set}, **given}
        token = _OVERRIDE.set(given)
        try:
            result = type(self)(**merged)
        finally:
            _OVERRIDE.reset(token)
        result._environment = tuple(
            v for v in self._environment if v not in {variable(f) for f in given}
        )
        return result

    def redacted(self) -> dict[str, Any]:
        """Every setting, URLs without their passwords: what may be logged or shown."""
        return {f: _redacted(f, getattr(self, f)) for f in type(self).model_fields}

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for field, value in super().__repr_args__():
            yield field, _redacted(str(field), value)

    def broker_name(self) -> str | None:
        """The broker these settings name: `broker`, or the one whose URL is set.

        Raises:
            SettingsError: Both URLs are set and `broker` does not choose.
        """
        if self.broker is not None:
            return self.broker
        urls = (("rabbitmq", self.rabbitmq_url), ("redis", self.redis_url))
        named = [broker for broker, url in urls if url]
        if len(named) > 1:
            raise SettingsError(
                "FOXACTORS_RABBITMQ_URL and FOXACTORS_REDIS_URL are both set: choose one "
                "with FOXACTORS_BROKER=rabbitmq or FOXACTORS_BROKER=redis"
            )
        return named[0] if named else None

    def backend(self) -> Backend:
        """A backend on the broker these settings name, with its default options.

        For options of its own (leases, codecs), build the backend in code from the
        URL instead: ``RedisBackend(settings.redis_url, leases=...)``.

        Raises:
            SettingsError: No broker is named, both are, or the named one has no URL.
        """
        from . import backends  # noqa: PLC0415 - a broker's client loads only when asked

        broker = self.broker_name()
        if broker is None:
            raise SettingsError(
                "no broker: set FOXACTORS_RABBITMQ_URL or FOXACTORS_REDIS_URL "
                "(or FOXACTORS_BROKER=memory for a backend inside this process)"
            )
        if broker == "memory":
            return backends.MemoryBackend()
        url = self.rabbitmq_url if broker == "rabbitmq" else self.redis_url
        if url is None:
            raise SettingsError(f"FOXACTORS_BROKER={broker} needs {variable(broker + '_url')}")
        if broker == "rabbitmq":
            return backends.RabbitMQBackend(url)
        return backends.RedisBackend(url)

    def apply(self, app: WorkerApp, *, keep_backend: bool = False) -> WorkerApp:
        """Configure ``app`` (a `WorkerApp`) with what these settings say; return it.

        Sets the concurrency, the prefetch and the retry policy (the app's policy with
        the retry settings changed; retries turned on if the app had none), and binds
        the broker (`backend`) and the queue when named. With ``keep_backend``, an app
        already bound to a backend keeps it (``foxactors run`` does so: a backend built
        in code may carry options the settings cannot say). Unset values change nothing.

        Raises:
            SettingsError: The values do not fit together, or a broker without a queue.
        """
        from .pipeline import RetryPolicy  # noqa: PLC0415 - a higher layer's builder

        options = app.options
        if self.concurrency is not None:
            app.with_concurrency_limit(self.concurrency)
        if self.prefetch is not None:
            app.with_prefetch(self.prefetch)
        retry = {
            "max_retries": self.max_retries,
            "initial_backoff": self.retry_backoff,
            "max_backoff": self.retry_max_backoff,
        }
        changed: dict[str, Any] = {k: v for k, v in retry.items() if v is not None}
        if changed:
            try:
                app.with_retry(attrs.evolve(options.retry or RetryPolicy(), **changed))
            except ConfigurationError as exc:
                said = ", ".join(
                    f"{variable(f)}={getattr(self, f)!r}"
                    for f in ("max_retries", "retry_backoff", "retry_max_backoff")
                    if getattr(self, f) is not None
                )
                raise SettingsError(f"{said}: {exc}") from None
        backend = options.backend
        if self.broker_name() is not None and not (keep_backend and backend is not None):
            backend = self.backend()
        queue = self.queue or options.queue
        if backend is not None and backend is not options.backend and queue is None:
            raise SettingsError(
                f"the broker is set but no queue: set FOXACTORS_QUEUE, or bind one with "
                f"with_backend() in {options.name!r}"
            )
        if backend is not None and queue is not None:
            app.with_backend(backend, queue)
        return app


def _redacted(field: str, value: Any) -> Any:
    return redact(value) if field in URLS and isinstance(value, str) else value
