"""Raw baselines, and the broker benchmarks' foxactors runner, shared by the scripts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio
from anyio import WouldBlock
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import foxactors as fa


async def raw_fast_chain(n: int, hops: int, capacity: int) -> float:
    """Messages/s through ``hops`` anyio memory streams, ``*_nowait`` calls first.

    This is the fastest way to move items between tasks with anyio: no checkpoint
    while there is room or work, so no event-loop round trip per item.
    """
    streams = [anyio.create_memory_object_stream[int](capacity) for _ in range(hops)]
    done = anyio.Event()

    async def stage(
        receive: MemoryObjectReceiveStream[int], send: MemoryObjectSendStream[int]
    ) -> None:
        while True:
            try:
                item = receive.receive_nowait()
            except WouldBlock:
                item = await receive.receive()
            try:
                send.send_nowait(item)
            except WouldBlock:
                await send.send(item)

    async def sink(receive: MemoryObjectReceiveStream[int]) -> None:
        for _ in range(n):
            try:
                receive.receive_nowait()
            except WouldBlock:
                await receive.receive()
        done.set()

    async with anyio.create_task_group() as tg:
        for i in range(hops - 1):
            tg.start_soon(stage, streams[i][1], streams[i + 1][0])
        tg.start_soon(sink, streams[-1][1])
        send = streams[0][0]
        start = time.perf_counter()
        for i in range(n):
            try:
                send.send_nowait(i)
            except WouldBlock:
                await send.send(i)
        await done.wait()
        rate = n / (time.perf_counter() - start)
        tg.cancel_scope.cancel()
    for send_stream, receive_stream in streams:
        send_stream.close()
        receive_stream.close()
    return rate


async def broker_pipeline_rate(backend: Any, queue: str, n: int, prefetch: int) -> float:
    """Messages/s of the default stack with a no-op worker draining ``n`` messages."""
    count = 0
    done = asyncio.Event()

    async def noop(message: fa.Message) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    app = fa.WorkerApp("bench").add_worker(noop).with_prefetch(prefetch)
    start = time.perf_counter()
    async with fa.open_system(app.build(backend, queue)):
        await done.wait()
        elapsed = time.perf_counter() - start
    return n / elapsed
