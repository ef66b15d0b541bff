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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import foxactors as fa
from foxactors.backends import RedisBackend
from foxactors.jobs import JobRecord, RedisJobStore
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


# -- one XADD another script runs (a job store's create, lua/create.lua) ----------------

_HEADER_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_", min_size=1, max_size=8).map(
    lambda name: "h-" + name  # never a reserved field
)
_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)  # all but surrogates
_HEADER_VALUES = st.one_of(
    _TEXT,
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10).map(str.encode),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner),
        max_leaves=8,
    ),
    priority=st.none() | st.integers(0, 9),
    headers=st.dictionaries(_HEADER_NAMES, _HEADER_VALUES, max_size=4),
    correlation_id=st.none() | _TEXT.filter(bool),
    maxlen=st.none() | st.integers(1, 1000),
)
async def test_an_entry_command_adds_what_publish_adds(
    redis: RedisServer,
    raw: Any,
    payload: Any,
    priority: int | None,
    headers: dict[str, Any],
    correlation_id: str | None,
    maxlen: int | None,
) -> None:
    # The job store adds a job's delivery from inside its create script
    # (RedisBackend.entry_command): the entry must be the one publish writes, field
    # for field, in the same stream (of its priority's level).
    stream = f"pub-{uuid.uuid4().hex[:8]}"
    backend = RedisBackend(redis.url, maxlen=maxlen)
    properties = fa.MessageProperties(
        priority=priority, correlation_id=correlation_id, headers=headers
    )
    store = RedisJobStore(redis.url, prefix=f"t:{uuid.uuid4().hex[:8]}")
    record = JobRecord(id=uuid.uuid4().hex, task="t", queue=stream, committed=True)
    try:
        await backend.publish(stream, payload, properties=properties)
        command, span = backend.entry_command(stream, payload, properties)
        assert span is None  # tracing is off
        # through the store's script, as an enqueue sends it (JSON, then cjson)
        assert await store.create_published([record], [command]) == [(record, True)]
    finally:
        await store.close()
        await backend.close()
    target = backend.stream_of(stream, priority)
    published, added = await raw.xrange(target)
    skip = {b"id", b"timestamp"}  # each message's own
    assert {k: v for k, v in published[1].items() if k not in skip} == {
        k: v for k, v in added[1].items() if k not in skip
    }
    assert set(published[1]) == set(added[1])
    assert (maxlen is not None) == ("MAXLEN" in command)
    await raw.delete(target)


async def test_an_entry_command_refuses_what_one_xadd_cannot_carry(redis: RedisServer) -> None:
    backend = RedisBackend(redis.url)
    backend.share_fairly("shared", fa.backends.FairShares())
    with pytest.raises(fa.ConfigurationError, match="'shared' is a fair queue"):
        backend.entry_command("shared", 1, None)
    binary = fa.MessageProperties(headers={"h-raw": b"\xff"})
    with pytest.raises(fa.ConfigurationError, match="not UTF-8 text; publish it with publish"):
        backend.entry_command("plain", 1, binary)
    with pytest.raises(fa.ConfigurationError, match="priority"):
        backend.entry_command("plain", 1, fa.MessageProperties(priority=99))
    await backend.close()


async def test_same_server_compares_host_port_and_database(redis: RedisServer) -> None:
    backend = RedisBackend(redis.url)
    same = aioredis.Redis.from_url(redis.url)
    other_db = aioredis.Redis.from_url(redis.url.rsplit("/", 1)[0] + "/1")
    other_port = aioredis.Redis.from_url(f"redis://127.0.0.1:{redis.port + 1}/0")
    other_user = aioredis.Redis.from_url(f"redis://jobs:secret@127.0.0.1:{redis.port}/0")
    try:
        assert backend.same_server(same)
        assert not backend.same_server(other_db)
        assert not backend.same_server(other_port)
        assert not backend.same_server(other_user)  # its ACL may not reach the streams
    finally:
        for client in (same, other_db, other_port, other_user):
            await client.aclose()
        await backend.close()
