"""Jobs: each figure beside its baseline, measured in the same run, as a ratio (``->``).

On each backend (memory, Redis Streams, RabbitMQ), with the records in a job store
(memory; for the brokers also Redis, when `RedisJobStore` is there), N jobs of a no-op
task that takes a small JSON payload and returns a number:

(a) enqueue rate with records (``task.enqueue``, 100 in flight; ``enqueue_many`` in
    batches of 100) vs a raw pipelined publish of the same payloads (Redis: ``XADD``
    of the same entry fields, 100 per pipeline; RabbitMQ: aio-pika with publisher
    confirms, 100 in flight; memory: ``MemoryBackend.publish``);
(b) end to end (a worker app running, enqueue N with 100 in flight, each job run,
    its result stored, then every result read back from the store) vs the same
    pipeline without records: a `WorkerApp` with a no-op handler, same concurrency
    and prefetch, over the same N messages published the same way; and, with no
    baseline, the same jobs sent one at a time (each enqueue awaited before the
    next), the most a producer that sends jobs one by one reaches;
(c) the same end-to-end workload on arq (``enqueue_job`` + ``job.result``) and on
    Celery (Redis broker and result backend, ``apply_async`` + ``AsyncResult.get``),
    each as one worker process with the same concurrency (see `_jobs_peers`); each
    round measures every system in turn, and a ratio is the median of the rounds';
(d) latency from enqueue to handler start, p50 and p99, with jobs sent one at a
    time, open loop, at half of the rate measured in (b) (or (c), for a peer), and
    on the one-process rows and foxactors' (c) row also at half of the rate of the
    same jobs sent one at a time (for (c): a fifth of N per round); beside those,
    how busy that process (producer and worker) was, as a share of one core: jobs
    sent one at a time cost more than (b)'s batched ones (a round trip each, not one
    per hundred), so half of (b) keeps one process near 100%, and a process near
    100% has a tail that moves with anything;
(e) enqueue and status-read cost with 10,000 vs 1,000,000 records in the Redis job
    store (see `_jobs_store`).

Where the records are in Redis, the producer's store has each job's end pushed to it
(``RedisJobStore(push_results=True)``, the option for a producer that waits for its
results; ``--no-push``: without, each result read back by a round trip).

Beside (b) on Redis with Redis records, and beside (c): the floor, the same Redis work
(records created with their deliveries, started and completed by the store's own
scripts, deliveries read and acknowledged, results read back) sent from bare redis-py
with no framework at all (see `_jobs_floor`): what any code doing that work reaches on
this machine, measured in the same rounds.

Figures are medians over ``--rounds`` (ranges in brackets); a ratio is the median of
the rounds' ratios. This process and foxactors' worker process freeze their start-up
objects out of the garbage collector's full passes (`foxactors.freeze_gc`), as
``foxactors run`` does; arq's and Celery's workers run as they come. Starts its own
redis-server and rabbitmq-server on loopback unless given URLs. The peers come with
``pip install 'foxactors[bench]'``; without them their lines say so.

Run: python benchmarks/jobs.py [--backends memory,redis,rabbitmq] [--jobs N] [--quick]
     [--redis-url redis://...] [--amqp-url amqp://...] [--no-peers] [--no-push]
     [--loop uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import _jobs_floor as floor
import _jobs_peers as peers
import _jobs_store
import structlog
from _jobs_peers import payload

import foxactors as fa
from foxactors.backends import RabbitMQBackend, RedisBackend
from foxactors.jobs import JobQueue, JobState, JobStore, MemoryJobStore

T = TypeVar("T")

CONCURRENCY = 8  # JobQueue.worker's default; its prefetch is twice that
IN_FLIGHT = 100
BACKENDS = ("memory", "redis", "rabbitmq")
NO_REDIS_STORE = "skipped: RedisJobStore not available"
PUSH = True
"""Producers' Redis stores have results pushed to them (``--no-push``: read each one)."""


async def in_flight(
    n: int, start: Callable[[int], Awaitable[T]], width: int = IN_FLIGHT
) -> list[T]:
    """Await ``start(i)`` for i in range(n), ``width`` at a time; results in order."""
    if width == 1:
        return [await start(i) for i in range(n)]
    done: list[T] = []
    for first in range(0, n, width):
        done += await asyncio.gather(*(start(i) for i in range(first, min(n, first + width))))
    return done


class Broker:
    """One backend under test: makes backends and fresh queues, and cleans up after them."""

    def __init__(self, name: str, url: str | None, redis_url: str | None) -> None:
        self.name = name
        self.url = url
        self.redis_url = redis_url  # the job store's server (for the brokers' Redis store)
        self.prefixes: list[str] = []  # of the Redis stores made, deleted by `delete_stores`

    def backend(self) -> Any:
        if self.name == "memory":
            return fa.MemoryBackend()
        if self.name == "redis":
            return RedisBackend(self.url or "", group="bench")
        return RabbitMQBackend(self.url or "")

    def store(self, kind: str) -> JobStore:
        if kind == "memory":
            return MemoryJobStore()
        prefix = f"bench-store-{uuid.uuid4().hex[:8]}"
        made = _jobs_store.redis_store(self.redis_url or "", prefix=prefix, push=PUSH)
        if made is None:
            raise RuntimeError(NO_REDIS_STORE)
        self.prefixes.append(prefix)
        return made

    async def delete_stores(self) -> None:
        """Delete the records of the Redis stores this broker made."""
        for prefix in self.prefixes:
            await _jobs_store.delete_keys(self.redis_url or "", f"{prefix}:*")
        self.prefixes.clear()

    @contextlib.asynccontextmanager
    async def queue(self) -> Any:
        """A backend and a fresh queue name; the queue's keys or queues deleted after."""
        backend = self.backend()
        queue = f"bench-jobs-{uuid.uuid4().hex[:8]}"
        try:
            yield backend, queue
        finally:
            await backend.close()
            await self.delete(queue)

    async def delete(self, queue: str) -> None:
        if self.name == "redis":
            await _jobs_store.delete_keys(self.url or "", f"{queue}*")
        elif self.name == "rabbitmq":
            import aio_pika  # noqa: PLC0415 - only with RabbitMQ

            topology = RabbitMQBackend(self.url or "").topology
            connection = await aio_pika.connect(self.url or "")
            async with connection:
                channel = await connection.channel()
                for name in (queue, topology.dlq(queue)):
                    await channel.queue_delete(name)
                await channel.exchange_delete(topology.retry_exchange_of(queue))

    async def raw_publish_rate(self, n: int) -> float:
        """The baseline of (a): the same payloads, as raw as the broker's client allows."""
        async with self.queue() as (backend, queue):
            if self.name == "memory":
                start = time.perf_counter()
                await in_flight(n, lambda i: backend.publish(queue, payload(i)))
                return n / (time.perf_counter() - start)
            if self.name == "redis":
                return await _jobs_store.raw_xadd_rate(self.url or "", queue, n, IN_FLIGHT)
            await backend.declare(queue)  # the same queue, declared as foxactors does
            return await raw_amqp_rate(self.url or "", queue, n)


async def raw_amqp_rate(url: str, queue: str, n: int) -> float:
    """aio-pika, publisher confirms, persistent, ``IN_FLIGHT`` at a time."""
    import aio_pika  # noqa: PLC0415 - only with RabbitMQ

    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = channel.default_exchange

        async def send(i: int) -> Any:
            job_id = uuid.uuid4().hex
            message = aio_pika.Message(
                fa.JsonCodec().encode(payload(i)),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
                message_id=uuid.uuid4().hex,
                correlation_id=job_id,
                type="noop",
                priority=3,
                headers={"x-job-id": job_id},
            )
            return await exchange.publish(message, routing_key=queue, mandatory=True)

        start = time.perf_counter()
        await in_flight(n, send)
        return n / (time.perf_counter() - start)


async def enqueue_rate(broker: Broker, store: str, n: int, *, many: bool) -> float:
    """(a): jobs enqueued per second, with their records."""
    async with broker.queue() as (backend, queue):
        jobs = JobQueue(backend, store=broker.store(store), queue=queue)
        noop, _ = peers.declare(jobs)
        start = time.perf_counter()
        if many:
            for first in range(0, n, IN_FLIGHT):
                await noop.enqueue_many([payload(i) for i in range(first, min(n, first + 100))])
        else:
            await in_flight(n, lambda i: noop.enqueue(**payload(i)))
        rate = n / (time.perf_counter() - start)
        await jobs.close()
        return rate


async def publish_rate(broker: Broker, n: int) -> float:
    """foxactors' own ``backend.publish`` (no records), ``IN_FLIGHT`` at a time."""
    async with broker.queue() as (backend, queue):
        start = time.perf_counter()
        await in_flight(n, lambda i: backend.publish(queue, payload(i)))
        return n / (time.perf_counter() - start)


async def jobs_rate(broker: Broker, store: str, n: int, width: int = IN_FLIGHT) -> float:
    """(b): enqueue n (``width`` in flight), run them, every result read back; jobs/s.

    With ``width`` 1, each enqueue awaited before the next: the most that jobs sent
    one at a time reach, the rate (d)'s second line takes half of.
    """
    async with broker.queue() as (backend, queue):
        jobs = JobQueue(backend, store=broker.store(store), queue=queue)
        noop, _ = peers.declare(jobs)
        async with fa.open_system(jobs.worker(queue, concurrency=CONCURRENCY).build()):
            rate = await produce(noop, n, width)
        await jobs.close()
        return rate


async def produce(noop: Any, n: int, width: int = IN_FLIGHT) -> float:
    """Enqueue n no-op jobs, read each result and the last status; jobs per second."""
    start = time.perf_counter()
    handles = await in_flight(n, lambda i: noop.enqueue(**payload(i)), width)
    for i, handle in enumerate(handles):
        if await handle.result(timeout=120) != i:
            raise RuntimeError(f"job {i} returned something else")
    rate = n / (time.perf_counter() - start)
    if (await handles[-1].status()).state is not JobState.SUCCEEDED:
        raise RuntimeError("the last job does not read succeeded")
    return rate


async def pipeline_rate(broker: Broker, n: int) -> float:
    """(b)'s baseline: the same pipeline, no records; publish n, each handled once."""
    count = 0
    done = asyncio.Event()

    async def noop(message: fa.Message) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    app = (
        fa.WorkerApp("bench")
        .add_worker(noop)
        .without_retry()
        .with_concurrency_limit(CONCURRENCY)
        .with_prefetch(2 * CONCURRENCY)
    )
    async with broker.queue() as (backend, queue), fa.open_system(app.build(backend, queue)):
        start = time.perf_counter()
        await in_flight(n, lambda i: backend.publish(queue, payload(i)))
        await done.wait()
        return n / (time.perf_counter() - start)


async def jobs_latencies(broker: Broker, store: str, n: int, rate: float) -> list[float]:
    """(d): seconds from enqueue to handler start, n jobs sent at ``rate`` per second."""
    async with broker.queue() as (backend, queue):
        jobs = JobQueue(backend, store=broker.store(store), queue=queue)
        _, stamp = peers.declare(jobs)
        async with fa.open_system(jobs.worker(queue, concurrency=CONCURRENCY).build()):
            latencies = await paced_jobs(stamp, n, rate)
        await jobs.close()
        return latencies


async def paced_jobs(stamp: Any, n: int, rate: float) -> list[float]:
    """Enqueue n ``stamp`` jobs at ``rate`` per second; their enqueue-to-start latencies."""
    handles: list[Any] = []

    async def send(i: int) -> None:
        handles.append(await stamp.enqueue(**payload(i), sent=time.perf_counter()))

    await peers.paced(n, rate, send)
    return [await handle.result(timeout=120) for handle in handles]


@contextlib.asynccontextmanager
async def worker_process_tasks(url: str, queue: str) -> AsyncIterator[tuple[Any, Any]]:
    """The producer's tasks (Redis backend and store) beside a foxactors worker process."""
    store = _jobs_store.redis_store(url, prefix=peers.store_prefix(queue), push=PUSH)
    assert store is not None
    jobs = JobQueue(RedisBackend(url, group="bench"), store=store, queue=queue)
    try:
        with peers.worker_process("foxactors", url, queue, CONCURRENCY):
            yield peers.declare(jobs)
    finally:
        await jobs.backend.close()
        await jobs.close()
        await _jobs_store.delete_keys(url, f"{queue}*")  # the stream and the store


# -- the figures -------------------------------------------------------------------------


class Figures:
    """Values per round by name; medians, ranges and ratios of paired rounds."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])

    def rate(self, name: str) -> str:
        values = self.values[name]
        spread = f" [{min(values):,.0f}-{max(values):,.0f}]" if len(values) > 1 else ""
        return f"{statistics.median(values):>9,.0f}/s{spread}"

    def ratio(self, name: str, base: str) -> str:
        ratios = [a / b for a, b in zip(self.values[name], self.values[base], strict=False)]
        spread = f" [{min(ratios):.0%}-{max(ratios):.0%}]" if len(ratios) > 1 else ""
        return f"-> {statistics.median(ratios):.0%}{spread}"


def latency_line(samples: list[float]) -> str:
    p50, p99 = peers.percentile(samples, 0.5), peers.percentile(samples, 0.99)
    return f"p50 {p50 * 1e3:6.2f} ms, p99 {p99 * 1e3:6.2f} ms"


def warm(samples: list[float]) -> list[float]:
    """Drop the first tenth (connections and caches warming up)."""
    return samples[len(samples) // 10 :]


def stores_of(broker: Broker) -> list[str]:
    return ["memory"] if broker.name == "memory" else ["memory", "redis"]


async def broker_rounds(broker: Broker, stores: list[str], n: int, rounds: int) -> Figures:
    """The rates of (a) and (b) on one backend, every store, ``rounds`` times."""
    figures = Figures()
    for _ in range(rounds):
        figures.add("raw", await broker.raw_publish_rate(n))
        if broker.name != "memory":
            figures.add("publish", await publish_rate(broker, n))
        figures.add("pipeline", await pipeline_rate(broker, n))
        for store in stores:
            figures.add(f"enqueue {store}", await enqueue_rate(broker, store, n, many=False))
            figures.add(f"many {store}", await enqueue_rate(broker, store, n, many=True))
            figures.add(f"jobs {store}", await jobs_rate(broker, store, n))
            figures.add(f"lone {store}", await jobs_rate(broker, store, n, width=1))
        if broker.name == "redis" and "redis" in stores:  # (b)'s Redis work, bare
            figures.add(
                "floor", await floor.floor_rate(broker.url or "", n, own_process=False, push=PUSH)
            )
    return figures


async def measure_broker(broker: Broker, n: int, samples: int, rounds: int) -> list[str]:
    """(a), (b), (d) on one backend, every store; the printed lines."""
    latencies: dict[str, list[float]] = {}
    busy: dict[str, float] = {}  # of a core, this process (producer and worker) during (d)
    stores = [s for s in stores_of(broker) if s == "memory" or _jobs_store.available()]
    figures = await broker_rounds(broker, stores, n, rounds)
    for store in stores:
        for kind in ("jobs", "lone"):  # half of (b), half of (b) sent one at a time
            half = figures.median(f"{kind} {store}") / 2
            found: list[float] = []
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(rounds):
                found += warm(await jobs_latencies(broker, store, samples, half))
            latencies[f"{kind} {store}"] = found
            busy[f"{kind} {store}"] = (time.process_time() - cpu) / (time.perf_counter() - wall)
    await broker.delete_stores()
    raw = {
        "memory": f"MemoryBackend.publish, {IN_FLIGHT} in flight",
        "redis": f"raw redis-py XADD, {IN_FLIGHT} per pipeline",
        "rabbitmq": f"raw aio-pika, confirms, {IN_FLIGHT} in flight",
    }[broker.name]
    lines = [f"{broker.name} backend", row("(a) baseline: " + raw, "", figures.rate("raw"))]
    if "publish" in figures:
        rate = f"{figures.rate('publish')} {figures.ratio('publish', 'raw')}"
        lines.append(row(f"    backend.publish, no records, {IN_FLIGHT} in flight", "", rate))
    for name, what in (("enqueue", f"{IN_FLIGHT} in flight"), ("many", f"batches of {IN_FLIGHT}")):
        call = "enqueue" if name == "enqueue" else "enqueue_many"
        for store in stores_of(broker):
            key = f"{name} {store}"
            rate = f"{figures.rate(key)} {figures.ratio(key, 'raw')}" if key in figures else ""
            lines.append(row(f"    {call} with records, {what}", store, rate or NO_REDIS_STORE))
    lines.append(row("(b) baseline: same pipeline, no records", "", figures.rate("pipeline")))
    for store in stores_of(broker):
        key = f"jobs {store}"
        rate = (
            f"{figures.rate(key)} {figures.ratio(key, 'pipeline')} (target >= 50%)"
            if key in figures
            else NO_REDIS_STORE
        )
        lines.append(row("    jobs end to end, results read back", store, rate))
    for store in stores_of(broker):
        key = f"lone {store}"
        rate = figures.rate(key) if key in figures else NO_REDIS_STORE
        lines.append(row("    the same, sent one at a time", store, rate))
    if "floor" in figures:
        rate = f"{figures.rate('floor')} {figures.ratio('floor', 'pipeline')}"
        lines.append(row("    floor: its Redis work from bare redis-py", "redis", rate))
    return lines + latency_lines(broker, figures, latencies, busy)


def latency_lines(
    broker: Broker, figures: Figures, latencies: dict[str, list[float]], busy: dict[str, float]
) -> list[str]:
    """(d)'s lines: at half of (b), then at half of (b) sent one at a time."""
    lines = []
    target = "" if broker.name == "memory" else " (target p99 < 10 ms)"
    for kind, label in (("jobs", "half of (b)"), ("lone", "half of one at a time")):
        for store in stores_of(broker):
            key = f"{kind} {store}"
            if key in latencies:
                half = figures.median(key) / 2
                figure = (
                    f"at {half:,.0f}/s: {latency_line(latencies[key])}{target}, "
                    f"the process {busy[key]:.0%} busy"
                )
            else:
                figure = NO_REDIS_STORE
            lines.append(row(f"(d) enqueue -> handler start, {label}", store, figure))
    return lines


def row(label: str, store: str, figure: str) -> str:
    """One line: what, which store, the figure (the store column empty without records)."""
    kind = {"": "", "memory": "MemoryJobStore", "redis": "RedisJobStore"}[store]
    return f"  {label:<46} {kind:<14} {figure}"


async def peer_rate(system: str, url: str, *, n: int, width: int = IN_FLIGHT) -> float:
    """One round of one system's (c): a worker process of its own, n jobs, jobs per second.

    ``width`` (foxactors only): enqueues in flight; 1 sends them one at a time.
    """
    queue = f"bench-{system}-{uuid.uuid4().hex[:8]}"
    if system == "foxactors":
        async with worker_process_tasks(url, queue) as (noop, _):
            return await produce(noop, n, width)
    with peers.worker_process(system, url, queue, CONCURRENCY):
        if system == "arq":
            return await peers.arq_rate(url, queue, n, IN_FLIGHT)
        return await asyncio.to_thread(peers.celery_rate, url, queue, n)


async def peer_latencies(
    system: str, url: str, *, samples: int, rounds: int, rate: float
) -> list[float]:
    """One system's (d): ``rounds`` rounds of ``samples`` jobs at ``rate``, its worker running."""
    found: list[float] = []
    queue = f"bench-{system}-{uuid.uuid4().hex[:8]}"
    if system == "foxactors":
        async with worker_process_tasks(url, queue) as (_, stamp):
            for _ in range(rounds):
                found += warm(await paced_jobs(stamp, samples, rate))
        return found
    with peers.worker_process(system, url, queue, CONCURRENCY):
        for _ in range(rounds):
            if system == "arq":
                found += warm(await peers.arq_latencies(url, queue, samples, rate))
            else:
                found += warm(
                    await asyncio.to_thread(peers.celery_latencies, url, queue, samples, rate)
                )
    return found


async def measure_peers(url: str, n: int, samples: int, rounds: int) -> list[str]:
    """(c) and (d): foxactors, arq and Celery on Redis, each one worker process.

    Each round measures every system, one after the other, so that a ratio compares
    rates measured within a minute of each other (the machine's load moves more than
    that between the rounds); a ratio is the median of the rounds' ratios.
    """
    lines = [
        f"(c) end to end on Redis, {n:,} jobs, one worker process each (concurrency "
        f"{CONCURRENCY}), the producer in this process, every system in each round; "
        "(d) at half of each one's (c)"
    ]
    if not _jobs_store.available():
        lines.append(f"    foxactors {NO_REDIS_STORE}")
        return lines
    systems = ["foxactors", *(peer for peer in peers.PEERS if peers.available(peer))]
    figures = Figures()
    for _ in range(rounds):
        for system in systems:
            figures.add(system, await peer_rate(system, url, n=n))
        figures.add("floor", await floor.floor_rate(url, n, own_process=True, push=PUSH))
        figures.add("lone", await peer_rate("foxactors", url, n=max(n // 5, 10), width=1))
    ours, lone = figures.median("foxactors"), figures.median("lone")
    found = await peer_latencies("foxactors", url, samples=samples, rounds=rounds, rate=ours / 2)
    alone = await peer_latencies("foxactors", url, samples=samples, rounds=rounds, rate=lone / 2)
    lines += [
        f"    foxactors (RedisJobStore)     {figures.rate('foxactors')}",
        f"    floor: its Redis work, bare   {figures.rate('floor')} -> foxactors "
        f"{figures.ratio('foxactors', 'floor')[3:]} of it",
        f"    foxactors sent one at a time  {figures.rate('lone')}",
        f"    (d) foxactors at {ours / 2:>7,.0f}/s: {latency_line(found)} (target p99 < 10 ms)",
        f"    (d) foxactors at {lone / 2:>7,.0f}/s, half of one at a time: "
        f"{latency_line(alone)} (target p99 < 10 ms)",
    ]
    for peer in peers.PEERS:
        if peer not in systems:
            lines.append(f"    {peer:<9} {peers.INSTALL_HINT}")
            continue
        rate = figures.median(peer)
        found = await peer_latencies(peer, url, samples=samples, rounds=rounds, rate=rate / 2)
        times = [
            a / b for a, b in zip(figures.values["foxactors"], figures.values[peer], strict=True)
        ]
        spread = f" [{min(times):.1f}x-{max(times):.1f}x]" if len(times) > 1 else ""
        bare = [a / b for a, b in zip(figures.values["floor"], figures.values[peer], strict=True)]
        lines += [
            f"    {peer:<9}                     {figures.rate(peer)} -> foxactors "
            f"{statistics.median(times):.1f}x{spread} (target >= 3x); the floor "
            f"{statistics.median(bare):.1f}x",
            f"    (d) {peer:<9} at {rate / 2:>7,.0f}/s: {latency_line(found)}",
        ]
    return lines


@contextlib.contextmanager
def servers(backends: list[str], redis_url: str | None, amqp_url: str | None) -> Iterator[Any]:
    from foxactors.testing.servers import rabbitmq_server, redis_server  # noqa: PLC0415

    with contextlib.ExitStack() as stack:
        if redis_url is None:
            redis_url = stack.enter_context(redis_server()).url
        if amqp_url is None and "rabbitmq" in backends:
            amqp_url = stack.enter_context(rabbitmq_server()).url
        yield redis_url, amqp_url


def show(lines: list[str]) -> None:
    """Print a section as soon as it is measured (a full run takes minutes)."""
    for line in lines:
        print(line, flush=True)


async def measure(args: argparse.Namespace, redis_url: str, amqp_url: str | None) -> None:
    for name in args.backends:
        url = {"memory": None, "redis": redis_url, "rabbitmq": amqp_url}[name]
        broker = Broker(name, url, redis_url)
        show(await measure_broker(broker, args.jobs, args.samples, args.rounds))
    if "redis" in args.backends and not args.no_peers:
        show(await measure_peers(redis_url, args.jobs, args.samples, args.rounds))
    show(await _jobs_store.measure_store(redis_url, args.records, args.reads, args.rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument("--jobs", type=int, default=5_000, help="jobs per measurement")
    parser.add_argument("--samples", type=int, default=2_000, help="latency samples per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", default="10000,1000000", help="(e): small,large")
    parser.add_argument("--reads", type=int, default=2_000, help="(e): operations timed")
    parser.add_argument("--redis-url", help="an existing Redis (default: start our own)")
    parser.add_argument("--amqp-url", help="an existing RabbitMQ (default: start our own)")
    parser.add_argument("--no-peers", action="store_true", help="skip arq and Celery")
    parser.add_argument(
        "--no-push", action="store_true", help="Redis records: producers read every result"
    )
    parser.add_argument(
        "--loop",
        choices=peers.LOOPS,
        default="asyncio",
        help="the event loop of this process and of every worker process (uvloop: "
        "`pip install uvloop`; Celery's threads have none)",
    )
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    args = parser.parse_args()
    args.backends = [b for b in args.backends.split(",") if b]
    if unknown := set(args.backends) - set(BACKENDS):
        parser.error(f"unknown backends {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    if args.quick:
        args.jobs, args.samples, args.rounds, args.reads = 300, 200, 1, 200
        args.records = "1000,10000"
    args.records = [int(part) for part in args.records.split(",")]
    global PUSH  # noqa: PLW0603 - one switch for the whole run
    PUSH = not args.no_push and _jobs_store.pushes()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    show(
        [
            f"foxactors jobs benchmark, {time.strftime('%Y-%m-%d')}: {args.jobs:,} jobs per "
            f"figure, concurrency {CONCURRENCY}, prefetch {2 * CONCURRENCY}, medians of "
            f"{args.rounds} rounds [range]; Redis records "
            + ("pushed to the producer (push_results)" if PUSH else "read back by the producer")
            + f"; event loop: {args.loop}"
        ]
    )
    # the start-up objects out of full collections, as `fa.run` and `foxactors run` do
    # (a full collection of them costs 15-45 ms here: it would be (d)'s tail)
    fa.freeze_gc()
    peers.use_loop(args.loop)  # here, and in the worker processes it starts
    with servers(args.backends, args.redis_url, args.amqp_url) as (redis_url, amqp_url):
        asyncio.run(measure(args, redis_url, amqp_url))


if __name__ == "__main__":
    main()
