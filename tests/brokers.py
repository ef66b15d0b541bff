"""Real brokers behind one face, for the tests that run on both (asyncio, real time)."""

from __future__ import annotations

from typing import Any

import aio_pika
import anyio
import redis.asyncio as aioredis

from foxactors.backends import RabbitMQBackend, RedisBackend

BROKERS = ["rabbitmq", "redis"]


class RabbitMQCase:
    """A RabbitMQ server of the suite's, with a backend on it."""

    intake = ("connection", "consumer")

    def __init__(self, server: Any) -> None:
        self.server = server
        self.backend: Any = RabbitMQBackend(server.url)

    async def cut(self) -> None:
        """Close every client connection, from the broker's side."""
        await anyio.to_thread.run_sync(self.server.ctl, "close_all_connections", "cut")

    async def stranded(self, queue: str) -> int:
        """Messages left in the queue."""
        connection = await aio_pika.connect(self.server.url)
        async with connection:
            channel = await connection.channel()
            left = await channel.declare_queue(queue, passive=True)
            return left.declaration_result.message_count or 0


class RedisCase:
    """A Redis server of the suite's, with a backend on it."""

    intake = ("connection", "consumer", "leases", "reclaimer", "scheduler")

    def __init__(self, server: Any) -> None:
        self.server = server
        self.backend: Any = RedisBackend(server.url, poll_interval=0.01)

    async def cut(self) -> None:
        """Kill every client connection (but the one asking)."""
        client: Any = aioredis.Redis.from_url(self.server.url)
        await client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        await client.aclose()

    async def stranded(self, stream: str) -> int:
        """Entries pending or waiting in the delayed set."""
        client = aioredis.Redis.from_url(self.server.url)
        pending = await client.xpending(stream, "foxactors")
        delayed = await client.zcard(f"{stream}:delayed")
        await client.aclose()
        return int(pending["pending"]) + int(delayed)


def case(broker: str, server: Any) -> RabbitMQCase | RedisCase:
    """The case of ``broker`` ("rabbitmq" or "redis") on ``server``."""
    return RabbitMQCase(server) if broker == "rabbitmq" else RedisCase(server)
