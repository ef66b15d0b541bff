"""Actor core figures, each printed beside a raw baseline measured in the same run.

(a) spawn: time and memory for N idle actors vs N raw anyio tasks + memory streams;
(b) hops: messages/s through a chain of 4 actors vs 4-hop raw chains (anyio memory
    streams with the send_nowait/receive_nowait fast path, and asyncio.Queue);
(c) ask: request/reply round trips per second vs a raw anyio stream + event.

Run: python benchmarks/core.py [--backend asyncio|trio] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import logging
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import _baselines
import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream

import foxactors as fa

HOPS = 4
CAPACITY = 1000


def best_of(runs: int, measure: Callable[[], float]) -> float:
    """Return the best of ``runs`` measurements (higher is better)."""
    return max(measure() for _ in range(runs))


# -- (a) spawn -----------------------------------------------------------------------


class Idle(fa.Actor[Any]):
    async def receive(self, message: Any) -> None:
        pass


async def spawn_actors(n: int) -> tuple[float, int]:
    """Start n idle actors under one supervisor; return (seconds until all are
    started, bytes traced at that moment)."""
    spec = fa.Supervisor.spec(
        "bench", [fa.ChildSpec(f"a{i}", Idle, mailbox_size=100) for i in range(n)]
    )
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    async with fa.open_system(spec):
        elapsed = time.perf_counter() - start
        used = tracemalloc.get_traced_memory()[0] - base
    return elapsed, used


async def spawn_raw(n: int) -> tuple[float, int]:
    """Start n raw tasks, each owning a memory stream; return the same figures.

    A task counts as started when it has run up to its first receive, the same
    readiness an actor reports once its start hook has run.
    """
    ready = anyio.Event()
    count = 0

    async def idle(receive: MemoryObjectReceiveStream[Any]) -> None:
        nonlocal count
        count += 1
        if count == n:
            ready.set()
        async with receive:
            async for _ in receive:
                pass

    senders = []
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            send, receive = anyio.create_memory_object_stream[Any](100)
            senders.append(send)
            tg.start_soon(idle, receive)
        await ready.wait()
        elapsed = time.perf_counter() - start
        used = tracemalloc.get_traced_memory()[0] - base
        for send in senders:
            send.close()
    return elapsed, used


def measure_spawn(
    backend: str, n: int, make: Callable[[int], Awaitable[tuple[float, int]]]
) -> tuple[float, float]:
    """Return (best seconds per spawn, bytes per idle spawn) for ``make``."""
    seconds = []
    for _ in range(2):
        gc.collect()
        seconds.append(anyio.run(make, n, backend=backend)[0] / n)
    gc.collect()
    tracemalloc.start()
    used = anyio.run(make, n, backend=backend)[1] / n
    tracemalloc.stop()
    return min(seconds), used


# -- (b) hops ------------------------------------------------------------------------


class Hop(fa.Actor[int]):
    def __init__(self, target: fa.ActorRef[int]) -> None:
        self.target = target

    async def receive(self, message: int) -> None:
        await self.target.tell(message)


class Sink(fa.Actor[int]):
    def __init__(self, n: int, done: anyio.Event) -> None:
        self.n = n
        self.done = done
        self.seen = 0

    async def receive(self, message: int) -> None:
        self.seen += 1
        if self.seen == self.n:
            self.done.set()


async def actor_chain(n: int) -> float:
    done = anyio.Event()
    sink_spec = fa.ChildSpec("sink", lambda: Sink(n, done), mailbox_size=CAPACITY)
    async with fa.open_system(fa.Supervisor.spec("chain", [sink_spec])) as system:
        target: fa.ActorRef[int] = system.ref("sink")
        for i in range(HOPS - 1):
            spec = fa.ChildSpec(f"hop{i}", functools.partial(Hop, target), mailbox_size=CAPACITY)
            target = await fa.start_child(system.root, spec)
        start = time.perf_counter()
        for i in range(n):
            await target.tell(i)
        await done.wait()
        return n / (time.perf_counter() - start)


async def raw_fast_chain(n: int) -> float:
    return await _baselines.raw_fast_chain(n, HOPS, CAPACITY)


async def asyncio_queue_chain(n: int) -> float:
    queues: list[asyncio.Queue[int]] = [asyncio.Queue(CAPACITY) for _ in range(HOPS)]
    done = asyncio.Event()

    async def stage(a: asyncio.Queue[int], b: asyncio.Queue[int]) -> None:
        while True:
            await b.put(await a.get())

    async def sink(a: asyncio.Queue[int]) -> None:
        for _ in range(n):
            await a.get()
        done.set()

    tasks = [asyncio.create_task(stage(queues[i], queues[i + 1])) for i in range(HOPS - 1)]
    tasks.append(asyncio.create_task(sink(queues[-1])))
    start = time.perf_counter()
    for i in range(n):
        await queues[0].put(i)
    await done.wait()
    rate = n / (time.perf_counter() - start)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return rate


# -- (c) ask -------------------------------------------------------------------------


class Echo(fa.Actor[int]):
    async def receive(self, message: int) -> int:
        return message


async def actor_ask(n: int) -> float:
    async with fa.open_system(fa.ChildSpec("echo", Echo)) as system:
        ref = system.root
        start = time.perf_counter()
        for i in range(n):
            await ref.ask(i)
        return n / (time.perf_counter() - start)


async def raw_ask(n: int) -> float:
    send, receive = anyio.create_memory_object_stream[tuple[int, list[Any]]](CAPACITY)

    async def server() -> None:
        async for value, reply in receive:
            reply.append(value)
            reply[0].set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(server)
        start = time.perf_counter()
        for i in range(n):
            event = anyio.Event()
            await send.send((i, [event]))
            with anyio.fail_after(5):
                await event.wait()
        rate = n / (time.perf_counter() - start)
        tg.cancel_scope.cancel()
    return rate


def rate_of(backend: str, fn: Callable[[int], Awaitable[float]], n: int) -> Callable[[], float]:
    return lambda: anyio.run(fn, n, backend=backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    backend = args.backend
    spawn_n, msg_n, ask_n, runs = (
        (2_000, 5_000, 2_000, 1) if args.quick else (100_000, 200_000, 50_000, 3)
    )

    print(f"foxactors core benchmark, backend={backend}")
    actor_s, actor_b = measure_spawn(backend, spawn_n, spawn_actors)
    raw_s, raw_b = measure_spawn(backend, spawn_n, spawn_raw)
    print(
        f"(a) spawn {spawn_n:,} idle actors: {actor_s * 1e6:.1f} us/actor vs raw task+stream "
        f"{raw_s * 1e6:.1f} us -> {actor_s / raw_s:.2f}x time (target <= 2x)"
    )
    print(
        f"    memory: {actor_b:,.0f} B/actor vs raw {raw_b:,.0f} B -> "
        f"{actor_b / raw_b:.2f}x (target <= 2x)"
    )

    actors = best_of(runs, rate_of(backend, actor_chain, msg_n))
    fast = best_of(runs, rate_of(backend, raw_fast_chain, msg_n))
    print(
        f"(b) {HOPS}-hop chain, {msg_n:,} msgs: actors {actors:,.0f}/s "
        f"({1e6 / actors / HOPS:.2f} us/hop) vs raw fast path {fast:,.0f}/s "
        f"({1e6 / fast / HOPS:.2f} us/hop) -> {actors / fast:.0%} (target >= 50%)"
    )
    if backend == "asyncio":
        queue = best_of(runs, rate_of(backend, asyncio_queue_chain, msg_n))
        print(
            f"    vs asyncio.Queue {queue:,.0f}/s ({1e6 / queue / HOPS:.2f} us/hop) "
            f"-> {actors / queue:.0%}"
        )

    asks = best_of(runs, rate_of(backend, actor_ask, ask_n))
    raw_asks = best_of(runs, rate_of(backend, raw_ask, ask_n))
    print(
        f"(c) ask round trips: {asks:,.0f}/s vs raw stream+event {raw_asks:,.0f}/s "
        f"-> {asks / raw_asks:.0%}"
    )


if __name__ == "__main__":
    main()
