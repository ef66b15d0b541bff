"""Tenants: fair shares beside plain first in, first out, measured in the same run.

On the memory backend (the dispatch is the backend's; the pipeline on top is the same):

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

Figures are medians over ``--rounds``; a ratio is the median of the rounds' ratios.

Run: python benchmarks/tenants.py [--backend asyncio|trio] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import anyio

import foxactors as fa
from foxactors.backends import FairShares

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
    warm = anyio.Event()
    started = 0
    at_publish = 0
    published = 0.0
    waited = anyio.Event()
    wait = 0.0

    async def handle(message: fa.Message) -> None:
        nonlocal started, wait
        started += 1
        if message.properties.headers.get("x-tenant") == "b":
            wait = time.perf_counter() - published
            waited.set()
        elif started == 1_000:
            warm.set()

    app = fa.WorkerApp("bench").add_worker(handle).with_concurrency_limit(CONCURRENCY)
    app = app.with_prefetch(2 * CONCURRENCY)  # as a job worker's: what is fetched goes first
    async with fa.open_system(app.build(backend, QUEUE)):
        await warm.wait()
        at_publish = started
        published = time.perf_counter()
        await backend.publish(QUEUE, {"n": 1}, properties=properties("b"))
        await waited.wait()
        ahead = started - at_publish - 1
        await backend.join(QUEUE)
    return ahead, wait


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
        left = messages
        while left:
            batch = await source.receive(min(PREFETCH, left))
            for delivery in batch:
                delivery.handle.ack()
            left -= len(batch)
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


BACKEND = "asyncio"


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], show: Callable[[float], str]) -> str:
    return f"{show(median(values))} [{show(min(values))}..{show(max(values))}]"


def main() -> None:
    global BACKEND  # noqa: PLW0603 - the event loop every figure runs on, from the command line
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--backlog", type=int, default=100_000, help="tenant A's jobs in (a)")
    parser.add_argument("--messages", type=int, default=100_000, help="per figure in (b), (c)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    args = parser.parse_args()
    BACKEND = args.backend
    if args.quick:
        args.backlog, args.messages, args.rounds = 5_000, 20_000, 1
    print(f"tenants on the memory backend ({BACKEND}), {args.rounds} round(s)")

    print(f"(a) a lone tenant's job behind a backlog of {args.backlog:,} of another's:")
    fifo = [
        anyio.run(lone_tenant, args.backlog, False, backend=BACKEND) for _ in range(args.rounds)
    ]
    fair = [anyio.run(lone_tenant, args.backlog, True, backend=BACKEND) for _ in range(args.rounds)]
    for name, runs in (("plain FIFO", fifo), ("fair", fair)):
        ahead = median([float(n) for n, _ in runs])
        waited = spread([w for _, w in runs], lambda s: f"{s * 1000:.1f} ms")
        print(f"    {name:10}: {ahead:,.0f} jobs started ahead of it, waited {waited}")
    ratio = median([f[1] / max(p[1], 1e-9) for f, p in zip(fifo, fair, strict=True)])
    print(f"    -> FIFO wait / fair wait: {ratio:,.0f}x")

    print(f"(b) dispatch cost per message ({args.messages:,} taken and acked, batches of 100):")
    costs: dict[int | None, list[float]] = {n: [] for n in (None, *TENANT_COUNTS)}
    for _ in range(args.rounds):
        for tenants, spent in costs.items():
            spent.append(dispatch_cost(args.messages, tenants))

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

    print(f"(c) pipeline throughput, {args.messages:,} messages of 100 tenants:")
    off: list[float] = []
    on: list[float] = []
    for _ in range(args.rounds):
        off.append(anyio.run(throughput, args.messages, False, backend=BACKEND))
        on.append(anyio.run(throughput, args.messages, True, backend=BACKEND))
    print(f"    fairness off: {spread(off, lambda r: f'{r:,.0f}/s')}")
    print(f"    fairness on : {spread(on, lambda r: f'{r:,.0f}/s')}")
    share = median([a / b for a, b in zip(on, off, strict=True)])
    print(f"    -> on / off: {share:.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
