"""The backend contract, run against every backend: memory (asyncio and trio, virtual
time) and real RabbitMQ and Redis servers (asyncio, real time, delays scaled down).

A new backend joins by adding a case to ``CASES`` and a branch to the ``backend`` fixture.
"""

from __future__ import annotations

import asyncio
import datetime
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

import foxactors as fa
from foxactors.backends import (
    Backend,
    ConnectionStatistics,
    DeadLetterQueue,
    IntakeHelpers,
    Leases,
    QueueStatistics,
    RabbitMQBackend,
    RedisBackend,
    SharedConnection,
)
from foxactors.testing import anyio_backend_options

from .helpers import receive_one

pytestmark = pytest.mark.anyio

MEMORY = [("memory", "asyncio"), ("memory", "trio")]
CASES = [*MEMORY, ("rabbitmq", "asyncio"), ("redis", "asyncio")]
BROKERS = [("rabbitmq", "asyncio"), ("redis", "asyncio")]


@pytest.fixture(params=CASES, ids=["-".join(case) for case in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, Any]]:
    """Memory in virtual time; brokers in real time (their I/O does not wait for a mock)."""
    return anyio_backend_options(case[1]) if case[0] == "memory" else ("asyncio", {})


@pytest.fixture
def scale(case: tuple[str, str]) -> float:
    """Delays in these tests are multiplied by this: real brokers run in real time."""
    return 1.0 if case[0] == "memory" else 0.02


@pytest.fixture
def queue() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def backend(case: tuple[str, str], request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if case[0] == "memory":
        yield fa.MemoryBackend()
        return
    if case[0] == "redis":
        server = request.getfixturevalue("redis")
        streams = RedisBackend(server.url, poll_interval=0.02, leases=Leases(claim_min_idle=30))
        yield streams
        await streams.close()
        return
    broker = request.getfixturevalue("rabbitmq")
    rabbit = RabbitMQBackend(broker.url)  # the default topology: classic, with priorities
    yield rabbit
    await rabbit.close()


async def receive_all(source: fa.backends.Source, count: int) -> list[fa.Delivery]:
    """Receive until ``count`` deliveries came (a broker may hand them out a few at a time)."""
    out: list[fa.Delivery] = []
    with anyio.fail_after(60):
        while len(out) < count:
            out.extend(await source.receive(count - len(out)))
    return out


async def test_publish_and_consume_with_properties(backend: Backend, queue: str) -> None:
    props = fa.MessageProperties().with_message_type("greet").with_header("tenant", "acme")
    message_id = await backend.publish(queue, {"hello": "world"}, properties=props)
    source = await backend.open_source(queue, prefetch=10)
    delivery = await receive_one(source)
    message = delivery.message
    assert (message.id, message.payload, message.attempt, message.queue) == (
        message_id,
        {"hello": "world"},
        1,
        queue,
    )
    assert message.message_type == "greet"
    assert message.headers == {"tenant": "acme"}
    assert message.body == b'{"hello":"world"}'
    assert delivery.handle.ack() is True
    await source.close()


async def test_requeue_redelivers_with_a_higher_attempt(backend: Backend, queue: str) -> None:
    await backend.publish(queue, 1)
    source = await backend.open_source(queue, prefetch=1)
    first = await receive_one(source)
    first.handle.requeue()
    second = await receive_one(source)
    assert second.message.id == first.message.id
    assert second.message.attempt == 2
    second.handle.ack()
    await source.close()


async def test_a_second_settlement_is_refused_and_not_applied(backend: Backend, queue: str) -> None:
    await backend.publish(queue, 1)
    source = await backend.open_source(queue, prefetch=1)
    delivery = await receive_one(source)
    delivery.handle.ack()
    with pytest.raises(fa.SettlementError, match="already settled \\(ack\\)"):
        delivery.handle.dead_letter("again")
    assert delivery.handle.decision is fa.Decision.ACK
    await source.close()


async def test_closing_a_consumer_returns_unsettled_and_makes_handles_stale(
    backend: Backend, queue: str
) -> None:
    for n in range(3):
        await backend.publish(queue, n)
    source = await backend.open_source(queue, prefetch=10)
    deliveries = await receive_all(source, 3)
    assert [d.message.payload for d in deliveries] == [0, 1, 2]
    deliveries[0].handle.ack()
    await source.close()
    assert deliveries[1].handle.ack() is False  # stale: a logged no-op
    again = await backend.open_source(queue, prefetch=10)
    redelivered = await receive_all(again, 2)
    assert [(d.message.payload, d.message.attempt) for d in redelivered] == [(1, 2), (2, 2)]
    for d in redelivered:
        d.handle.ack()
    await again.close()


async def test_credit_never_exceeds_prefetch(backend: Backend, queue: str) -> None:
    for n in range(5):
        await backend.publish(queue, n)
    source = await backend.open_source(queue, prefetch=2)
    got = await receive_all(source, 2)
    assert len(got) == 2
    more: list[fa.Delivery] = []

    async def take() -> None:
        more.extend(await source.receive(10))

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        await wait_all_tasks_blocked()
        assert more == []  # no credit: it waits
        got[0].handle.ack()
    assert len(more) == 1
    assert source.unsettled == 2
    await source.close()


async def test_retry_later_and_publish_delay(backend: Backend, queue: str, scale: float) -> None:
    started = anyio.current_time()
    await backend.publish(queue, "late", delay=30 * scale)
    source = await backend.open_source(queue, prefetch=5)
    delivery = await receive_one(source)
    assert anyio.current_time() - started >= 30 * scale
    retried = anyio.current_time()
    delivery.handle.retry(10 * scale)
    again = await receive_one(source)
    assert anyio.current_time() - retried >= 10 * scale
    assert again.message.attempt == 2
    again.handle.ack()
    await source.close()


async def test_defer_comes_back_later_without_counting_an_attempt(
    backend: Backend, queue: str, scale: float
) -> None:
    await backend.publish(queue, "x")
    source = await backend.open_source(queue, prefetch=1)
    first = await receive_one(source)
    started = anyio.current_time()
    first.handle.defer(20 * scale)
    again = await receive_one(source)
    assert anyio.current_time() - started >= 20 * scale
    assert again.message.attempt == first.message.attempt == 1
    again.handle.ack()
    await source.close()


@pytest.mark.parametrize("case", MEMORY)
async def test_expired_messages_are_dead_lettered_not_delivered(
    backend: Backend, queue: str
) -> None:
    assert isinstance(backend, fa.MemoryBackend)  # its own inspection API
    await backend.publish(queue, "stale", properties=fa.MessageProperties(expiration=5), delay=10)
    await backend.publish(queue, "fresh", properties=fa.MessageProperties(expiration=60), delay=10)
    source = await backend.open_source(queue, prefetch=5)
    delivery = await receive_one(source)
    assert delivery.message.payload == "fresh"
    delivery.handle.ack()
    (letter,) = backend.dead_letters(queue)
    assert letter.reason == "expired: not delivered within 5 s"
    await source.close()


async def test_published_at_is_wall_clock_time(backend: Backend, queue: str) -> None:
    before = time.time()
    await backend.publish(queue, "x")
    source = await backend.open_source(queue, prefetch=1)
    delivery = await receive_one(source)
    # Unix seconds, as the brokers stamp them (AMQP timestamps are whole seconds)
    assert before - 1 <= delivery.message.published_at <= time.time()
    delivery.handle.ack()
    await source.close()


@pytest.mark.parametrize("case", MEMORY)
async def test_memory_times_are_wall_clock_while_delays_run_on_the_loop_clock(
    backend: Backend, queue: str
) -> None:
    assert isinstance(backend, fa.MemoryBackend)  # its own inspection API
    before = time.time()
    await backend.publish(queue, "x", delay=3600)
    source = await backend.open_source(queue, prefetch=1)
    started = anyio.current_time()
    (delivery,) = await source.receive(1)
    # an hour of virtual time, in no time (to the float's last bits: t + 3600 - t may
    # come out a hair under 3600, depending on where the loop's clock started)
    assert anyio.current_time() - started >= 3600 - 1e-6
    # (and expirations count on the loop clock too: see the test of expired messages)
    # the wall clock (the loop's virtual clock is nowhere near it); a second of slack:
    # the machine's clock may be stepped while the test runs (two flaky runs, unseen)
    assert before - 1 <= delivery.message.published_at <= time.time() + 1
    delivery.handle.dead_letter("no good")
    (letter,) = backend.dead_letters(queue)
    assert before - 1 <= letter.failed_at <= time.time() + 1
    await source.close()


async def test_a_delay_does_not_hold_up_others(backend: Backend, queue: str, scale: float) -> None:
    await backend.publish(queue, "slow", delay=60 * scale)
    await backend.publish(queue, "fast", delay=1 * scale)
    source = await backend.open_source(queue, prefetch=5)
    first = await receive_one(source)
    assert first.message.payload == "fast"
    first.handle.ack()
    (await receive_one(source)).handle.ack()
    await source.close()


LEVELS = fa.Priority


async def test_priority_orders_delivery_first_in_first_out_within_a_level(
    backend: Backend, queue: str
) -> None:
    """Higher levels first; one level in publish order; no priority is normal."""
    plan = [
        ("a", LEVELS.NORMAL),
        ("b", None),
        ("c", LEVELS.LOW),
        ("d", LEVELS.CRITICAL),
        ("e", LEVELS.HIGH),
        ("f", None),
        ("g", LEVELS.HIGH),
        ("h", LEVELS.NORMAL),
        ("i", LEVELS.LOW),
        ("j", LEVELS.CRITICAL),
    ]
    for payload, priority in plan:
        await backend.publish(queue, payload, properties=fa.MessageProperties(priority=priority))
    source = await backend.open_source(queue, prefetch=4)
    got: list[str] = []
    with anyio.fail_after(60):
        while len(got) < len(plan):  # a few at a time: each read takes the highest left
            for delivery in await source.receive(4):
                got.append(delivery.message.payload)
                delivery.handle.ack()
            await source.wait_settled()
    assert got == ["d", "j", "e", "g", "a", "b", "f", "h", "c", "i"]
    await source.close()


async def test_a_later_higher_priority_overtakes_what_waits(backend: Backend, queue: str) -> None:
    for n in range(3):
        await backend.publish(queue, n, properties=fa.MessageProperties(priority=LEVELS.LOW))
    source = await backend.open_source(queue, prefetch=1)
    first = await receive_one(source)
    await backend.publish(queue, "urgent", properties=fa.MessageProperties(priority=9))
    await backend.publish(queue, "plain")
    first.handle.ack()
    got = [first.message.payload]
    for _ in range(4):
        delivery = await receive_one(source)
        got.append(delivery.message.payload)
        delivery.handle.ack()
    assert got == [0, "urgent", "plain", 1, 2]
    await source.close()


@pytest.mark.parametrize("priority", [-1, 10, True, "high", 2.5])
async def test_a_priority_out_of_range_is_refused_before_anything_is_sent(
    backend: Backend, queue: str, priority: Any
) -> None:
    with pytest.raises(fa.ConfigurationError, match="priority must be None or an int from 0 to 9"):
        await backend.publish(queue, 1, properties=fa.MessageProperties(priority=priority))
    await backend.publish(queue, "after")
    source = await backend.open_source(queue, prefetch=10)
    assert (await receive_one(source)).message.payload == "after"  # nothing before it
    await source.close()


@pytest.mark.parametrize("case", MEMORY)
async def test_dead_letters_keep_the_original_and_can_be_replayed(
    backend: Backend, queue: str
) -> None:
    assert isinstance(backend, fa.MemoryBackend)  # its own inspection API
    props = fa.MessageProperties(correlation_id="c-1").with_header("k", "v")
    message_id = await backend.publish(queue, {"x": 1}, properties=props)
    source = await backend.open_source(queue, prefetch=1)
    (await receive_one(source)).handle.dead_letter("no good")
    (letter,) = backend.dead_letters(queue)
    assert (letter.id, letter.reason, letter.attempts, letter.body) == (
        message_id,
        "no good",
        1,
        b'{"x":1}',
    )
    assert letter.properties == props
    assert backend.replay_dead_letters(queue) == 1
    replayed = await receive_one(source)
    assert replayed.message.payload == {"x": 1}
    assert replayed.message.headers == {"k": "v"}
    replayed.handle.ack()
    await backend.join(queue)
    assert backend.purge_dead_letters(queue) == 0
    await source.close()


async def test_the_dead_letter_queue_has_one_shape_on_every_backend(
    backend: Backend, queue: str
) -> None:
    dlq = backend.dead_letter_queue(queue)
    assert isinstance(dlq, DeadLetterQueue)
    assert dlq.queue == queue
    props = fa.MessageProperties(correlation_id="c-1").with_header("k", "v")
    message_id = await backend.publish(queue, {"x": 1}, properties=props)
    await backend.publish(queue, 2)
    source = await backend.open_source(queue, prefetch=1)
    (await receive_one(source)).handle.dead_letter("no good")
    (await receive_one(source)).handle.dead_letter("no good either")
    await source.wait_settled()  # applied on the broker, not only decided
    assert await dlq.count() == 2
    first, _ = await dlq.list()
    assert (first.id, first.queue, first.reason, first.attempts, first.body) == (
        message_id,
        queue,
        "no good",
        1,
        b'{"x":1}',
    )
    assert (first.properties.correlation_id, first.properties.headers["k"]) == ("c-1", "v")
    assert before_now(first.failed_at)
    assert [letter.id for letter in await dlq.list(limit=1)] == [message_id]
    assert await dlq.count() == 2  # listing leaves them
    assert await dlq.replay(limit=1) == 1
    replayed = await receive_one(source)
    assert (replayed.message.id, replayed.message.payload) == (message_id, {"x": 1})
    assert replayed.message.attempt == 1  # attempts start over
    assert replayed.message.headers == {"k": "v"}
    replayed.handle.ack()
    assert await dlq.purge() == 1
    assert (await dlq.count(), await dlq.list()) == (0, [])
    await source.close()


def before_now(when: float) -> bool:
    """A wall-clock time of this run's (the last minute)."""
    return time.time() - 60 <= when <= time.time()


class TaggedJson:
    """JSON under a content type of its own: what a user's codec looks like."""

    content_type = "application/x-tagged+json"

    def encode(self, payload: Any) -> bytes:
        return fa.JsonCodec().encode(payload)

    def decode(self, body: bytes) -> Any:
        return fa.JsonCodec().decode(body)


async def test_a_codec_reads_what_it_wrote_under_its_own_content_type(
    backend: Backend, queue: str
) -> None:
    assert isinstance(backend, fa.MemoryBackend | RabbitMQBackend | RedisBackend)
    backend.codec = TaggedJson()
    await backend.publish(queue, {"a": 1})
    source = await backend.open_source(queue, prefetch=1)
    delivery = await receive_one(source)
    assert delivery.message.payload == {"a": 1}
    assert delivery.message.properties.content_type == "application/x-tagged+json"
    delivery.handle.ack()
    await source.close()


async def test_a_content_type_the_codec_does_not_read_is_dead_lettered(
    backend: Backend, queue: str
) -> None:
    await backend.publish(queue, "xml?", properties=fa.MessageProperties(content_type="text/xml"))
    await backend.publish(queue, "fine")
    source = await backend.open_source(queue, prefetch=5)
    delivery = await receive_one(source)
    assert delivery.message.payload == "fine"
    delivery.handle.ack()
    await source.wait_settled()
    (letter,) = await backend.dead_letter_queue(queue).list()
    assert letter.reason == (
        "unknown content type 'text/xml': this consumer decodes 'application/json'"
    )
    await source.close()


async def test_capabilities_are_declared_and_checked_by_protocol(
    backend: Backend, case: tuple[str, str]
) -> None:
    assert isinstance(backend, Backend)
    assert isinstance(backend, SharedConnection) is (case[0] != "memory")
    assert isinstance(backend, IntakeHelpers) is (case[0] != "memory")
    assert isinstance(backend, fa.backends.FairQueues) is (case[0] != "rabbitmq")
    assert isinstance(backend, fa.backends.BatchPublisher) is (case[0] != "memory")


@pytest.mark.parametrize("case", MEMORY)
async def test_undecodable_and_oversized_bodies_go_to_the_dead_letter_queue(queue: str) -> None:
    backend = fa.MemoryBackend(codec=fa.JsonCodec(max_size=16))
    backend.publish_raw(queue, b"\xff\xfe not json")
    backend.publish_raw(queue, b'"' + b"x" * 40 + b'"')
    await backend.publish(queue, "fine")
    source = await backend.open_source(queue, prefetch=5)
    delivery = await receive_one(source)
    assert delivery.message.payload == "fine"
    delivery.handle.ack()
    reasons = [d.reason for d in backend.dead_letters(queue)]
    assert reasons[0].startswith("undecodable: body is not valid JSON")
    assert reasons[1] == "undecodable: body is 42 bytes, over max_size 16"
    await source.close()


async def test_a_payload_the_codec_cannot_encode_is_refused_and_not_published(
    backend: Backend, queue: str
) -> None:
    assert isinstance(backend, fa.MemoryBackend | RabbitMQBackend | RedisBackend)
    backend.codec = fa.JsonCodec(max_size=64)
    when = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    with pytest.raises(fa.EncodeError, match=r"datetime .*\.isoformat\(\)") as info:
        await backend.publish(queue, {"at": when})
    assert isinstance(info.value, fa.CodecError)
    assert not isinstance(info.value, fa.ConfigurationError)  # a run-time error, not a build one
    with pytest.raises(fa.EncodeError, match=r"set .*list\(value\)"):
        await backend.publish(queue, {"tags": {"a", "b"}})
    too_large = r"100 bytes, over the codec's max_size of 64.*reference"
    with pytest.raises(fa.EncodeError, match=too_large):
        await backend.publish(queue, "x" * 98)
    await backend.publish(queue, "fine")
    source = await backend.open_source(queue, prefetch=5)
    delivery = await receive_one(source)
    assert delivery.message.payload == "fine"  # nothing of the refused ones went out before it
    delivery.handle.ack()
    await source.close()


@pytest.mark.parametrize("case", BROKERS)
async def test_a_source_of_its_own_ends_its_tasks_when_it_closes(
    backend: Backend, queue: str
) -> None:
    before = ours()
    await backend.publish(queue, 1)
    source = await backend.open_source(queue, prefetch=1)
    (await receive_one(source)).handle.retry(0.01)  # applied by the source's own task
    again = await receive_one(source)
    assert again.message.attempt == 2
    again.handle.ack()
    during = ours()
    await source.close()
    assert during - before  # it had a task of its own (it settles alone)
    assert ours() == before


def ours() -> set[asyncio.Task[Any]]:
    """The tasks running foxactors' code (the clients' own are theirs to end)."""
    return {
        task
        for task in asyncio.all_tasks()
        if "foxactors" in getattr(task.get_coro(), "cr_code", compile("", "", "exec")).co_filename
    }


async def test_a_dropped_handle_is_reported_and_returned(backend: Backend, queue: str) -> None:
    await backend.publish(queue, "x")
    source = await backend.open_source(queue, prefetch=1)
    delivery = await receive_one(source)
    message_id = delivery.message.id
    del delivery  # never settled: the finalizer requeues it
    again = await receive_one(source)
    assert (again.message.id, again.message.attempt) == (message_id, 2)
    again.handle.ack()
    await source.close()


async def test_statistics_take_no_queue_and_say_what_consumes(backend: Backend, queue: str) -> None:
    before = backend.statistics()
    assert isinstance(before, ConnectionStatistics)  # one shape on every backend
    source = await backend.open_source(queue, prefetch=1)
    during = backend.statistics()
    assert during.consuming == before.consuming + 1
    assert during.healthy
    assert (during.consecutive_failures, during.lost, during.last_error) == (0, 0, None)
    await source.close()
    assert backend.statistics().consuming == before.consuming


@pytest.mark.parametrize("case", MEMORY)
async def test_queue_statistics_count_a_memory_queue(backend: Backend, queue: str) -> None:
    assert isinstance(backend, fa.MemoryBackend)  # its own inspection API
    await backend.publish(queue, 1)
    await backend.publish(queue, 2)
    await backend.publish(queue, 3, delay=60)
    source = await backend.open_source(queue, prefetch=1)
    (await receive_one(source)).handle.dead_letter("no good")
    held = await receive_one(source)
    assert backend.queue_statistics(queue) == QueueStatistics(
        ready=0, delayed=1, in_flight=1, dead=1
    )
    with pytest.warns(DeprecationWarning, match=r"use queue_statistics\(queue\)"):
        old = backend.statistics(queue)
    assert old == backend.queue_statistics(queue)
    held.handle.ack()
    await source.close()


@pytest.mark.parametrize("case", MEMORY)
async def test_join_waits_for_everything_to_settle(backend: Backend, queue: str) -> None:
    assert isinstance(backend, fa.MemoryBackend)  # its own inspection API
    await backend.publish(queue, 1)
    source = await backend.open_source(queue, prefetch=1)
    delivery = await receive_one(source)
    joined = anyio.Event()

    async def join() -> None:
        await backend.join(queue)
        joined.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(join)
        await wait_all_tasks_blocked()
        assert not joined.is_set()
        delivery.handle.ack()
    assert joined.is_set()
    await source.close()
