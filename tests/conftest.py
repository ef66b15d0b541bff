"""Shared fixtures: every async test runs on asyncio and on trio, in virtual time."""

from __future__ import annotations

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
    rabbitmq_server,
    redis_server,
    session_server,
)

REQUIRED = bool(os.environ.get("CI"))
"""Under CI a broker test whose server is missing fails; elsewhere it is skipped."""


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


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitMQ]:
    """A RabbitMQ node of this test run's own (one per xdist worker)."""
    yield from session_server(rabbitmq_server(), required=REQUIRED)


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    """A Redis server of this test run's own, with AOF persistence on."""
    yield from session_server(redis_server(appendonly=True), required=REQUIRED)
