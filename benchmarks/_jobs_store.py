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
import inspect
import json
import random
import statistics
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


def redis_store(url: str, *, prefix: str, push: bool = False) -> JobStore | None:
    """A `RedisJobStore` on ``url`` (a pool of ``POOL``) under ``prefix``, or None.

    ``push``: with ``push_results`` (for a producer that waits for its results), if
    this foxactors has it.
    """
    kind = _store_class()
    if kind is None:
        return None
    pooled = f"{url}{'&' if '?' in url else '?'}max_connections={POOL}"
    pushing = {"push_results": True} if push and pushes(kind) else {}
    store: JobStore = kind(pooled, prefix=prefix, **pushing)
    return store


def pushes(kind: Any = None) -> bool:
    """Whether this foxactors' `RedisJobStore` can push results to a producer."""
    kind = kind or _store_class()
    return kind is not None and "push_results" in inspect.signature(kind).parameters


def redis_client(url: str) -> Any:
    """A plain redis-py asyncio client."""
    return aioredis.Redis.from_url(url)


async def delete_keys(url: str, match: str) -> None:
    """Delete every key matching ``match`` (the benchmark's own, by their prefixes)."""
    client = redis_client(url)
    async for key in client.scan_iter(match=match, count=10_000):
        await client.unlink(key)
    await client.aclose()


def entry_fields(i: int, job_id: str) -> dict[str, str]:
    """The stream entry of job ``i``'s delivery: the fields foxactors' enqueue writes."""
    return {
        "payload": json.dumps(payload(i), separators=(",", ":")),
        "id": uuid.uuid4().hex,
        "timestamp": str(time.time()),
        "priority": "3",
        "type": "noop",
        "correlation_id": job_id,
        "x-job-id": job_id,
    }


async def raw_xadd_rate(url: str, stream: str, n: int, batch: int) -> float:
    """Raw redis-py: XADD the entry fields a job's delivery has, ``batch`` per pipeline."""
    client = redis_client(url)
    start = time.perf_counter()
    for first in range(0, n, batch):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(n, first + batch)):
            pipe.xadd(stream, entry_fields(i, uuid.uuid4().hex))
        await pipe.execute()
    rate = n / (time.perf_counter() - start)
    await client.aclose()
    return rate


async def measure_store(url: str, records: list[int], reads: int, rounds: int) -> list[str]:
    """(e): enqueue and status-read cost with ``records[0]`` vs ``records[1]`` records.

    Both stores are filled first and live side by side on the server; then each
    round times ``reads`` enqueues and ``reads`` status reads on each, after an
    untimed warm-up (connections, scripts), the first of the two alternating (at
    least two rounds).
    """
    small, large = records
    title = f"(e) Redis job store, {small:,} vs {large:,} records"
    if not available():
        return [title, "    skipped: RedisJobStore not available"]
    sized = [Sized(url) for _ in records]
    lines = [title]
    try:
        for store, count in zip(sized, records, strict=True):
            rate = await store.fill(count)
            lines.append(
                f"    filled {count:>9,} records: create_many + commit, 1,000 a call, "
                f"{rate:,.0f} records/s"
            )
        for store in sized:
            await store.costs(min(reads, 200))  # warm-up
        costs: list[list[tuple[float, float]]] = [[], []]
        for turn in range(max(2, rounds)):  # each size first in turn
            for index in (0, 1) if turn % 2 == 0 else (1, 0):
                costs[index].append(await sized[index].costs(reads))
    finally:
        for store in sized:
            await store.close()
    for index, what in enumerate(("enqueue, one at a time", "status read")):
        a = statistics.median(cost[index] for cost in costs[0])
        b = statistics.median(cost[index] for cost in costs[1])
        ratios = [y[index] / x[index] for x, y in zip(costs[0], costs[1], strict=True)]
        spread = f" [{min(ratios):.0%}-{max(ratios):.0%}]" if len(ratios) > 1 else ""
        lines.append(
            f"    {what:<24} {a * 1e6:6.0f} us vs {b * 1e6:6.0f} us "
            f"-> {statistics.median(ratios):.0%}{spread} (target within 80-120%)"
        )
    return lines


class Sized:
    """A Redis job store of its own (fresh prefix) with a task to enqueue into it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"bench-store-{uuid.uuid4().hex[:8]}"
        store = redis_store(url, prefix=self.prefix)
        assert store is not None
        self.store = store
        self.jobs = JobQueue(fa.MemoryBackend(), store=store, queue="fill")
        self.ids: list[str] = []

        @self.jobs.task
        async def noop(to: str, template: str, n: int) -> int:
            return n

        self.noop = noop

    async def fill(self, count: int) -> float:
        """Put ``count`` committed pending records in the store; records per second."""
        now = time.time()
        start = time.perf_counter()
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
            await self.store.create_many(records)
            await self.store.commit([record.id for record in records])
            self.ids += [record.id for record in records]
        return count / (time.perf_counter() - start)

    async def costs(self, reads: int) -> tuple[float, float]:
        """Seconds per enqueue and per status read of a random job, ``reads`` of each."""
        start = time.perf_counter()
        for i in range(reads):
            await self.noop.enqueue(**payload(i))
        enqueue = (time.perf_counter() - start) / reads
        sample = random.sample(self.ids, min(reads, len(self.ids)))
        start = time.perf_counter()
        for job_id in sample:
            await self.jobs.handle(job_id).status()
        return enqueue, (time.perf_counter() - start) / len(sample)

    async def close(self) -> None:
        """Close the store and delete its keys."""
        await self.jobs.close()
        await delete_keys(self.url, f"{self.prefix}:*")
