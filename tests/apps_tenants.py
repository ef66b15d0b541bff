"""A fair-queue app for tests/test_tenants_processes.py, run as separate processes.

``TENANTS_REDIS_URL`` and ``TENANTS_QUEUE`` say where it consumes; ``TENANTS_LIMIT`` is
each tenant's limit of deliveries out (unset: no limit). The handler writes
``<tenant> start <pid>`` and ``<tenant> end <pid>`` to the Redis list
``<queue>:events`` around a short piece of work, so the test can replay, in the
server's one order, how many of a tenant's jobs ran at once across the processes.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import redis.asyncio as aioredis

import foxactors as fa
from foxactors import backends

URL = os.environ.get("TENANTS_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("TENANTS_QUEUE", "tenants")
LIMIT = int(os.environ["TENANTS_LIMIT"]) if os.environ.get("TENANTS_LIMIT") else None

_events: Any = None


async def _run(message: fa.Message) -> None:
    global _events  # noqa: PLW0603 - one client per process, made on the loop
    if _events is None:
        _events = aioredis.Redis.from_url(URL)
    tenant = message.properties.headers.get("x-tenant")
    await _events.rpush(f"{QUEUE}:events", f"{tenant} start {os.getpid()}")
    await anyio.sleep(0.01)  # long enough for another process to start one too
    await _events.rpush(f"{QUEUE}:events", f"{tenant} end {os.getpid()}")


def app() -> fa.WorkerApp:
    """Four workers on a fair queue whose tenants have ``TENANTS_LIMIT`` slots each."""
    backend = backends.RedisBackend(URL, poll_interval=0.01)
    backend.share_fairly(QUEUE, backends.FairShares(limit=LIMIT))
    return (
        fa.WorkerApp("tenants")
        .add_worker(_run)
        .with_concurrency_limit(4)
        .with_prefetch(8)
        .with_backend(backend, QUEUE)
    )
