"""Tenants: fair shares beside plain first in, first out, measured in the same run.

On the memory backend, then on Redis Streams (the dispatch is the backend's; the
pipeline on top is the same):

(a) start latency of a lone tenant's job behind another tenant's backlog of
    ``--backlog`` jobs (100,000): a `WorkerApp` (8 workers, prefetch 16, as a job
    worker's) runs the backlog; once it is under way, tenant B publishes one job; we
    count the jobs that start between B's publish and B's job, and the seconds, on a
    fair queue and on a plain one (fair: at most the prefetched jobs, plus one turn
    of each tenant with work);
(b) dispatch cost per job with 1, 100 and 10,000 tenants holding ready work: twice
    ``--messages`` messages spread over them, a source takes and acks the first
    ``--messages`` (so every tenant keeps work throughout), batches of 100;
    each figure beside the 1-tenant one (target: flat within 20%), and the plain
    queue's cost beside the fair 1-tenant one;
(c) throughput of the whole pipeline (consumer, pool, workers, no-op handler) with
    the messages of 100 tenants, fair on vs off (target: at least 80%).

On Redis (asyncio; a throwaway redis-server on loopback unless ``--redis URL``), the
same three figures: the backlogs are filled before the consumer starts, in pipelines
(a fair queue's a thousand entries per script run), (b) counts the acks until they
are applied, and (b) and (c) take ``--redis-messages`` (20,000) messages.

Figures are medians over ``--rounds``; a ratio is the median of the rounds' ratios.

Run: python benchmarks/tenants.py [--backend asyncio|trio] [--only memory|redis]
    [--redis URL] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import shutil
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import structlog

import foxactors as fa
from foxactors.backends import FairShares, RedisBackend
from foxactors.backends.redis import _fair as redis_fair
from foxactors.testing.servers import redis_server

QUEUE = "bench"
PREFETCH = 100
CONCURRENCY = 8
TENANT_COUNTS = (1, 100, 10_000)


def properties(tenant: str) -> fa.MessageProperties:
    return fa.MessageProperties(headers={"x-tenant": tenant})


def backend_for(fair: bool) -> fa.MemoryBackend:
    backend = fa.MemoryBackend()
    if fair:
        backend.share_fairly(QUEUE, FairShares())
    return backend


async def lone_tenant(backlog: int, fair: bool) -> tuple[int, float]:
    """(a): jobs started between B's publish and B's job, and the seconds it waited."""
    backend = backend_for(fair)
    body = backend.codec.encode({"n": 0})
    a = properties("a")
    for _ in range(backlog):
        backend.publish_raw(QUEUE, body, properties=a)
    return await behind_backlog(backend, QUEUE, warm_after=1_000, drain=True)


async def behind_backlog(
    backend: Any, queue: str, *, warm_after: int, drain: bool = False
) -> tuple[int, float]:
    """Run a worker over A's backlog; once warm, B publishes one: (jobs ahead, seconds).

    With ``drain``, the backlog is worked off before the worker stops.
    """
    warm, waited = anyio.Event(), anyio.Event()
    started = at_publish = 0
    published = wait = 0.0

    async def handle(message: fa.Message) -> None:
        nonlocal started, wait
        started += 1
        if message.properties.headers.get("x-tenant") == "b":
            wait = time.perf_counter() - published
            waited.set()
        elif started == warm_after:
            warm.set()

    app = fa.WorkerApp("bench").add_worker(handle).with_concurrency_limit(CONCURRENCY)
    app = app.with_prefetch(2 * CONCURRENCY)  # as a job worker's: what is fetched goes first
    async with fa.open_system(app.build(backend, queue)):
        await warm.wait()
        at_publish = started
        published = time.perf_counter()
        await backend.publish(queue, {"n": 1}, properties=properties("b"))
        await waited.wait()
        ahead = started - at_publish - 1
        if drain:
            await backend.join(queue)
    return ahead, wait


async def take_and_ack(source: Any, messages: int) -> None:
    """Take ``messages`` from ``source`` in batches of up to the prefetch, acking each."""
    left = messages
    while left:
        batch = await source.receive(min(PREFETCH, left))
        for delivery in batch:
            delivery.handle.ack()
        left -= len(batch)


def dispatch_cost(messages: int, tenants: int | None) -> float:
    """(b): seconds per message to take and ack, over ``tenants`` (None: a plain queue)."""

    async def run() -> float:
        backend = backend_for(tenants is not None)
        body = backend.codec.encode({"n": 0})
        names = [properties(f"t{n}") for n in range(tenants or 1)]
        for i in range(2 * messages):
            backend.publish_raw(QUEUE, body, properties=names[i % len(names)])
        source = await backend.open_source(QUEUE, prefetch=PREFETCH)
        start = time.perf_counter()
        await take_and_ack(source, messages)
        elapsed = time.perf_counter() - start
        await source.close()
        return elapsed / messages

    return anyio.run(run, backend=BACKEND)


async def noop(message: fa.Message) -> None:
    pass


async def throughput(messages: int, fair: bool) -> float:
    """(c): messages per second through the pipeline, 100 tenants' messages."""
    backend = backend_for(fair)
    names = [properties(f"t{n}") for n in range(100)]
    for i in range(messages):
        await backend.publish(QUEUE, {"n": i}, properties=names[i % 100])
    app = fa.WorkerApp("bench").add_worker(noop).with_concurrency_limit(CONCURRENCY)
    app = app.with_prefetch(PREFETCH)
    start = time.perf_counter()
    async with fa.open_system(app.build(backend, QUEUE)):
        await backend.join(QUEUE)
        elapsed = time.perf_counter() - start
    return messages / elapsed


# -- Redis Streams -------------------------------------------------------------------------


async def redis_fill(
    backend: RedisBackend, queue: str, tenants: list[str], count: int, fair: bool
) -> None:
    """Add ``count`` entries of ``tenants`` in turn to ``queue``, pipelined, as publish writes.

    A fair queue's go to the tenants' lists a thousand per script run; a plain
    queue's to its stream a thousand XADDs per pipeline.
    """
    body = backend.codec.encode({"n": 0})
    names = [properties(t) for t in tenants]
    entries = (backend.fields(body, names[i % len(names)], uuid.uuid4().hex) for i in range(count))
    client: Any = backend.client()  # redis-py's field types are narrower than entries'
    try:
        if fair:
            keys = redis_fair.FairKeys.of(queue)
            shares = backend.fair_shares(queue)
            assert shares is not None
            await redis_fair.write_conf(client, keys, shares)
            await redis_fair.push_many(client, keys, entries)
            return
        await backend.ensure_group(client, queue)
        while batch := list(itertools.islice(entries, 1000)):
            async with client.pipeline(transaction=False) as pipe:
                for fields in batch:
                    pipe.xadd(queue, fields)
                await pipe.execute()
    finally:
        await client.aclose()


async def redis_forget(backend: RedisBackend, queue: str, tenants: list[str]) -> None:
    """Delete every key of ``queue`` (a benchmark leaves nothing behind on a given Redis)."""
    keys = redis_fair.FairKeys.of(queue)
    names = [*backend.level_streams(queue), backend.delayed_set(queue)]
    names += [backend.dead_letter_stream(queue), *keys.five]
    names += [keys.list_of(t) for t in tenants]
    client = backend.client()
    try:
        for first in range(0, len(names), 1000):
            await client.delete(*names[first : first + 1000])
    finally:
        await client.aclose()


def redis_backend(url: str, fair: bool) -> tuple[RedisBackend, str]:
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    backend = RedisBackend(url)
    if fair:
        backend.share_fairly(queue, FairShares())
    return backend, queue


async def redis_lone_tenant(url: str, backlog: int, fair: bool) -> tuple[int, float]:
    """(a) on Redis: as `lone_tenant`, the backlog filled before the worker starts."""
    backend, queue = redis_backend(url, fair)
    await redis_fill(backend, queue, ["a"], backlog, fair)
    ahead, wait = await behind_backlog(backend, queue, warm_after=min(1_000, backlog // 10))
    await redis_forget(backend, queue, ["a", "b"])
    await backend.close()
    return ahead, wait


async def redis_dispatch_cost(url: str, messages: int, tenants: int | None) -> float:
    """(b) on Redis: seconds per message to read and ack (acks applied) from a source."""
    backend, queue = redis_backend(url, tenants is not None)
    names = [f"t{n}" for n in range(tenants or 1)]
    await redis_fill(backend, queue, names, 2 * messages, tenants is not None)
    source = await backend.open_source(queue, prefetch=PREFETCH)
    start = time.perf_counter()
    await take_and_ack(source, messages)
    await source.wait_settled()
    elapsed = time.perf_counter() - start
    await source.close()
    await redis_forget(backend, queue, names)
    await backend.close()
    return elapsed / messages


async def redis_throughput(url: str, messages: int, fair: bool) -> float:
    """(c) on Redis: messages per second through the pipeline, 100 tenants' messages."""
    backend, queue = redis_backend(url, fair)
    names = [f"t{n}" for n in range(100)]
    await redis_fill(backend, queue, names, messages, fair)
    done = asyncio.Event()
    count = 0

    async def handle(message: fa.Message) -> None:
        nonlocal count
        count += 1
        if count == messages:
            done.set()

    app = fa.WorkerApp("bench").add_worker(handle).with_concurrency_limit(CONCURRENCY)
    app = app.with_prefetch(PREFETCH)
    start = time.perf_counter()
    async with fa.open_system(app.build(backend, queue)):
        await done.wait()
        elapsed = time.perf_counter() - start
    await redis_forget(backend, queue, names)
    await backend.close()
    return messages / elapsed


BACKEND = "asyncio"


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], show: Callable[[float], str]) -> str:
    return f"{show(median(values))} [{show(min(values))}..{show(max(values))}]"


Lone = Callable[[int, bool], tuple[int, float]]
Cost = Callable[[int, "int | None"], float]
Rate = Callable[[int, bool], float]


def report(rounds: int, backlog: int, messages: int, *, lone: Lone, cost: Cost, rate: Rate) -> None:
    """Print (a), (b), (c) of one backend: medians, spreads, ratios of the same rounds."""
    print(f"(a) a lone tenant's job behind a backlog of {backlog:,} of another's:")
    fifo = [lone(backlog, False) for _ in range(rounds)]
    fair = [lone(backlog, True) for _ in range(rounds)]
    for name, runs in (("plain FIFO", fifo), ("fair", fair)):
        ahead = median([float(n) for n, _ in runs])
        waited = spread([w for _, w in runs], lambda s: f"{s * 1000:.1f} ms")
        print(f"    {name:10}: {ahead:,.0f} jobs started ahead of it, waited {waited}")
    ratio = median([f[1] / max(p[1], 1e-9) for f, p in zip(fifo, fair, strict=True)])
    print(f"    -> FIFO wait / fair wait: {ratio:,.0f}x")

    print(f"(b) dispatch cost per message ({messages:,} taken and acked, batches of 100):")
    costs: dict[int | None, list[float]] = {n: [] for n in (None, *TENANT_COUNTS)}
    for _ in range(rounds):
        for tenants, spent in costs.items():
            spent.append(cost(messages, tenants))

    def show(seconds: float) -> str:
        return f"{seconds * 1e6:.2f} us"

    print(f"    plain FIFO queue      : {spread(costs[None], show)}")
    for tenants in TENANT_COUNTS:
        print(f"    fair, {tenants:>6,} tenants: {spread(costs[tenants], show)}")
    for tenants in TENANT_COUNTS[1:]:
        flat = median([t / one for t, one in zip(costs[tenants], costs[1], strict=True)])
        print(f"    -> {tenants:,} tenants / 1 tenant: {flat:.2f} (target <= 1.20)")
    plain = median([p / f for p, f in zip(costs[None], costs[1], strict=True)])
    print(f"    -> plain / fair with 1 tenant: {plain:.2f}")

    print(f"(c) pipeline throughput, {messages:,} messages of 100 tenants:")
    off: list[float] = []
    on: list[float] = []
    for _ in range(rounds):
        off.append(rate(messages, False))
        on.append(rate(messages, True))
    print(f"    fairness off: {spread(off, lambda r: f'{r:,.0f}/s')}")
    print(f"    fairness on : {spread(on, lambda r: f'{r:,.0f}/s')}")
    share = median([a / b for a, b in zip(on, off, strict=True)])
    print(f"    -> on / off: {share:.2f} (target >= 0.80)")


@contextlib.contextmanager
def redis_url(url: str | None) -> Iterator[str]:
    """``url``, or a throwaway redis-server's on loopback for the block."""
    if url:
        yield url
        return
    with redis_server() as ours:
        yield ours.url


def main() -> None:
    global BACKEND  # noqa: PLW0603 - the event loop every figure runs on, from the command line
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--only", choices=["memory", "redis"], help="one backend's figures")
    parser.add_argument("--redis", metavar="URL", help="an existing Redis (default: our own)")
    parser.add_argument("--backlog", type=int, default=100_000, help="tenant A's jobs in (a)")
    parser.add_argument("--messages", type=int, default=100_000, help="per figure in (b), (c)")
    parser.add_argument(
        "--redis-messages", type=int, default=20_000, help="per figure in (b), (c) on Redis"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    args = parser.parse_args()
    BACKEND = args.backend
    if args.quick:
        args.backlog, args.messages, args.redis_messages, args.rounds = 5_000, 20_000, 2_000, 1
    if args.only != "redis":
        print(f"tenants on the memory backend ({BACKEND}), {args.rounds} round(s)")
        report(
            args.rounds,
            args.backlog,
            args.messages,
            lone=lambda b, f: anyio.run(lone_tenant, b, f, backend=BACKEND),
            cost=dispatch_cost,
            rate=lambda m, f: anyio.run(throughput, m, f, backend=BACKEND),
        )
    if args.only != "memory":
        if not args.redis and shutil.which("redis-server") is None:
            print("Redis figures skipped: redis-server is not installed (or give --redis URL)")
            return
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
        with redis_url(args.redis) as url:
            print(f"tenants on Redis Streams (asyncio), {args.rounds} round(s)")
            report(
                args.rounds,
                args.backlog,
                args.redis_messages,
                lone=lambda b, f: asyncio.run(redis_lone_tenant(url, b, f)),
                cost=lambda m, t: asyncio.run(redis_dispatch_cost(url, m, t)),
                rate=lambda m, f: asyncio.run(redis_throughput(url, m, f)),
            )


if __name__ == "__main__":
    main()
