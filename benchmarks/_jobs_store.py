"""Redis helpers of `jobs.py`: the raw XADD baseline, and figure (e) on the Redis job store.

(e) times ``enqueue`` (one at a time: the cost of one, not a throughput) and
``status()`` reads of existing jobs with a small and a large number of records in
the store. The store is filled fast through its own API, ``create_many`` and
``commit`` in batches of 1,000 records made as an enqueue makes them (pending, the
benchmark's payload; no deliveries: only the records matter here), so the keys are
laid out exactly as the store lays them out.
"""

from __future__ import annotations

import importlib
import json
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
from _jobs_peers import payload

import foxactors as fa
from foxactors.jobs import JobQueue, JobRecord, JobStore


def _store_class() -> Any:
    return getattr(importlib.import_module("foxactors.jobs"), "RedisJobStore", None)


def available() -> bool:
    """Whether this foxactors has a Redis job store."""
    return _store_class() is not None


POOL = 1000
"""Connections the store's client may open. redis-py 6+ caps a pool at 100 by default
and raises MaxConnectionsError past it; 100 enqueues in flight plus the worker's
transitions need more (redis-py runs one command per connection at a time)."""


def redis_store(url: str, *, prefix: str) -> JobStore | None:
    """A `RedisJobStore` on ``url`` (a pool of ``POOL``) under ``prefix``, or None."""
    kind = _store_class()
    pooled = f"{url}{'&' if '?' in url else '?'}max_connections={POOL}"
    store: JobStore | None = None if kind is None else kind(pooled, prefix=prefix)
    return store


def redis_client(url: str) -> Any:
    """A plain redis-py asyncio client."""
    return aioredis.Redis.from_url(url)


async def raw_xadd_rate(url: str, stream: str, n: int, batch: int) -> float:
    """Raw redis-py: XADD the entry fields a job's delivery has, ``batch`` per pipeline."""
    client = redis_client(url)
    start = time.perf_counter()
    for first in range(0, n, batch):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(n, first + batch)):
            job_id = uuid.uuid4().hex
            pipe.xadd(
                stream,
                {
                    "payload": json.dumps(payload(i), separators=(",", ":")),
                    "id": uuid.uuid4().hex,
                    "timestamp": str(time.time()),
                    "priority": "3",
                    "type": "noop",
                    "correlation_id": job_id,
                    "x-job-id": job_id,
                },
            )
        await pipe.execute()
    rate = n / (time.perf_counter() - start)
    await client.aclose()
    return rate


async def measure_store(url: str, records: list[int], reads: int) -> list[str]:
    """(e): enqueue and status-read cost with ``records[0]`` vs ``records[1]`` records."""
    small, large = records
    title = f"(e) Redis job store, {small:,} vs {large:,} records"
    if not available():
        return [title, "    skipped: RedisJobStore not available"]
    costs: dict[int, tuple[float, float]] = {}
    for count in (small, large):
        costs[count] = await store_costs(url, count, reads)
    lines = [title]
    for index, what in enumerate(("enqueue (one at a time)", "status read")):
        a, b = costs[small][index], costs[large][index]
        lines.append(
            f"    {what:<24} {a * 1e6:8.0f} us vs {b * 1e6:8.0f} us -> {b / a:.0%}"
            " (target within 80-120%)"
        )
    return lines


async def fill(store: JobStore, count: int) -> list[str]:
    """Put ``count`` committed pending records in ``store``, 1,000 per round trip."""
    ids: list[str] = []
    now = time.time()
    for first in range(0, count, 1000):
        records = [
            JobRecord(
                id=uuid.uuid4().hex,
                task="noop",
                queue="fill",
                args=payload(i),
                max_attempts=3,
                enqueued_at=now,
            )
            for i in range(first, min(count, first + 1000))
        ]
        await store.create_many(records)
        await store.commit([record.id for record in records])
        ids += [record.id for record in records]
    return ids


async def store_costs(url: str, count: int, reads: int) -> tuple[float, float]:
    """Seconds per enqueue and per status read with ``count`` records in a fresh store."""
    prefix = f"bench-store-{uuid.uuid4().hex[:8]}"
    store = redis_store(url, prefix=prefix)
    assert store is not None
    jobs = JobQueue(fa.MemoryBackend(), store=store, queue="fill")

    @jobs.task
    async def noop(to: str, template: str, n: int) -> int:
        return n

    ids = await fill(store, count)
    sample = ids[:: max(1, count // reads)][:reads]
    start = time.perf_counter()
    for i in range(reads):
        await noop.enqueue(**payload(i))
    enqueue = (time.perf_counter() - start) / reads
    start = time.perf_counter()
    for job_id in sample:
        await jobs.handle(job_id).status()
    status = (time.perf_counter() - start) / len(sample)
    await jobs.close()
    client = redis_client(url)
    async for key in client.scan_iter(match=f"{prefix}*", count=10_000):
        await client.unlink(key)
    await client.aclose()
    return enqueue, status
