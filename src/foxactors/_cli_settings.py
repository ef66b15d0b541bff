"""What ``foxactors run`` takes from `Settings`: options over the environment over code.

The command reads the ``FOXACTORS_*`` variables once, lets its own options outrank
them, configures a `WorkerApp` with the result and logs it as one ``settings`` line
(URLs without passwords). Without the ``settings`` extra the command runs as before,
unless a settings variable is set: then it stops, saying what to install, rather
than ignore what the deployment asked for.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

import attrs

from ._errors import ConfigurationError
from ._logging import get_logger
from ._redact import redact

if TYPE_CHECKING:
    from ._settings import Settings
    from .pipeline import WorkerApp

log = get_logger("foxactors")

#: The variables `Settings` reads (kept equal to its fields by tests/test_settings.py),
#: known here without importing pydantic, to tell when the extra is missing.
VARIABLES = (
    "FOXACTORS_RABBITMQ_URL",
    "FOXACTORS_REDIS_URL",
    "FOXACTORS_BROKER",
    "FOXACTORS_QUEUE",
    "FOXACTORS_CONCURRENCY",
    "FOXACTORS_PREFETCH",
    "FOXACTORS_MAX_RETRIES",
    "FOXACTORS_RETRY_BACKOFF",
    "FOXACTORS_RETRY_MAX_BACKOFF",
    "FOXACTORS_HTTP_HOST",
    "FOXACTORS_HTTP_PORT",
    "FOXACTORS_LOG_FORMAT",
    "FOXACTORS_LOG_LEVEL",
)


@attrs.frozen
class RunSettings:
    """What the command runs with, once options, environment and defaults are weighed.

    Attributes:
        settings: The settings (None without the extra and without variables).
        log_format: ``console`` or ``json``.
        log_level: The lowest level logged.
        http: (host, port) to serve the endpoints on, or None.
    """

    settings: Settings | None
    log_format: str
    log_level: str
    http: tuple[str, int] | None


def run_settings(args: argparse.Namespace) -> RunSettings:
    """Read the settings for ``foxactors run``: its options first, then the environment.

    Raises:
        ConfigurationError: A wrong value (the message names the variable or the
            option), or a settings variable set without the settings extra.
    """
    options = {
        "log_format": args.log_format,
        "log_level": args.log_level,
        "http_host": args.http_host,
        "http_port": args.http_port,
    }
    try:
        from ._settings import Settings  # noqa: PLC0415 - the settings extra, if installed
    except ImportError as missing:
        said = [v for v in VARIABLES if os.environ.get(v)]
        if said:
            raise ConfigurationError(f"{said[0]} is set, but {missing}") from None
        http = None if args.http_port is None else (args.http_host or "127.0.0.1", args.http_port)
        return RunSettings(None, args.log_format or "console", args.log_level or "info", http)
    settings = Settings().override(**options)
    http = None if settings.http_port is None else (settings.http_host, settings.http_port)
    return RunSettings(settings, settings.log_format, settings.log_level, http)


def configure(app: Any, settings: Settings | None) -> Any:
    """``app`` with ``settings`` applied if it is a `WorkerApp`; logs the ``settings`` line.

    An app bound to a backend in code keeps it (its options may be more than a URL);
    a broker variable it then does not follow is logged as ``settings.ignored``.

    Raises:
        ConfigurationError: The settings do not fit the app, or a `WorkerApp` has no
            backend from its code nor from the settings.
    """
    if settings is None:
        return app
    from ._settings import near_misses  # noqa: PLC0415 - the settings extra is there

    for name, meant in near_misses():  # read by nothing: a typo would pass unseen
        log.warning("settings.unknown_variable", variable=name, did_you_mean=meant)
    from .pipeline import WorkerApp  # noqa: PLC0415 - the pipeline sits above the CLI's core

    if not isinstance(app, WorkerApp):
        log.info("settings", **settings.redacted(), environment=list(settings.environment))
        return app
    bound = app.options.backend
    settings.apply(app, keep_backend=True)
    if bound is not None and (broker := settings.broker_name()) not in (None, "memory"):
        url = settings.rabbitmq_url if broker == "rabbitmq" else settings.redis_url
        if url != getattr(bound, "url", None):
            log.warning(
                "settings.ignored",
                variable=f"FOXACTORS_{str(broker).upper()}_URL",
                reason=f"{app.options.name!r} binds its own backend in code",
            )
    if app.options.backend is None or app.options.queue is None:
        raise ConfigurationError(
            f"{app.options.name!r} has no broker: bind one with with_backend(backend, queue), "
            "or set FOXACTORS_RABBITMQ_URL or FOXACTORS_REDIS_URL, and FOXACTORS_QUEUE"
        )
    log.info("settings", **line(settings, app), environment=list(settings.environment))
    return app


def line(settings: Settings, app: WorkerApp) -> dict[str, object]:
    """The settings a `WorkerApp` runs with: the app's values where settings left them."""
    options = app.options
    retry = options.retry
    backend = options.backend
    shown = type(backend).__name__
    url = getattr(backend, "url", None)
    if isinstance(url, str):
        shown = f"{shown} {redact(url)}"
    return {
        **settings.redacted(),
        "backend": shown,
        "queue": options.queue,
        "concurrency": options.concurrency,
        "prefetch": options.prefetch,
        "max_retries": retry.max_retries if retry is not None else 0,
        "retry_backoff": retry.initial_backoff if retry is not None else None,
        "retry_max_backoff": retry.max_backoff if retry is not None else None,
    }
