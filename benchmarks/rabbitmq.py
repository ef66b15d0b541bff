"""RabbitMQ consume throughput: foxactors beside raw aio-pika, on the same broker, same run.

Each run publishes N small JSON messages to a fresh queue before its consumer starts,
then times consuming all of them with prefetch 100:

(a) raw aio-pika, a consume callback acking each message;
(b) raw aio-pika, acking with ``multiple=True`` every 50 messages;
(c) foxactors, default stack (consumer, retry, pool of 8 workers) and a no-op handler.

Also reported: publish rate with publisher confirms (foxactors' `publish`, 100 in flight).
Starts its own rabbitmq-server on loopback unless given ``--url``.

Run: python benchmarks/rabbitmq.py [--messages N] [--url amqp://...] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aio_pika
import structlog
from _baselines import broker_pipeline_rate

from foxactors.backends import RabbitMQBackend
from foxactors.testing.servers import rabbitmq_server

PREFETCH = 100
BODY = {"to": "user@example.com", "template": "welcome"}


async def fill(backend: RabbitMQBackend, queue: str, n: int) -> float:
    """Publish n messages with confirms, 100 in flight; return messages per second."""
    start = time.perf_counter()
    for first in range(0, n, 100):
        await asyncio.gather(
            *(backend.publish(queue, {**BODY, "n": i}) for i in range(first, min(n, first + 100)))
        )
    return n / (time.perf_counter() - start)


async def raw_rate(url: str, queue: str, n: int, every: int) -> float:
    """Raw aio-pika: ack each message (every=1) or ack multiple every ``every``."""
    connection = await aio_pika.connect(url)
    done = asyncio.Event()
    count = 0
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        declared = await channel.get_queue(queue, ensure=True)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal count
            count += 1
            if every == 1:
                await message.ack()
            elif count % every == 0 or count == n:
                await message.ack(multiple=True)
            if count == n:
                done.set()

        start = time.perf_counter()
        await declared.consume(on_message)
        await done.wait()
        return n / (time.perf_counter() - start)


async def foxactors_rate(backend: RabbitMQBackend, queue: str, n: int) -> float:
    return await broker_pipeline_rate(backend, queue, n, PREFETCH)


@contextlib.contextmanager
def broker(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with rabbitmq_server() as server:
        yield server.url


async def measure(url: str, n: int, runs: int) -> dict[str, Any]:
    backend = RabbitMQBackend(url)
    best: dict[str, float] = {}

    def keep(name: str, value: float) -> None:
        best[name] = max(best.get(name, 0.0), value)

    for _ in range(runs):
        for name in ("ack each", "ack multiple", "foxactors"):
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            keep("publish (confirms)", await fill(backend, queue, n))
            if name == "foxactors":
                keep(name, await foxactors_rate(backend, queue, n))
            else:
                keep(name, await raw_rate(url, queue, n, 1 if name == "ack each" else 50))
    await backend.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="as in the design")
    parser.add_argument("--url", help="an existing broker (default: start our own)")
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    n, runs = (1_000, 1) if args.quick else (args.messages, 3)
    with broker(args.url) as url:
        best = asyncio.run(measure(url, n, runs))
    ours = best["foxactors"]
    print(f"RabbitMQ, {n:,} messages, prefetch {PREFETCH}, best of {runs}")
    print(f"  publish with confirms         {best['publish (confirms)']:>9,.0f} msg/s")
    print(f"  (a) raw aio-pika, ack each    {best['ack each']:>9,.0f} msg/s")
    print(f"  (b) raw aio-pika, multiple/50 {best['ack multiple']:>9,.0f} msg/s")
    print(f"  foxactors default stack       {ours:>9,.0f} msg/s")
    print(f"  foxactors / (a): {ours / best['ack each']:.0%} (target >= 100%)")
    print(f"  foxactors / (b): {ours / best['ack multiple']:.0%} (target >= 90%)")


if __name__ == "__main__":
    main()
