"""Publishing to Redis in batches: a turn's publishes go out as one pipeline.

Against the suite's real redis-server (asyncio); the batching itself is in
test_turn_batcher.py.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

import foxactors as fa
from foxactors.backends import RedisBackend
from foxactors.testing.servers import RedisServer

from .brokers import Partition

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.fixture
def stream() -> str:
    return f"pub-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def raw(redis: RedisServer) -> AsyncIterator[Any]:
    client = aioredis.Redis.from_url(redis.url)
    yield client
    await client.aclose()


def counted_pipelines(client: Any) -> list[int]:
    """A list that gets one item for each pipeline ``client`` opens from now on."""
    pipelines: list[int] = []
    real = client.pipeline

    def counted(*args: Any, **kwargs: Any) -> Any:
        pipelines.append(1)
        return real(*args, **kwargs)

    client.pipeline = counted
    return pipelines


async def test_concurrent_publishes_are_one_round_trip_in_call_order(
    redis: RedisServer, raw: Any, stream: str
) -> None:
    backend = RedisBackend(redis.url)
    await backend.publish(stream, -1)  # opens the publishing client
    pipelines = counted_pipelines(await backend._client())
    ids: dict[int, str] = {}

    async def publish(i: int) -> None:
        ids[i] = await backend.publish(stream, i)

    async with anyio.create_task_group() as tg:
        for i in range(100):
            tg.start_soon(publish, i)
    await backend.close()
    assert pipelines == [1]
    assert len(set(ids.values())) == 100
    entries = await raw.xrange(stream)
    assert [json.loads(fields[b"payload"]) for _, fields in entries] == [-1, *range(100)]
    assert [fields[b"id"].decode() for _, fields in entries[1:]] == [ids[i] for i in range(100)]


async def test_one_refused_entry_fails_only_its_own_publish(
    redis: RedisServer, raw: Any, stream: str
) -> None:
    await raw.set(f"{stream}-not-a-stream", "x")
    backend = RedisBackend(redis.url)
    outcomes: dict[str, str] = {}

    async def publish(name: str) -> None:
        try:
            await backend.publish(name, 1)
            outcomes[name] = "ok"
        except fa.BackendError as exc:
            outcomes[name] = str(exc)

    await backend.publish(stream, 0)
    async with anyio.create_task_group() as tg:
        for name in (stream, f"{stream}-not-a-stream", stream):
            tg.start_soon(publish, name)
    await backend.close()
    assert outcomes[stream] == "ok"
    assert "WRONGTYPE" in outcomes[f"{stream}-not-a-stream"]
    assert await raw.xlen(stream) == 3


class Breaker:
    """A proxy that lets the commands through until a pipeline of XADDs comes: it
    passes the first part of it, then closes both connections (mid-batch)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self.broke = 0

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        async with listener:
            self.port = listener.extra(SocketAttribute.local_port)
            task_status.started()
            await listener.serve(self._relay)

    async def _relay(self, client: SocketStream) -> None:
        async with (
            client,
            await anyio.connect_tcp("127.0.0.1", self.upstream) as server,
            anyio.create_task_group() as tg,
        ):

            async def back() -> None:
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    async for chunk in server:
                        await client.send(chunk)

            tg.start_soon(back)
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                async for chunk in client:
                    if chunk.count(b"XADD") > 1:
                        await server.send(chunk[: len(chunk) // 2])
                        self.broke += 1
                        break
                    await server.send(chunk)
            tg.cancel_scope.cancel()


async def test_a_connection_lost_mid_batch_fails_every_publish_of_it(
    redis: RedisServer, raw: Any, stream: str
) -> None:
    breaker = Breaker(redis.port)
    async with anyio.create_task_group() as tg:
        await tg.start(breaker.serve)
        backend = RedisBackend(f"redis://127.0.0.1:{breaker.port}/0")
        outcomes: list[str] = []

        async def publish(i: int) -> None:
            try:
                await backend.publish(stream, {"n": i, "pad": "x" * 100})
                outcomes.append("ok")
            except fa.BackendError as exc:
                outcomes.append(str(exc))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as publishers:
                for i in range(50):
                    publishers.start_soon(publish, i)
        await backend.close()
        tg.cancel_scope.cancel()
    assert breaker.broke >= 1
    assert 0 < await raw.xlen(stream) < 50 * breaker.broke  # some went in before the cut
    assert len(outcomes) == 50
    assert all(o.startswith(f"publishing to {stream!r} failed") for o in outcomes), outcomes


async def test_close_answers_publishes_waiting_on_a_silent_server(
    redis: RedisServer, raw: Any, stream: str
) -> None:
    partition = Partition(redis.port)
    async with anyio.create_task_group() as tg:
        await tg.start(partition.serve)
        backend = RedisBackend(f"redis://127.0.0.1:{partition.port}/0")
        await backend.publish(stream, 0)  # connected
        partition.cut()
        outcomes: list[str] = []

        async def publish(i: int) -> None:
            try:
                await backend.publish(stream, i)
                outcomes.append("ok")
            except fa.BackendError as exc:
                outcomes.append(str(exc))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as publishers:
                for i in range(1, 6):
                    publishers.start_soon(publish, i)
                await anyio.wait_all_tasks_blocked()
                assert outcomes == []  # all waiting on the silent server
                await backend.close()
        partition.heal()
        tg.cancel_scope.cancel()
    assert len(outcomes) == 5
    assert all("closed before it was answered" in o for o in outcomes), outcomes


async def test_a_tenant_view_publishes_on_its_backends_client_and_closes_with_it(
    redis: RedisServer, raw: Any, stream: str
) -> None:
    async def connections() -> int:
        return len(await raw.client_list())

    alone = await connections()  # the raw client's own
    backend = RedisBackend(redis.url)
    view = backend.for_tenants({"acme"})
    await view.publish(stream, 1)  # the view publishes first: it opens the client
    await backend.publish(stream, 2)
    assert await connections() == alone + 1  # one publishing client, shared
    await backend.close()
    assert await connections() == alone  # closing the backend closed the view's too
    assert await raw.xlen(stream) == 2


async def test_closing_a_tenant_view_leaves_its_backend_publishing(
    redis: RedisServer, raw: Any, stream: str
) -> None:
    backend = RedisBackend(redis.url)
    await backend.publish(stream, 1)
    view = backend.for_tenants({"acme"})
    await view.close()
    await backend.publish(stream, 2)  # its client and batcher still open
    assert await raw.xlen(stream) == 2
    await backend.close()


async def test_publish_many_is_one_round_trip_in_order_and_each_fails_alone(
    redis: RedisServer, raw: Any, stream: str
) -> None:
    backend = RedisBackend(redis.url)
    assert isinstance(backend, fa.backends.BatchPublisher)
    await backend.publish(stream, -1)  # opens the publishing client
    pipelines = counted_pipelines(await backend._client())
    messages: list[tuple[Any, fa.MessageProperties | None]] = [(n, None) for n in range(50)]
    messages[7] = (object(), None)  # not JSON: that one alone fails
    answers = await backend.publish_many(stream, messages)
    await backend.close()
    assert pipelines == [1]
    assert isinstance(answers[7], fa.EncodeError)
    assert all(isinstance(a, str) for n, a in enumerate(answers) if n != 7)
    entries = await raw.xrange(stream)
    expected = [n for n in range(50) if n != 7]
    assert [json.loads(fields[b"payload"]) for _, fields in entries] == [-1, *expected]
    assert [fields[b"id"].decode() for _, fields in entries[1:]] == [answers[n] for n in expected]


async def test_a_publish_many_cancelled_mid_send_still_sends_for_the_others(
    redis: RedisServer, raw: Any, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = RedisBackend(redis.url)
    await backend.publish(stream, -1)  # opens the publishing client
    real = backend._adds._send

    async def slow(entries: Any) -> Any:
        await anyio.sleep(0.1)  # the batch is on its way when the cancel comes
        return await real(entries)

    monkeypatch.setattr(backend._adds, "_send", slow)
    sent: list[str] = []

    async def many() -> None:
        with anyio.move_on_after(0.05):
            await backend.publish_many(stream, [(n, None) for n in range(3)])

    async def other() -> None:
        await anyio.lowlevel.checkpoint()  # joins the batch a publish_many item sends
        sent.append(await backend.publish(stream, "other"))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(many)
        tasks.start_soon(other)
    await backend.close()
    assert len(sent) == 1  # the other caller's publish was not failed by the cancel
    payloads = [json.loads(fields[b"payload"]) for _, fields in await raw.xrange(stream)]
    assert "other" in payloads
