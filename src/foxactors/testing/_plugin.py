"""The pytest plugin (entry point ``foxactors``): fixtures for testing foxactors apps.

Installed with the ``testing`` extra; pytest loads it by itself. Its fixtures:

- ``foxactors_anyio_backend``: asyncio and trio, each in virtual time; return it from
  your ``anyio_backend`` fixture (trio's case is skipped, saying so, without trio);
- ``memory_backend``: a fresh `MemoryBackend`;
- ``foxactors_harness``: a `Harness` on that backend (``running``, ``join``, ``drain``);
- ``virtual_clock``: the test's `VirtualClock` (``now``, ``advance``, ``wall``);
- ``foxactors_redis``, ``foxactors_rabbitmq``: a throwaway server for the session,
  started only when a test asks for one; skipped when the server is not installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest

from foxactors.backends import MemoryBackend

from ._clock import VirtualClock, anyio_backend_options, require_virtual_time
from ._harness import Harness
from .servers import RabbitMQ, RedisServer, rabbitmq_server, redis_server, session_server

NO_TRIO = (
    "trio is not installed: this test runs on asyncio only "
    "(pip install 'foxactors[testing]' to run it on trio too)"
)


@pytest.fixture(params=["asyncio", "trio"])
def foxactors_anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Run on asyncio and on trio, each in virtual time: return it from ``anyio_backend``."""
    if request.param == "trio" and importlib.util.find_spec("trio") is None:
        pytest.skip(NO_TRIO)
    return anyio_backend_options(request.param)


@pytest.fixture
def memory_backend() -> MemoryBackend:
    """A fresh memory backend."""
    return MemoryBackend()


@pytest.fixture
def foxactors_harness(memory_backend: MemoryBackend) -> Harness:
    """A `Harness` running apps on ``memory_backend``."""
    return Harness(memory_backend)


@pytest.fixture
async def virtual_clock() -> VirtualClock:
    """The test's virtual clock; an error if the test runs in real time."""
    require_virtual_time("the virtual_clock fixture")
    return VirtualClock()


@pytest.fixture(scope="session")
def foxactors_redis() -> Iterator[RedisServer]:
    """A redis-server of the test session's own on loopback (``.url``)."""
    yield from session_server(redis_server())


@pytest.fixture(scope="session")
def foxactors_rabbitmq() -> Iterator[RabbitMQ]:
    """A rabbitmq-server node of the test session's own on loopback (``.url``)."""
    yield from session_server(rabbitmq_server())
