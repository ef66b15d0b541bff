"""Shared fixtures: every async test runs on asyncio and on trio, in virtual time."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, settings

from foxactors.testing import anyio_backend_options
from foxactors.testing.servers import (
    RabbitMQ,
    RedisServer,
    ServerNotInstalled,
    rabbitmq_server,
    redis_server,
)


@pytest.fixture(autouse=True)
def _library_logs_go_to_stdlib() -> Iterator[None]:
    """Every test starts with structlog unconfigured: the library logs through stdlib.

    pytest's logging capture then keeps warnings and above for the report, cheaply.
    `structlog.testing.capture_logs` configures structlog for its block and leaves it
    "configured" with the defaults afterwards (a console renderer drawing every failed
    attempt's traceback); the reset keeps that from leaking into later tests.
    """
    yield
    if structlog.is_configured():
        structlog.reset_defaults()


settings.register_profile(
    "default", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "default")

BACKENDS = ["asyncio", "trio"]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Run the test on each backend, with a virtual clock."""
    return anyio_backend_options(request.param)


def _server(server: contextlib.AbstractContextManager[Any]) -> Iterator[Any]:
    """Enter a throwaway server; missing, skip here but fail under CI (which installs it)."""
    try:
        running = server.__enter__()
    except ServerNotInstalled as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    try:
        yield running
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitMQ]:
    """A RabbitMQ node of this test run's own (one per xdist worker)."""
    yield from _server(rabbitmq_server())


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """A Redis server of this test run's own, with AOF persistence on."""
    yield from _server(redis_server(appendonly=True))
