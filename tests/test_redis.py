"""Redis Streams behaviour against a real redis-server of the suite's own (asyncio, real time)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

import foxactors as fa
from foxactors.backends import Leases, RedisBackend, RedisSource
from foxactors.testing.servers import RedisServer, free_port, redis_server, session_server

from .conftest import REQUIRED
from .helpers import ack, read_beside_a_claim, receive_one, take_all

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.fixture
def stream() -> str:
    return f"jobs-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def backend(redis: RedisServer) -> AsyncIterator[RedisBackend]:
    streams = RedisBackend(redis.url, poll_interval=0.02)
    yield streams
    await streams.close()


@pytest.fixture
async def raw(redis: RedisServer) -> AsyncIterator[Any]:
    """A plain redis-py client: what another service (or a dead consumer) would do."""
    client = aioredis.Redis.from_url(redis.url)
    yield client
    await client.aclose()


async def settled(source: RedisSource) -> None:
    with anyio.fail_after(30):
        await source.wait_settled()


@pytest.fixture(scope="module")
def locked() -> Iterator[RedisServer]:
    """A Redis that wants a password."""
    yield from session_server(redis_server(password="right-one"), required=REQUIRED)


async def test_wrong_url_or_password_fails_fast_without_the_password(
    locked: RedisServer, redis: RedisServer
) -> None:
    backend = RedisBackend(f"redis://:hunter2-secret@127.0.0.1:{locked.port}/0")
    with anyio.fail_after(10), pytest.raises(fa.BackendError) as caught:
        await backend.publish("q", 1)
    assert "hunter2-secret" not in str(caught.value)
    assert "cannot connect to Redis at redis://:***@127.0.0.1" in str(caught.value)
    assert "wrong user or password?" in str(caught.value)
    assert backend.statistics().consecutive_failures == 1
    assert "hunter2" not in str(backend.statistics().last_error)
    right = RedisBackend(locked.url)
    assert await right.publish("q", 1)
    await right.close()
    closed = RedisBackend(f"redis://127.0.0.1:{free_port()}/0")
    with anyio.fail_after(10), pytest.raises(fa.BackendError, match="cannot connect"):
        await closed.open_source("q", prefetch=1)
    with pytest.raises(fa.ConfigurationError, match="must start with redis://"):
        RedisBackend("http://user:pw@host/")


async def test_properties_map_to_fields_and_back(
    backend: RedisBackend, stream: str, raw: Any
) -> None:
    props = fa.MessageProperties(
        content_encoding="utf-8",
        priority=3,
        expiration=60.0,
        message_type="send_email",
        user_id="guest",
        app_id="billing",
        cluster_id="eu-1",
        reply_to="replies",
        correlation_id="corr-7",
        headers={"tenant": "acme", "n": 5},
    )
    message_id = await backend.publish(stream, {"to": "ada"}, properties=props)
    ((_, fields),) = await raw.xrange(stream)
    assert fields[b"payload"] == b'{"to":"ada"}'
    assert (fields[b"id"], fields[b"type"], fields[b"priority"]) == (
        message_id.encode(),
        b"send_email",
        b"3",
    )
    assert (fields[b"tenant"], fields[b"n"]) == (b"acme", b"5")
    assert b"content_type" not in fields  # the codec's own is implied
    # another service's entry: unknown fields become headers
    await raw.xadd(stream, {"payload": b'"hi"', "origin": "crm", "blob": b"\xff"})
    source = await backend.open_source(stream, prefetch=5)
    first, second = (await receive_one(source)), (await receive_one(source))
    assert first.message.id == message_id
    assert first.message.properties == props.with_header("n", "5")  # fields hold text
    assert first.message.published_at > 0
    assert second.message.headers == {"origin": "crm", "blob": b"\xff"}
    tag = second.handle.tag
    assert isinstance(tag, bytes)
    assert second.message.id == tag.decode()  # no id field: the entry id
    first.handle.ack()
    second.handle.ack()
    await source.close()


async def test_unstorable_headers_are_refused_before_anything_is_sent(
    backend: RedisBackend, stream: str, raw: Any
) -> None:
    with pytest.raises(fa.ConfigurationError, match="'priority' uses a reserved field name"):
        await backend.publish(stream, 1, properties=fa.MessageProperties(headers={"priority": 1}))
    with pytest.raises(fa.ConfigurationError, match="header 'tags' is list"):
        await backend.publish(stream, 1, properties=fa.MessageProperties(headers={"tags": []}))
    assert await raw.exists(stream) == 0


async def test_bad_entries_go_to_the_dead_letter_stream_with_their_reason(
    backend: RedisBackend, stream: str, raw: Any
) -> None:
    await raw.xadd(stream, {"body": b"1"})
    await raw.xadd(stream, {"payload": b"{not json"})
    await raw.xadd(stream, {"payload": b"1", "priority": b"high"})
    await raw.xadd(stream, {"payload": b"1", "x-attempt": b"three"})
    await raw.xadd(stream, {"payload": b"<x/>", "content_type": b"text/xml"})
    await backend.publish(stream, "fine")
    source = await backend.open_source(stream, prefetch=10)
    delivery = await receive_one(source)
    assert delivery.message.payload == "fine"
    delivery.handle.ack()
    await settled(source)
    reasons = [letter.reason for letter in await backend.dead_letters(stream)]
    assert reasons[0] == "no 'payload' field"
    assert reasons[1].startswith("undecodable: body is not valid JSON")
    assert reasons[2] == "bad field: priority=b'high' is not int"
    assert reasons[3] == "bad field: x-attempt=b'three' is not int"
    assert reasons[4] == "unknown content type 'text/xml': this consumer decodes 'application/json'"
    entries = await raw.xrange(backend.dead_letter_stream(stream))
    assert entries[0][1][b"body"] == b"1"  # the original fields, untouched
    assert await raw.xpending(stream, backend.group) == {
        "pending": 0,
        "min": None,
        "max": None,
        "consumers": [],
    }
    await source.close()


async def test_retries_count_attempts_and_dead_letters_carry_the_story(
    backend: RedisBackend, stream: str, raw: Any
) -> None:
    props = fa.MessageProperties(correlation_id="c-1").with_header("tenant", "acme")
    message_id = await backend.publish(stream, {"x": 1}, properties=props)
    source = await backend.open_source(stream, prefetch=5)
    first = await receive_one(source)
    first.handle.retry(0.05)
    second = await receive_one(source)
    assert (second.message.id, second.message.attempt) == (message_id, 2)
    second.handle.requeue()  # a redelivery counts too
    third = await receive_one(source)
    assert third.message.attempt == 3
    third.handle.defer(0.01)  # not tried: no attempt counted
    fourth = await receive_one(source)
    assert fourth.message.attempt == 3
    fourth.handle.dead_letter("no good")
    await settled(source)
    assert await backend.count_dead_letters(stream) == 1
    (letter,) = await backend.dead_letters(stream)
    assert (letter.id, letter.reason, letter.attempts, letter.body) == (
        message_id,
        "no good",
        3,
        b'{"x":1}',
    )
    assert letter.properties.correlation_id == "c-1"
    assert letter.properties.headers == {"tenant": "acme"}
    assert letter.failed_at > 0
    ((_, fields),) = await raw.xrange(backend.dead_letter_stream(stream))
    assert fields[b"x-original-id"] == fourth.handle.tag  # the entry it was read from
    assert await raw.zcard(backend.delayed_set(stream)) == 0
    assert await backend.count_dead_letters(stream) == 1  # listing leaves them

    assert await backend.replay_dead_letters(stream) == 1
    replayed = await receive_one(source)
    assert (replayed.message.id, replayed.message.attempt) == (message_id, 1)
    assert replayed.message.headers == {"tenant": "acme"}
    replayed.handle.dead_letter("again")
    await settled(source)
    assert await backend.purge_dead_letters(stream) == 1
    assert await backend.count_dead_letters(stream) == 0
    await source.close()


async def test_each_due_entry_is_moved_exactly_once_by_concurrent_schedulers(
    backend: RedisBackend, stream: str, raw: Any
) -> None:
    for n in range(300):
        await backend.publish(stream, n, delay=0.05 + (n % 7) / 100)
    clients = [backend.client() for _ in range(4)]
    moved: list[int] = []

    async def schedule(client: Any) -> None:
        while await raw.zcard(backend.delayed_set(stream)):
            count, _ = await backend.move_due(client, stream)
            moved.append(count)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for client in clients:
                tg.start_soon(schedule, client)
    entries = await raw.xrange(stream)
    assert sorted(json.loads(fields[b"payload"]) for _, fields in entries) == list(range(300))
    assert sum(moved) == 300
    assert backend.statistics().moved_due == 300
    for client in clients:
        await client.aclose()


async def test_delayed_retries_survive_a_restart(redis: RedisServer, stream: str) -> None:
    backend = RedisBackend(redis.url, poll_interval=0.02)
    await backend.publish(stream, "later")
    source = await backend.open_source(stream, prefetch=1)
    (await receive_one(source)).handle.retry(0.5)
    await settled(source)
    await source.close()
    await backend.close()
    await anyio.to_thread.run_sync(redis.stop)  # SIGTERM: the AOF is flushed
    await anyio.to_thread.run_sync(redis.start)
    again = await backend.open_source(stream, prefetch=1)
    delivery = await receive_one(again)
    assert (delivery.message.payload, delivery.message.attempt) == ("later", 2)
    delivery.handle.ack()
    await again.close()
    await backend.close()


async def test_a_slow_handler_keeps_its_lease_and_a_dead_ones_entry_is_taken(
    redis: RedisServer, stream: str, raw: Any
) -> None:
    leases = Leases(claim_min_idle=0.3)
    slow = RedisBackend(redis.url, consumer="slow", leases=leases)
    other = RedisBackend(redis.url, consumer="other", leases=leases)
    await slow.publish(stream, "long job")
    held = await slow.open_source(stream, prefetch=1)
    delivery = await receive_one(held)
    taker = await other.open_source(stream, prefetch=5)
    for _ in range(8):  # 2.4 s of handling: eight times the lease, renewed meanwhile
        with anyio.move_on_after(0.3):
            await taker.receive(1)
            pytest.fail("a live consumer's entry was taken")
    assert await taker.reclaim() is False
    assert other.statistics().reclaimed == 0
    delivery.handle.ack()
    await settled(held)
    await held.close()
    # a consumer that read an entry and died: nobody renews it
    await other.publish(stream, "orphan")
    await raw.xreadgroup(other.group, "dead", {stream: ">"}, count=1)
    taken = await receive_one(taker)
    assert (taken.message.payload, taken.message.attempt) == ("orphan", 2)
    assert other.statistics().reclaimed == 1
    taken.handle.ack()
    await settled(taker)
    await taker.close()
    await slow.close()
    await other.close()


async def test_in_a_pipeline_the_lease_keeper_actor_keeps_a_slow_message(
    redis: RedisServer, stream: str
) -> None:
    leases = Leases(claim_min_idle=0.3)
    backend = RedisBackend(redis.url, consumer="pipeline", leases=leases)
    rival = RedisBackend(redis.url, consumer="rival", leases=leases)
    started, release = anyio.Event(), anyio.Event()
    runs: list[int] = []

    async def slow(message: fa.Message) -> None:
        runs.append(message.attempt)
        started.set()
        await release.wait()

    await backend.publish(stream, "long job")
    app = fa.WorkerApp("slow").add_worker(slow)
    async with fa.open_system(app.build(backend, stream)) as system:
        with anyio.fail_after(30):
            await started.wait()
        taker = await rival.open_source(stream, prefetch=5)
        try:
            with anyio.move_on_after(2.4):  # eight times the lease: renewed by the actor
                await taker.receive(1)
                pytest.fail("a running message was taken by another consumer")
            assert rival.statistics().reclaimed == 0
            assert system.snapshot().find("/slow/intake/leases") is not None
        finally:
            release.set()
            await taker.close()
    assert runs == [1]
    await backend.close()
    await rival.close()


async def test_max_retries_hold_when_consumers_keep_dying(
    backend: RedisBackend, stream: str, raw: Any
) -> None:
    await backend.publish(stream, "kills its worker")
    await raw.xgroup_create(stream, backend.group, id="0")
    await raw.xreadgroup(backend.group, "dead-1", {stream: ">"}, count=1)
    ((entry_id, _),) = await raw.xrange(stream)
    for n in (2, 3):  # two more consumers took it over and died as well
        await raw.xclaim(stream, backend.group, f"dead-{n}", 0, [entry_id])

    async def handle(message: fa.Message) -> None:
        pytest.fail(f"a poison message ran again: {message.id}")

    given_up = anyio.Event()

    class Sink:
        def write(self, letter: fa.DeadLetter) -> None:
            given_up.set()

    app = (
        fa.WorkerApp("poison")
        .add_worker(handle)
        .with_retry(max_retries=2)
        .with_dead_letter_sink(Sink())
    )
    streams = RedisBackend(backend.url, leases=Leases(claim_min_idle=0.2))
    async with fa.open_system(app.build(streams, stream)):
        with anyio.fail_after(30):
            await given_up.wait()
    (letter,) = await streams.dead_letters(stream)
    assert letter.reason == "poison message: delivered 4 times with max_retries=2"
    await streams.close()


async def test_trimmed_pending_entries_are_cleaned_up_not_retried(
    redis: RedisServer, stream: str, raw: Any
) -> None:
    backend = RedisBackend(redis.url, consumer="me", leases=Leases(claim_min_idle=0.1))
    for n in range(4):
        await backend.publish(stream, n)
    await raw.xgroup_create(stream, backend.group, id="0")
    read = await raw.xreadgroup(backend.group, "dead", {stream: ">"}, count=2)
    await raw.xreadgroup(backend.group, "me", {stream: ">"}, count=2)  # a past life of "me"
    ids = [entry_id for entry_id, _ in (await raw.xrange(stream))]
    await raw.xdel(stream, ids[0], ids[2])  # one of each consumer's, gone while pending
    source = await backend.open_source(stream, prefetch=5)
    got = [await receive_one(source), await receive_one(source)]
    assert sorted(d.message.payload for d in got) == [1, 3]
    assert read[0][1][0][0] == ids[0]
    for d in got:
        d.handle.ack()
    await settled(source)
    assert backend.statistics().trimmed == 2
    assert (await raw.xpending(stream, backend.group))["pending"] == 0
    await source.close()
    await backend.close()


async def test_dead_consumers_are_forgotten_only_when_they_hold_nothing(
    redis: RedisServer, stream: str, raw: Any
) -> None:
    backend = RedisBackend(
        redis.url, consumer="me", leases=Leases(claim_min_idle=60, forget_after=0.2)
    )
    await backend.publish(stream, 1)
    await raw.xgroup_create(stream, backend.group, id="0")
    await raw.xreadgroup(backend.group, "holds-one", {stream: ">"}, count=1)
    await raw.xgroup_createconsumer(stream, backend.group, "holds-none")
    source = await backend.open_source(stream, prefetch=5)

    async def names() -> set[str]:
        consumers = await raw.xinfo_consumers(stream, backend.group)
        return {c["name"].decode() for c in consumers}

    with anyio.fail_after(10):
        while "holds-none" in await names():
            await source.forget_dead_consumers()
            await anyio.sleep(0.05)  # waiting for the broker's idle clock
    assert await names() == {"me", "holds-one"}
    assert backend.statistics().forgotten == 1
    await source.close()
    await backend.close()


async def test_two_sources_in_one_process_get_their_own_names(
    backend: RedisBackend, stream: str
) -> None:
    first = await backend.open_source(stream, prefetch=1)
    second = await backend.open_source(stream, prefetch=1)
    assert (first.consumer, second.consumer) == (backend.consumer, f"{backend.consumer}-2")
    await first.close()
    await second.close()
    third = await backend.open_source(stream, prefetch=1)
    assert third.consumer == backend.consumer
    await third.close()


async def test_maxlen_trims_the_stream_approximately(redis: RedisServer, stream: str) -> None:
    backend = RedisBackend(redis.url, maxlen=100)
    for n in range(1000):
        await backend.publish(stream, n)
    client = await backend._client()
    assert 100 <= await client.xlen(stream) < 300
    await backend.close()


async def test_the_consumer_never_holds_more_entries_than_its_credit(
    backend: RedisBackend, raw: Any, stream: str
) -> None:
    for n in range(10):
        await backend.publish(stream, n)
    source = await backend.open_source(stream, prefetch=4)
    try:
        first = await source.receive(4, 2)
        assert [d.message.payload for d in first] == [0, 1, 2, 3]
        for delivery in first[:2]:
            delivery.handle.ack()
        second = await source.receive(4, 2)
        assert [d.message.payload for d in second] == [4, 5]
        handed_out = {d.handle.tag for d in first + second}
        pending = await raw.xpending_range(stream, backend.group, "-", "+", 100)
        # Only what was handed out is pending (the acks of 0 and 1 may still be on
        # their way): an entry read and kept back would come back after a cut with
        # one attempt more, without having run.
        assert {p["message_id"] for p in pending} <= handed_out
        assert {d.handle.tag for d in second} <= {p["message_id"] for p in pending}
    finally:
        await source.close()


# -- priorities: a stream per level, and every copy of an entry keeps it --------------

CRITICAL = fa.MessageProperties(priority=fa.Priority.CRITICAL)
HIGH = fa.MessageProperties(priority=fa.Priority.HIGH)
LOW = fa.MessageProperties(priority=fa.Priority.LOW)


async def until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll a broker-side condition (nothing signals it) with a deadline."""
    with anyio.fail_after(10):
        while True:
            if await condition():
                return
            await anyio.sleep(0.01)


async def payloads_of(source: RedisSource, count: int) -> list[Any]:
    """Receive ``count`` deliveries one by one, acking each."""
    out = []
    for _ in range(count):
        delivery = await receive_one(source)
        out.append(delivery.message.payload)
        delivery.handle.ack()
    return out


async def test_each_level_has_a_stream_and_normal_is_the_queue_itself(redis: RedisServer) -> None:
    backend = RedisBackend(redis.url)
    assert backend.level_streams("mail") == ("mail:critical", "mail:high", "mail", "mail:low")
    # a priority between two levels goes with the level below it
    assert [backend.stream_of("mail", p) for p in [None, *range(10)]] == [
        "mail",
        *["mail:low"] * 3,
        *["mail"] * 3,
        *["mail:high"] * 3,
        "mail:critical",
    ]
    named = RedisBackend(redis.url, priority_stream="{level}.{stream}")
    assert named.level_streams("mail")[0] == "critical.mail"
    with pytest.raises(fa.ConfigurationError, match="priority_stream must name each level"):
        RedisBackend(redis.url, priority_stream="{stream}:p")


async def where(raw: Any, backend: RedisBackend, stream: str) -> dict[Any, str]:
    """Each payload in ``stream``'s levels, and the stream it is in."""
    found = {}
    for target in backend.level_streams(stream):
        for _, fields in await raw.xrange(target):
            found[json.loads(fields[b"payload"])] = target
    return found


async def test_publish_and_the_scheduler_route_each_priority_to_its_level(
    backend: RedisBackend, raw: Any
) -> None:
    """The delayed set's script routes as `stream_of` does, for every priority."""
    now, later = f"now-{uuid.uuid4().hex[:8]}", f"later-{uuid.uuid4().hex[:8]}"
    priorities = [None, *range(10)]
    for p in priorities:
        await backend.publish(now, p, properties=fa.MessageProperties(priority=p))
        await backend.publish(later, p, properties=fa.MessageProperties(priority=p), delay=0.01)
    client = await backend._client()

    async def all_moved() -> bool:
        await backend.move_due(client, later)
        return int(await raw.zcard(backend.delayed_set(later))) == 0

    await until(all_moved)
    assert await where(raw, backend, now) == {p: backend.stream_of(now, p) for p in priorities}
    assert await where(raw, backend, later) == {p: backend.stream_of(later, p) for p in priorities}


async def test_a_read_takes_the_highest_levels_and_never_more_than_the_credit(
    backend: RedisBackend, stream: str, raw: Any
) -> None:
    for props in (LOW, fa.MessageProperties(), HIGH, CRITICAL):
        for n in range(3):
            await backend.publish(stream, f"{props.priority}-{n}", properties=props)
    source = await backend.open_source(stream, prefetch=5)
    try:
        first = await source.receive(5, 5)
        assert [d.message.payload for d in first] == ["9-0", "9-1", "9-2", "6-0", "6-1"]
        stats = await backend.queue_statistics(stream)
        assert stats.in_flight == 5  # what was handed out, and nothing more
        assert list(stats.ready_by_priority.values()) == [0, 1, 3, 3]  # critical first
    finally:
        await source.close()


async def test_a_waiting_consumer_wakes_for_the_first_entry_of_a_new_level(
    backend: RedisBackend, stream: str, raw: Any
) -> None:
    source = await backend.open_source(stream, prefetch=1)
    got: list[Any] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _receive_into(source, got))
        await until(lambda: in_xread(raw))  # waiting in XREAD, on streams not made yet
        await backend.publish(stream, "urgent", properties=CRITICAL)
    assert got == ["urgent"]
    await source.close()


async def in_xread(raw: Any) -> bool:
    """Whether a consumer waits in a blocking XREAD (it has asked all it will ask)."""
    return any(c.get("cmd") == "xread" for c in await raw.client_list())


async def wait_then_publish(
    source: RedisSource,
    raw: Any,
    backend: RedisBackend,
    stream: str,
    payload: Any,
    properties: fa.MessageProperties | None = None,
) -> Any:
    """Receive one, publishing ``payload`` once the source waits in XREAD; ack it, return it."""
    got: list[Any] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _receive_into(source, got))
        await until(lambda: in_xread(raw))
        await backend.publish(stream, payload, properties=properties)
    return got[0]


async def read_alone(source: RedisSource, raw: Any, backend: RedisBackend, stream: str) -> None:
    """Two entries, each published while ``source`` waits: it then waits without asking.

    (The stream's first entry makes it and the group: the reader asks, twice.)
    """
    for warm in ("first", "second"):
        assert await wait_then_publish(source, raw, backend, stream, warm) == warm


async def test_entries_arriving_one_by_one_are_read_without_asking_for_the_lags(
    backend: RedisBackend, stream: str, raw: Any
) -> None:
    """A lone entry's read empties its level: the next wait needs no levels script.

    XREAD wakes the reader, XREADGROUP reads the entry, and the reader waits again
    with the id it read: three round trips with the ack, not five.
    """
    source = await backend.open_source(stream, prefetch=4)
    try:
        await read_alone(source, raw, backend, stream)
        asked = counting_lags(source)
        before = (await raw.info("commandstats")).get("cmdstat_xinfo|groups", {}).get("calls", 0)
        got = [await wait_then_publish(source, raw, backend, stream, n) for n in range(5)]
        after = (await raw.info("commandstats")).get("cmdstat_xinfo|groups", {}).get("calls", 0)
        assert got == list(range(5))
        assert asked == [0]
        assert after == before  # the levels script (the one user of XINFO GROUPS) never ran
    finally:
        await source.close()


async def test_entries_of_two_levels_written_at_once_are_read_highest_first(
    backend: RedisBackend, stream: str, raw: Any
) -> None:
    """XREAD names only the first stream a MULTI (or the scheduler's script) wrote to.

    Once an entry of a higher level was ever read, a reader that normal's entry woke
    asks the levels script before it reads, and takes the higher level first.
    """
    source = await backend.open_source(stream, prefetch=4)
    try:
        for payload, props in (("n0", None), ("h0", HIGH), ("n1", None)):
            assert await wait_then_publish(source, raw, backend, stream, payload, props) == payload
        _, high, normal, _ = backend.level_streams(stream)
        got: list[Any] = []

        async def take_three() -> None:
            got.extend(d.message.payload for d in await take_all(source, 3, ack))

        async with anyio.create_task_group() as tg:
            tg.start_soon(take_three)
            await until(lambda: in_xread(raw))
            pipe = raw.pipeline(transaction=True)
            pipe.xadd(normal, {"payload": json.dumps("n2")})
            pipe.xadd(normal, {"payload": json.dumps("n3")})
            pipe.xadd(high, {"payload": json.dumps("h1"), "priority": "7"})
            await pipe.execute()
        assert got == ["h1", "n2", "n3"]
    finally:
        await source.close()


async def test_a_reader_woken_for_an_entry_another_consumer_took_asks_and_waits_again(
    backend: RedisBackend, stream: str, raw: Any
) -> None:
    """Its wait used the id it read last; the group went on without it: one ask mends it."""
    first = await backend.open_source(stream, prefetch=4)
    second = await backend.open_source(stream, prefetch=4)
    try:
        await read_alone(first, raw, backend, stream)
        await backend.publish(stream, "theirs")
        assert await payloads_of(second, 1) == ["theirs"]
        asked = counting_lags(first)
        assert await wait_then_publish(first, raw, backend, stream, "next") == "next"
        assert asked == [1]  # woken for "theirs", read nothing, asked once, waited again
    finally:
        await first.close()
        await second.close()


async def test_a_stream_deleted_while_its_reader_waits_is_read_when_it_comes_back(
    backend: RedisBackend, stream: str, raw: Any
) -> None:
    """The group went with the stream: the read refused (NOGROUP) leads to the levels
    script, which makes the group again; the source stays live."""
    source = await backend.open_source(stream, prefetch=4)
    try:
        await read_alone(source, raw, backend, stream)
        await raw.delete(stream)
        assert await wait_then_publish(source, raw, backend, stream, "again") == "again"
        assert source.live
    finally:
        await source.close()


async def _receive_into(source: RedisSource, got: list[Any]) -> None:
    delivery = await receive_one(source)
    got.append(delivery.message.payload)
    delivery.handle.ack()


async def test_requeues_and_a_closing_consumer_return_entries_to_their_level(
    backend: RedisBackend, stream: str
) -> None:
    await backend.publish(stream, "normal")
    await backend.publish(stream, "high", properties=HIGH)
    source = await backend.open_source(stream, prefetch=1)
    first = await receive_one(source)
    assert first.message.payload == "high"
    first.handle.requeue()  # back to the high stream: still ahead of "normal"
    second = await receive_one(source)
    assert (second.message.payload, second.message.attempt) == ("high", 2)
    await source.close()  # returns it unsettled, to the high stream again
    again = await backend.open_source(stream, prefetch=1)
    assert await payloads_of(again, 2) == ["high", "normal"]
    await again.close()


async def test_reclaims_take_a_dead_consumers_entries_of_every_level_highest_first(
    redis: RedisServer, stream: str, raw: Any
) -> None:
    leases = Leases(claim_min_idle=0.2)
    # a short block: what is reclaimed waits for the blocked read to return
    backend = RedisBackend(redis.url, consumer="live", leases=leases, block=0.05)
    for props in (LOW, fa.MessageProperties(), HIGH, CRITICAL):
        await backend.publish(stream, props.priority, properties=props)
    for target in backend.level_streams(stream):  # a consumer that read all and died
        await raw.xgroup_create(target, backend.group, id="0")
        await raw.xreadgroup(backend.group, "ghost", {target: ">"})
    source = await backend.open_source(stream, prefetch=10)
    got = []
    for _ in range(4):
        delivery = await receive_one(source)
        got.append((delivery.message.payload, delivery.message.attempt))
        delivery.handle.ack()
    assert got == [(9, 2), (6, 2), (None, 2), (0, 2)]
    with anyio.fail_after(10):
        await source.wait_settled()
    for target in backend.level_streams(stream):
        assert (await raw.xpending(target, backend.group))["pending"] == 0
    assert backend.statistics().reclaimed == 4
    await source.close()
    await backend.close()


async def test_a_delayed_retry_comes_back_at_its_level(backend: RedisBackend, stream: str) -> None:
    await backend.publish(stream, "high", properties=HIGH)
    source = await backend.open_source(stream, prefetch=1)
    (await receive_one(source)).handle.retry(0.05)
    await backend.publish(stream, "normal")

    async def back() -> bool:  # the source's own scheduler moves it when due
        stats = await backend.queue_statistics(stream)
        return stats.ready_by_priority[fa.Priority.HIGH] == 1

    await until(back)
    again = await receive_one(source)
    assert (again.message.payload, again.message.attempt) == ("high", 2)
    again.handle.ack()
    assert await payloads_of(source, 1) == ["normal"]
    await source.close()


async def test_dead_letters_are_replayed_to_their_level(backend: RedisBackend, stream: str) -> None:
    await backend.publish(stream, "low", properties=LOW)
    await backend.publish(stream, "critical", properties=CRITICAL)
    source = await backend.open_source(stream, prefetch=2)
    for delivery in await source.receive(2, 2):
        delivery.handle.dead_letter("not now")
    with anyio.fail_after(10):
        await source.wait_settled()
    letters = await backend.dead_letters(stream)
    assert [(d.body, d.properties.priority) for d in letters] == [(b'"critical"', 9), (b'"low"', 0)]
    await backend.publish(stream, "normal")
    assert await backend.replay_dead_letters(stream) == 2
    assert await payloads_of(source, 3) == ["critical", "normal", "low"]
    await source.close()


async def test_queue_statistics_count_every_level(backend: RedisBackend, stream: str) -> None:
    empty = await backend.queue_statistics(stream)
    assert (empty.ready, empty.delayed, empty.in_flight, empty.dead) == (0, 0, 0, 0)
    for props in (CRITICAL, CRITICAL, HIGH, fa.MessageProperties(priority=3), None, None, LOW):
        await backend.publish(stream, "x", properties=props)
    await backend.publish(stream, "later", properties=HIGH, delay=60)
    before = await backend.queue_statistics(stream)  # no group read any level yet
    assert (before.ready, before.delayed, before.in_flight, before.dead) == (7, 1, 0, 0)
    assert dict(before.ready_by_priority) == {
        fa.Priority.CRITICAL: 2,
        fa.Priority.HIGH: 1,
        fa.Priority.NORMAL: 3,
        fa.Priority.LOW: 1,
    }
    source = await backend.open_source(stream, prefetch=3)
    held = await source.receive(3, 3)
    held[0].handle.dead_letter("no")

    async def dead() -> bool:
        return (await backend.queue_statistics(stream)).dead == 1

    await until(dead)
    after = await backend.queue_statistics(stream)
    assert (after.ready, after.delayed, after.in_flight, after.dead) == (4, 1, 2, 1)
    assert after.ready_by_priority[fa.Priority.HIGH] == 0
    assert after.ready_by_priority[fa.Priority.NORMAL] == 3
    await source.close()


def counting_lags(source: RedisSource) -> list[int]:
    """Count the reader's own asks for the levels' lags (one round trip each)."""
    asked = [0]
    lags = source._lags

    async def counted() -> list[tuple[int, bytes]]:
        asked[0] += 1
        return await lags()

    source._lags = counted  # type: ignore[method-assign]
    return asked


async def ack_while_waiting(source: RedisSource, held: list[fa.Delivery]) -> list[Any]:
    """Ack ``held`` while a receiver waits for the credit; return what it receives."""
    got: list[Any] = []

    async def receive() -> None:
        got.extend(d.message.payload for d in await source.receive(2, 2))

    async with anyio.create_task_group() as tg:
        tg.start_soon(receive)
        await anyio.wait_all_tasks_blocked()  # the receiver waits for credit
        for delivery in held:
            delivery.handle.ack()
    return got


@pytest.mark.parametrize("scripts_flushed", [False, True], ids=["cached", "flushed"])
async def test_the_acks_that_free_a_waiting_reader_read_ahead_for_it(
    backend: RedisBackend, stream: str, raw: Any, scripts_flushed: bool
) -> None:
    """When the last look saw entries in normal's stream only, the acks read on.

    In the acks' round trip, as much as they free credit for; the levels' lags come
    with them, so an entry that came into a higher level since the last look is the
    next read's, and that read asks nothing more. With the server's scripts flushed,
    the lags do not come; the reader asks itself, and nothing fails.
    """
    for n in range(2):
        await backend.publish(stream, f"normal-{n}")
    source = await backend.open_source(stream, prefetch=2)
    try:
        held = await source.receive(2, 2)
        asked = counting_lags(source)
        await backend.publish(stream, "later")
        await backend.publish(stream, "urgent", properties=CRITICAL)
        if scripts_flushed:
            await raw.script_flush()
        assert await ack_while_waiting(source, held) == ["later"]
        assert asked == [0]
        urgent = await source.receive(1, 1)
        assert [d.message.payload for d in urgent] == ["urgent"]
        assert asked == [1 if scripts_flushed else 0]
        assert source.live
    finally:
        await source.close()


async def test_when_the_last_look_saw_a_higher_level_the_acks_bring_the_lags_only(
    backend: RedisBackend, stream: str
) -> None:
    """No read ahead: the reader reads by priority, on lags that came with the acks."""
    await backend.publish(stream, "urgent-0", properties=CRITICAL)
    for n in range(3):
        await backend.publish(stream, f"normal-{n}")
    source = await backend.open_source(stream, prefetch=2)
    try:
        held = await source.receive(2, 2)
        assert [d.message.payload for d in held] == ["urgent-0", "normal-0"]
        asked = counting_lags(source)
        await backend.publish(stream, "urgent-1", properties=CRITICAL)
        assert await ack_while_waiting(source, held) == ["urgent-1", "normal-1"]
        assert asked == [0]
    finally:
        await source.close()


async def test_a_renewal_tells_apart_lost_leases_and_entries_trimmed_while_pending(
    raw: Any, stream: str
) -> None:
    from foxactors.backends.redis import _leases  # noqa: PLC0415 - the renewal's own script

    await raw.xgroup_create(stream, "g", id="0", mkstream=True)
    ids = [await raw.xadd(stream, {"n": n}) for n in range(3)]
    await raw.xreadgroup("g", "me", {stream: ">"}, count=2)  # mine: the first two
    await raw.xreadgroup("g", "other", {stream: ">"}, count=1)  # another's: the third
    await raw.xdel(stream, ids[1])  # trimmed by hand while pending
    lost, gone = await _leases.renew(raw, stream, "g", "me", ids)
    assert (lost, gone) == ([ids[2]], [ids[1]])
    pending = await raw.xpending_range(stream, "g", "-", "+", 10)
    assert [p["message_id"] for p in pending] == [ids[0], ids[2]]  # the gone one dropped


async def test_more_than_a_hundred_dead_letters_are_replayed_at_once(
    backend: RedisBackend, stream: str
) -> None:
    for n in range(150):
        await backend.publish(stream, n)
    source = await backend.open_source(stream, prefetch=150)
    await take_all(source, 150, lambda delivery: delivery.handle.dead_letter("later"))
    await source.wait_settled()
    assert await backend.replay_dead_letters(stream) == 150  # pages of 100, then 50
    assert await backend.dead_letter_queue(stream).count() == 0
    await source.close()


async def test_a_read_beside_a_reclaim_in_flight_takes_no_more_than_the_credit(
    redis: RedisServer, raw: Any, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = RedisBackend(redis.url, consumer="live", leases=Leases(claim_min_idle=0.1))
    for n in range(8):
        await backend.publish(stream, n)
    source = await backend.open_source(stream, prefetch=4)  # its keeper reclaims
    await raw.xreadgroup(backend.group, "dead", {stream: ">"}, count=4)  # and dies
    got = await read_beside_a_claim(source, monkeypatch, 4)
    held = await raw.xpending_range(stream, backend.group, "-", "+", 100, "live")
    assert len(got) == len(held) == 4  # the claimed four, and no read past the credit
    assert [d.message.payload for d in got] == [0, 1, 2, 3]
    await source.close()
    await backend.close()
