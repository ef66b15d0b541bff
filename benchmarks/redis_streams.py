"""Redis Streams consume throughput: foxactors beside raw redis-py, same server, same run.

Each run adds N small JSON messages (as foxactors' `publish` writes them: payload, id
and timestamp fields) to a fresh stream before its consumer starts, then times
consuming all of them in a consumer group, reading batches of 100:

(a) raw redis-py: XREADGROUP, decode each entry, one XACK per message;
(b) raw redis-py: XREADGROUP, decode each entry, one XACK per read batch;
(c) foxactors, default stack (consumer, retry, pool of 8 workers, lease keeper,
    reclaimer, scheduler) and a no-op handler, prefetch 100.

(a) runs on 20,000 messages; (b) and (c) on 200,000, so that their figures are steady.
Also reported: foxactors' `publish` rate (100 in flight). Starts its own redis-server
on loopback unless given ``--url``.

Run: python benchmarks/redis_streams.py [--messages N] [--url redis://...] [--quick]
    [--tracing]  (also the foxactors rows with OpenTelemetry tracing on, in the same run)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import redis.asyncio as aioredis
import structlog
from _baselines import broker_pipeline_rate
from pipeline import dropping_provider

import foxactors as fa
from foxactors.backends import RedisBackend
from foxactors.testing.servers import redis_server

BATCH = 100
BODY = {"to": "user@example.com", "template": "welcome"}
GROUP = "bench"


async def fill(backend: RedisBackend, client: Any, stream: str, n: int) -> None:
    """Add n entries in pipelines of 1,000, as `publish` would write them."""
    for first in range(0, n, 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(n, first + 1000)):
            fields = backend.fields(
                backend.codec.encode({**BODY, "n": i}), fa.MessageProperties(), uuid.uuid4().hex
            )
            pipe.xadd(stream, fields)
        await pipe.execute()
    await client.xgroup_create(stream, GROUP, id="0")


async def publish_rate(backend: RedisBackend, stream: str, n: int) -> float:
    """foxactors' publish, 100 in flight; messages per second."""
    start = time.perf_counter()
    for first in range(0, n, 100):
        await asyncio.gather(
            *(backend.publish(stream, {**BODY, "n": i}) for i in range(first, min(n, first + 100)))
        )
    return n / (time.perf_counter() - start)


async def raw_rate(client: Any, stream: str, n: int, *, per_batch: bool) -> float:
    """Raw redis-py: XREADGROUP batches, decode, XACK each entry or each batch."""
    count = 0
    start = time.perf_counter()
    while count < n:
        reply = await client.xreadgroup(GROUP, "raw", {stream: ">"}, count=BATCH, block=1000)
        entries = reply[0][1] if reply else []
        for entry_id, fields in entries:
            json.loads(fields[b"payload"])
            if not per_batch:
                await client.xack(stream, GROUP, entry_id)
        if per_batch and entries:
            await client.xack(stream, GROUP, *(entry_id for entry_id, _ in entries))
        count += len(entries)
    return n / (time.perf_counter() - start)


async def foxactors_rate(url: str, stream: str, n: int) -> float:
    backend = RedisBackend(url, group=GROUP)
    rate = await broker_pipeline_rate(backend, stream, n, BATCH)
    await backend.close()
    return rate


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with redis_server() as ours:
        yield ours.url


async def measure(
    url: str, small: int, large: int, runs: int, tracing: bool = False
) -> dict[str, float]:
    backend = RedisBackend(url)
    client = aioredis.Redis.from_url(url)
    best: dict[str, float] = {}

    def keep(name: str, value: float) -> None:
        best[name] = max(best.get(name, 0.0), value)

    for _ in range(runs):
        for name, n in (("xack each", small), ("xack per batch", large), ("foxactors", large)):
            stream = f"bench-{uuid.uuid4().hex[:8]}"
            await fill(backend, client, stream, n)
            if name == "foxactors":
                keep(name, await foxactors_rate(url, stream, n))
            else:
                keep(name, await raw_rate(client, stream, n, per_batch=name == "xack per batch"))
            await client.delete(stream)
        stream = f"bench-{uuid.uuid4().hex[:8]}"
        keep("publish", await publish_rate(backend, stream, min(small, 20_000)))
        await client.delete(stream)
        if tracing:  # the same two, traced, in the same turn
            await traced(url, client, keep, small, large)
    await backend.close()
    await client.aclose()
    return best


async def traced(
    url: str, client: Any, keep: Callable[[str, float], None], small: int, large: int
) -> None:
    """The foxactors stack and publish with tracing on (every trace kept)."""
    provider = dropping_provider(1.0, 4 * large)
    fa.enable_tracing(provider)
    backend = RedisBackend(url)
    try:
        stream = f"bench-{uuid.uuid4().hex[:8]}"
        await fill(backend, client, stream, large)
        keep("foxactors traced", await foxactors_rate(url, stream, large))
        await client.delete(stream)
        stream = f"bench-{uuid.uuid4().hex[:8]}"
        keep("publish traced", await publish_rate(backend, stream, min(small, 20_000)))
        await client.delete(stream)
    finally:
        await backend.close()
        fa.disable_tracing()
        provider.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="for (b) and (c)")
    parser.add_argument("--url", help="an existing Redis (default: start our own)")
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    parser.add_argument("--tracing", action="store_true", help="also with tracing on")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    small, large, runs = (1_000, 2_000, 1) if args.quick else (20_000, args.messages, 3)
    with server(args.url) as url:
        best = asyncio.run(measure(url, small, large, runs, args.tracing))
    ours = best["foxactors"]
    print(f"Redis Streams, read batch {BATCH}, best of {runs}")
    print(f"  publish (foxactors, 100 in flight)    {best['publish']:>9,.0f} msg/s")
    print(f"  (a) raw redis-py, XACK each  ({small:,})  {best['xack each']:>9,.0f} msg/s")
    print(f"  (b) raw redis-py, XACK per batch ({large:,}) {best['xack per batch']:>9,.0f} msg/s")
    print(f"  foxactors default stack ({large:,})   {ours:>9,.0f} msg/s")
    print(f"  foxactors / (a): {ours / best['xack each']:.0%}")
    print(f"  foxactors / (b): {ours / best['xack per batch']:.0%} (target >= 40%)")
    if args.tracing:
        for name, off in (("foxactors traced", ours), ("publish traced", best["publish"])):
            on = best[name]
            print(f"  {name}: {on:,.0f} msg/s -> on/off {on / off:.0%}")


if __name__ == "__main__":
    main()
