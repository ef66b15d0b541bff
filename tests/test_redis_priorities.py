"""Redis Streams priorities: one stream per level, and every copy of an entry keeps it.

Against a real redis-server of the suite's own (asyncio, real time). The ordering
every backend keeps is in the conformance suite; here, what only Redis has: the
streams of the levels, the read within credit across them, and leases, the delayed
set, dead letters and the counts covering every level.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

import foxactors as fa
from foxactors.backends import Leases, RedisBackend, RedisSource
from foxactors.testing.servers import RedisServer

from .helpers import receive_one

pytestmark = pytest.mark.anyio

CRITICAL = fa.MessageProperties(priority=fa.Priority.CRITICAL)
HIGH = fa.MessageProperties(priority=fa.Priority.HIGH)
LOW = fa.MessageProperties(priority=fa.Priority.LOW)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.fixture
def stream() -> str:
    return f"prio-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def backend(redis: RedisServer) -> AsyncIterator[RedisBackend]:
    streams = RedisBackend(redis.url, poll_interval=0.02)
    yield streams
    await streams.close()


@pytest.fixture
async def raw(redis: RedisServer) -> AsyncIterator[Any]:
    client = aioredis.Redis.from_url(redis.url)
    yield client
    await client.aclose()


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

    async def blocked() -> bool:
        return any(c.get("cmd") == "xread" for c in await raw.client_list())

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _receive_into(source, got))
        await until(blocked)  # waiting in XREAD, on streams that do not exist yet
        await backend.publish(stream, "urgent", properties=CRITICAL)
    assert got == ["urgent"]
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
