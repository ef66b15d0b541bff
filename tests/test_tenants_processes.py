"""A tenant's concurrency limit holds across two worker processes on one Redis.

Two ``foxactors run`` processes consume one fair queue whose tenants have a limit of
one delivery out each. Their handlers log start and end to one Redis list; replayed
in the server's order, no tenant ever has two jobs running, though both processes
ran work of every tenant. Asyncio, real processes, real time: deadlines, no sleeps.
"""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

import foxactors as fa
from foxactors import backends
from foxactors.testing.servers import RedisServer

from .helpers import foxactors_run, until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
TENANTS = ("acme", "globex", "initech")
JOBS = 30  # per tenant


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


def worker(url: str, queue: str, out: Path, limit: str) -> subprocess.Popen[bytes]:
    env = {"TENANTS_REDIS_URL": url, "TENANTS_QUEUE": queue, "TENANTS_LIMIT": limit}
    return foxactors_run("tests.apps_tenants:app", out, env)


def most_at_once(events: list[str]) -> dict[str, int]:
    """Per tenant, the most of its jobs running at once, replaying starts and ends."""
    now: Counter[str] = Counter()
    most: Counter[str] = Counter()
    for event in events:
        tenant, what, _ = event.split()
        now[tenant] += 1 if what == "start" else -1
        most[tenant] = max(most[tenant], now[tenant])
    return dict(most)


async def run_two(redis: RedisServer, tmp_path: Path, limit: str) -> list[str]:
    """Two processes work through the jobs of three tenants; the events, in order."""
    queue = f"tenants-{uuid.uuid4().hex[:8]}"
    outs = [tmp_path / f"worker-{limit or 'none'}-{i}.out" for i in range(2)]
    processes = [worker(redis.url, queue, out, limit) for out in outs]
    publisher = backends.RedisBackend(redis.url)
    publisher.share_fairly(queue, backends.FairShares(limit=int(limit) if limit else None))
    client = aioredis.Redis.from_url(redis.url, decode_responses=True)
    try:
        await until("both consuming", lambda: all(".consuming" in o.read_text() for o in outs))
        for n in range(JOBS):
            for tenant in TENANTS:
                headers = {"x-tenant": tenant}
                await publisher.publish(
                    queue, {"n": n}, properties=fa.MessageProperties(headers=headers)
                )
        events = 2 * JOBS * len(TENANTS)

        async def all_ran() -> bool:
            return bool(await client.llen(f"{queue}:events") == events)

        await until("every job run", all_ran)
        for process, out in zip(processes, outs, strict=True):
            process.send_signal(signal.SIGTERM)
            await anyio.to_thread.run_sync(process.wait, 30)
            assert process.returncode == 0, out.read_text()
        return [str(event) for event in await client.lrange(f"{queue}:events", 0, -1)]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        await client.aclose()
        await publisher.close()


async def test_a_tenants_limit_holds_across_two_worker_processes(
    redis: RedisServer, tmp_path: Path
) -> None:
    events = await run_two(redis, tmp_path, "1")
    assert most_at_once(events) == dict.fromkeys(TENANTS, 1)  # never two of one tenant
    by_process = {tuple(e.split()[::2]) for e in events}  # (tenant, pid)
    # a tenant's jobs ran in both processes, so one limit was held by both
    assert any(len({pid for t, pid in by_process if t == tenant}) == 2 for tenant in TENANTS)
    # and without the limit, the same two processes do run a tenant's jobs side by side
    unlimited = await run_two(redis, tmp_path, "")
    assert max(most_at_once(unlimited).values()) > 1
