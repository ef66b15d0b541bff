"""Real brokers behind one face, for the tests that run on both (asyncio, real time)."""

from __future__ import annotations

import contextlib
from typing import Any

import aio_pika
import anyio
import redis.asyncio as aioredis
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

from foxactors.backends import RabbitMQBackend, RedisBackend

BROKERS = ["rabbitmq", "redis"]


class Partition:
    """A TCP proxy in front of a server that can cut the network silently.

    While partitioned, no byte crosses in either direction and no connection is
    closed, as when a cable is pulled or a firewall drops packets; the bytes wait and
    flow once it heals, as TCP would retransmit them. `gave_up` is set when a client
    closes a connection while partitioned: it noticed the silence and let it go.
    """

    def __init__(self, upstream: int, port: int = 0) -> None:
        self.upstream = upstream
        self.port = port  # 0: a free one, known once serving
        self.gave_up = anyio.Event()
        self._flowing = anyio.Event()
        self._flowing.set()

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Accept connections on a loopback port (`port`) until cancelled."""
        listening = anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)
        async with await listening as listener:
            self.port = listener.extra(SocketAttribute.local_port)
            task_status.started()
            await listener.serve(self._relay)

    def cut(self) -> None:
        """Stop every byte, silently."""
        self._flowing = anyio.Event()

    def heal(self) -> None:
        """Let the bytes flow again."""
        self._flowing.set()

    async def _relay(self, client: SocketStream) -> None:
        async with client:
            try:
                server = await anyio.connect_tcp("127.0.0.1", self.upstream)
            except OSError:
                return
            async with server, anyio.create_task_group() as pumps:
                for source, sink in ((client, server), (server, client)):
                    send, receive = anyio.create_memory_object_stream[bytes](float("inf"))
                    pumps.start_soon(self._read, source, send, source is client)
                    pumps.start_soon(self._write, receive, sink, pumps.cancel_scope)

    async def _read(self, source: SocketStream, held: Any, from_client: bool) -> None:
        """Take what arrives at once (so a close is seen), to be passed on when flowing."""
        async with held:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                async for chunk in source:
                    held.send_nowait(chunk)
        if from_client and not self._flowing.is_set():
            self.gave_up.set()

    async def _write(self, held: Any, sink: SocketStream, both: Any) -> None:
        try:
            async with held:
                async for chunk in held:
                    await self._flowing.wait()
                    await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            both.cancel()  # one side is done: close both


class RabbitMQCase:
    """A RabbitMQ server of the suite's, with a backend on it."""

    intake = ("connection", "consumer", "settler")

    def __init__(self, server: Any) -> None:
        self.server = server
        self.backend: Any = RabbitMQBackend(server.url)

    def backend_via(self, port: int) -> Any:
        """A backend that reaches the server through ``port`` (a `Partition`'s).

        Heartbeats every second: a silent peer is given up after a few seconds.
        """
        return RabbitMQBackend(f"amqp://guest:guest@127.0.0.1:{port}/?heartbeat=1")

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

    intake = ("connection", "consumer", "settler", "leases", "reclaimer", "scheduler")

    def __init__(self, server: Any) -> None:
        self.server = server
        self.backend: Any = RedisBackend(server.url, poll_interval=0.01)

    def backend_via(self, port: int) -> Any:
        """A backend that reaches the server through ``port`` (a `Partition`'s)."""
        url = self.server.url.replace(f":{self.server.port}", f":{port}")
        return RedisBackend(url, poll_interval=0.01)

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
