"""Shared fixtures: every async test runs on asyncio and on trio, in virtual time."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, settings

from foxactors.testing import anyio_backend_options
from foxactors.testing.servers import RabbitMQ, ServerNotInstalled, rabbitmq_server

# Keep test output readable: lifecycle events at info and above only. Tests that
# assert on events use structlog.testing.capture_logs, which bypasses this.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))

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
    """A RabbitMQ node of this test run's own (one per xdist worker).

    Missing, it skips the broker tests on a developer's machine and fails them under
    CI, where scripts/test.sh installs it first.
    """
    try:
        server = rabbitmq_server()
        broker = server.__enter__()
    except ServerNotInstalled as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    try:
        yield broker
    finally:
        server.__exit__(None, None, None)
