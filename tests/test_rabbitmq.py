"""RabbitMQ behaviour against a real rabbitmq-server of the suite's own (asyncio, real time)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import anyio
import pytest
from structlog.testing import capture_logs

import foxactors as fa
from foxactors._redact import redact
from foxactors.backends import RabbitMQBackend, Topology
from foxactors.backends.rabbitmq import delay_bucket
from foxactors.testing.servers import RabbitMQ

from .helpers import receive_one

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.fixture
def queue() -> str:
    return f"jobs-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def backend(rabbitmq: RabbitMQ) -> AsyncIterator[RabbitMQBackend]:
    rabbit = RabbitMQBackend(rabbitmq.url)
    yield rabbit
    await rabbit.close()


async def publish_plain(url: str, queue: str, body: bytes, **props: Any) -> None:
    """Publish with raw aio-pika: what another service (or a bad one) would send."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(aio_pika.Message(body, **props), routing_key=queue)


def test_delay_buckets_round_up_by_at_most_ten_percent() -> None:
    assert [delay_bucket(d) for d in (0.0, 0.001, 0.0123, 1, 1.234, 61.5)] == [
        1,
        1,
        13,
        1000,
        1300,
        62000,
    ]
    assert redact("amqp://user:s3cret@host:5672/vh") == "amqp://user:***@host:5672/vh"


async def test_wrong_credentials_fail_fast_without_the_password(rabbitmq: RabbitMQ) -> None:
    url = f"amqp://guest:hunter2-secret@127.0.0.1:{rabbitmq.port}/"
    backend = RabbitMQBackend(url)
    with pytest.raises(fa.BackendError) as caught:
        await backend.publish("q", 1)
    assert "hunter2-secret" not in str(caught.value)
    assert f"amqp://guest:***@127.0.0.1:{rabbitmq.port}" in str(caught.value)
    with pytest.raises(fa.ConfigurationError, match="must start with amqp://"):
        RabbitMQBackend("http://guest:pw@host/")


async def test_properties_map_both_ways(backend: RabbitMQBackend, queue: str) -> None:
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
    message_id = await backend.publish(queue, {"to": "ada"}, properties=props)
    source = await backend.open_source(queue, prefetch=1)
    message = (delivery := await receive_one(source)).message
    assert message.id == message_id
    assert message.properties == props
    assert message.published_at > 0
    delivery.handle.ack()
    await source.close()


async def test_retry_path_counts_attempts_and_dead_letters_carry_the_story(
    backend: RabbitMQBackend, queue: str, rabbitmq: RabbitMQ
) -> None:
    props = fa.MessageProperties(correlation_id="c-1").with_header("tenant", "acme")
    message_id = await backend.publish(queue, {"x": 1}, properties=props)
    source = await backend.open_source(queue, prefetch=5)
    first = await receive_one(source)
    first.handle.retry(0.05)
    second = await receive_one(source)
    assert (second.message.attempt, second.message.headers["x-retry-attempt"]) == (2, 1)
    second.handle.requeue()  # a redelivery counts too
    third = await receive_one(source)
    assert third.message.attempt == 3
    third.handle.dead_letter("no good")
    await source.wait_settled()
    assert await backend.count_dead_letters(queue) == 1
    (letter,) = await backend.dead_letters(queue)
    assert (letter.id, letter.reason, letter.attempts, letter.body) == (
        message_id,
        "no good",
        3,
        b'{"x":1}',
    )
    assert letter.properties.correlation_id == "c-1"
    assert letter.properties.headers["tenant"] == "acme"
    assert letter.properties.headers["x-original-routing-key"] == queue
    assert letter.failed_at > 0
    assert await backend.count_dead_letters(queue) == 1  # listing leaves them
    assert f"{queue}-retry-50" in rabbitmq.ctl("list_queues", "name")

    assert await backend.replay_dead_letters(queue) == 1
    replayed = await receive_one(source)
    assert (replayed.message.id, replayed.message.attempt) == (message_id, 1)
    assert "x-failure-reason" not in replayed.message.headers
    assert replayed.message.headers["tenant"] == "acme"
    replayed.handle.dead_letter("again")
    await source.wait_settled()
    assert await backend.purge_dead_letters(queue) == 1
    assert await backend.count_dead_letters(queue) == 0
    await source.close()


async def test_bad_input_goes_to_the_dead_letter_queue_with_its_reason(
    backend: RabbitMQBackend, queue: str, rabbitmq: RabbitMQ
) -> None:
    await backend.declare(queue)
    await publish_plain(rabbitmq.url, queue, b"{not json", content_type="application/json")
    await publish_plain(rabbitmq.url, queue, b"<x/>", content_type="text/xml")
    await publish_plain(rabbitmq.url, queue, b"1", headers={"x-retry-attempt": "three"})
    # other clients' messages carry no priority: RabbitMQ delivers them at 0, so this
    # one goes at 0 too, behind them
    await backend.publish(queue, "fine", properties=fa.MessageProperties(priority=fa.Priority.LOW))
    source = await backend.open_source(queue, prefetch=10)
    delivery = await receive_one(source)
    assert delivery.message.payload == "fine"
    delivery.handle.ack()
    await source.wait_settled()
    reasons = [letter.reason for letter in await backend.dead_letters(queue)]
    assert reasons[0].startswith("undecodable: body is not valid JSON")
    assert reasons[1] == (
        "unknown content type 'text/xml': this consumer decodes 'application/json'"
    )
    assert reasons[2] == "bad header: x-retry-attempt='three' is not a count"
    await source.close()


async def test_acks_wait_for_outcomes_and_multiple_covers_only_settled_runs(
    backend: RabbitMQBackend, queue: str, rabbitmq: RabbitMQ
) -> None:
    for n in range(6):
        await backend.publish(queue, n)
    source = await backend.open_source(queue, prefetch=10)
    got: list[fa.Delivery] = []
    with anyio.fail_after(30):
        while len(got) < 6:
            got.extend(await source.receive(6))
    for n in (0, 1, 3, 5):  # 2 and 4 stay open: acking 0..5 "multiple" would lose them
        got[n].handle.ack()
    await source.close()
    again = await backend.open_source(queue, prefetch=10)
    redelivered: list[fa.Delivery] = []
    with anyio.fail_after(30):
        while len(redelivered) < 2:
            redelivered.extend(await again.receive(6))
    assert sorted(d.message.payload for d in redelivered) == [2, 4]
    for d in redelivered:
        d.handle.ack()
    await again.close()


async def test_a_conflicting_declaration_is_a_clear_error(rabbitmq: RabbitMQ, queue: str) -> None:
    classic = RabbitMQBackend(rabbitmq.url)
    await classic.declare(queue)
    await classic.close()
    quorum = RabbitMQBackend(rabbitmq.url, topology=Topology(queue_type="quorum"))
    with pytest.raises(fa.BackendError, match="exist with other arguments"):
        await quorum.declare(queue)
    await quorum.close()


async def test_a_lost_connection_fails_the_source_and_stales_its_handles(
    backend: RabbitMQBackend, queue: str, rabbitmq: RabbitMQ
) -> None:
    await backend.publish(queue, "x")
    source = await backend.open_source(queue, prefetch=1)
    delivery = await receive_one(source)
    rabbitmq.ctl("close_all_connections", "test: cut")
    with anyio.fail_after(30), pytest.raises(fa.BackendError, match="lost the RabbitMQ channel"):
        await source.receive(1)
    assert delivery.handle.ack() is False  # stale: not applied anywhere
    await source.close()
    fresh = RabbitMQBackend(rabbitmq.url)
    again = await fresh.open_source(queue, prefetch=1)
    redelivered = await receive_one(again)
    assert (redelivered.message.payload, redelivered.message.attempt) == ("x", 2)
    redelivered.handle.ack()
    await again.close()
    await fresh.close()


async def test_quorum_queues_count_redeliveries_and_retry(rabbitmq: RabbitMQ, queue: str) -> None:
    backend = RabbitMQBackend(rabbitmq.url, topology=Topology(queue_type="quorum"))
    await backend.publish(queue, "q")
    source = await backend.open_source(queue, prefetch=2)
    first = await receive_one(source)
    first.handle.requeue()
    second = await receive_one(source)  # x-delivery-count says 1
    assert second.message.attempt == 2
    second.handle.retry(0.01)
    third = await receive_one(source)
    assert third.message.attempt == 3
    third.handle.ack()
    await source.close()
    assert "quorum" in rabbitmq.ctl("list_queues", "name", "type")
    await backend.close()


async def test_an_unroutable_publish_is_an_error_not_silence(
    backend: RabbitMQBackend, queue: str, rabbitmq: RabbitMQ
) -> None:
    await backend.publish(queue, "declared")
    rabbitmq.ctl("delete_queue", queue)  # gone behind the backend's back
    with pytest.raises(fa.BackendError, match="did not take the message"):
        await backend.publish(queue, "lost?")


async def received(backend: RabbitMQBackend, queue: str, n: int) -> list[fa.Message]:
    """The next ``n`` messages of ``queue``, in the order they come, each acknowledged."""
    source = await backend.open_source(queue, prefetch=50)
    found: list[fa.Message] = []
    while len(found) < n:
        delivery = await receive_one(source)
        delivery.handle.ack()
        found.append(delivery.message)
    await source.close()
    return found


async def test_publish_many_goes_out_in_order_without_waiting_for_each_confirm(
    backend: RabbitMQBackend, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(backend, fa.backends.BatchPublisher)
    await backend.publish(queue, -1)  # connected and declared
    sending = peak = 0
    send = backend._send

    async def counted(*args: Any, **options: Any) -> None:
        nonlocal sending, peak
        sending += 1
        peak = max(peak, sending)
        try:
            await send(*args, **options)
        finally:
            sending -= 1

    monkeypatch.setattr(backend, "_send", counted)
    messages: list[tuple[Any, fa.MessageProperties | None]] = [(n, None) for n in range(200)]
    messages[7] = (object(), None)  # not JSON: that one alone fails
    answers = await backend.publish_many(queue, messages)
    assert peak > 1  # out together, each confirm awaited beside the others
    assert isinstance(answers[7], fa.EncodeError)
    expected = [n for n in range(200) if n != 7]
    found = await received(backend, queue, 200)
    assert [m.payload for m in found] == [-1, *expected]
    assert [m.id for m in found[1:]] == [answers[n] for n in expected]

    delayed = await backend.publish_many(queue, [(n, None) for n in range(5)], delay=0.05)
    assert [m.payload for m in await received(backend, queue, 5)] == list(range(5))
    assert all(isinstance(answer, str) for answer in delayed)


async def test_publishes_that_lost_their_connection_together_reconnect_once(
    backend: RabbitMQBackend, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await backend.publish(queue, -1)
    connects = 0
    connect, send = backend.connect, backend._send

    async def counted() -> Any:
        nonlocal connects
        connects += 1
        return await connect()

    lost: list[str] = []
    all_sending, resent = anyio.Event(), anyio.Event()

    async def lost_once(channel: Any, queue: str, message: Any, delay: float) -> None:
        if message.message_id not in lost:  # each one's first try, on the first connection
            lost.append(message.message_id)
            if len(lost) == 3:
                all_sending.set()
            await all_sending.wait()
            if message.message_id != lost[0]:
                await resent.wait()  # these hear of the loss once the first is sent again
            raise aiormq.exceptions.ChannelInvalidStateError("connection lost")
        resent.set()  # on a new connection
        await send(channel, queue, message, delay)

    monkeypatch.setattr(backend, "connect", counted)
    monkeypatch.setattr(backend, "_send", lost_once)
    answers = await backend.publish_many(queue, [(n, None) for n in range(3)])
    assert all(isinstance(answer, str) for answer in answers), answers
    assert connects == 1  # the later failures did not close the new connection
    payloads = sorted(m.payload for m in await received(backend, queue, 4))
    assert payloads == [-1, 0, 1, 2]


async def test_crash_redeliveries_count_as_attempts_on_classic_queues(
    backend: RabbitMQBackend, queue: str
) -> None:
    await backend.publish(queue, "poison")
    attempts = []
    for _ in range(3):  # each consumer "dies" holding the message: close, no settlement
        source = await backend.open_source(queue, prefetch=1)
        delivery = await receive_one(source)
        attempts.append(delivery.message.attempt)
        await source.close()
        assert delivery.handle.ack() is False  # stale
    assert attempts == [1, 2, 3]  # not 1, 2, 2: the redelivered flag alone cannot count


async def test_the_default_stack_retries_through_the_broker_then_dead_letters(
    backend: RabbitMQBackend, queue: str
) -> None:
    attempts: Counter[str] = Counter()
    settled = anyio.Event()

    async def handle(message: fa.Message) -> None:
        attempts[message.payload] += 1
        assert message.attempt == attempts[message.payload]  # carried by x-retry-attempt
        if message.payload == "bad":
            if message.attempt == 3:
                settled.set()
            raise ValueError("bad address")

    await backend.publish(queue, "good")
    await backend.publish(queue, "bad")
    app = (
        fa.WorkerApp("rabbit")
        .add_worker(handle)
        .with_retry(max_retries=2, initial_backoff=0.01, jitter=0)
    )
    async with fa.open_system(app.build(backend, queue)):
        with anyio.fail_after(30):
            await settled.wait()
    # the graceful stop waited for every settlement, the dead-letter copy's confirm included
    assert await backend.count_dead_letters(queue) == 1
    assert attempts == {"good": 1, "bad": 3}
    (letter,) = await backend.dead_letters(queue)
    assert letter.reason == "failed after 3 attempts: ValueError: bad address"
    assert letter.attempts == 3
    assert letter.properties.headers["x-final-attempt"] == 3


# -- priorities: declared by the topology; a queue declared without them still works


def test_classic_queues_get_every_level_and_quorum_queues_none() -> None:
    assert Topology().max_priority == 9  # Priority.CRITICAL: every level
    assert Topology().arguments("q")["x-max-priority"] == 9
    assert "x-max-priority" not in Topology(max_priority=None).arguments("q")
    quorum = Topology(queue_type="quorum")
    assert quorum.max_priority is None
    assert "x-max-priority" not in quorum.arguments("q")
    with pytest.raises(fa.ConfigurationError, match="quorum queues take no x-max-priority"):
        Topology(queue_type="quorum", max_priority=9)
    with pytest.raises(fa.ConfigurationError, match="max_priority must be at most 255"):
        Topology(max_priority=256)


async def test_a_message_without_a_priority_goes_at_normal(
    backend: RabbitMQBackend, queue: str
) -> None:
    await backend.publish(queue, "plain")
    source = await backend.open_source(queue, prefetch=1)
    delivery = await receive_one(source)
    assert delivery.message.properties.priority == fa.Priority.NORMAL  # on the wire
    delivery.handle.ack()
    await source.close()


async def test_a_retry_keeps_its_priority(
    backend: RabbitMQBackend, queue: str, rabbitmq: RabbitMQ
) -> None:
    await backend.publish(queue, "high", properties=fa.MessageProperties(priority=6))
    source = await backend.open_source(queue, prefetch=1)
    (await receive_one(source)).handle.retry(0.05)
    await backend.publish(queue, "first")
    await backend.publish(queue, "second")
    held = await receive_one(source)  # "first": the retry is not due yet
    assert held.message.payload == "first"

    async def waiting() -> int:  # nothing signals the retry queue's expiry
        connection = await aio_pika.connect(rabbitmq.url)
        async with connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            return declared.declaration_result.message_count or 0

    with anyio.fail_after(10):
        while True:
            if await waiting() == 2:  # "second" and the retried "high"
                break
            await anyio.sleep(0.02)
    held.handle.ack()
    again = await receive_one(source)
    assert (again.message.payload, again.message.attempt) == ("high", 2)
    again.handle.ack()
    last = await receive_one(source)
    assert last.message.payload == "second"
    last.handle.ack()
    await source.close()


async def test_a_queue_declared_without_priorities_is_used_as_it_is(
    backend: RabbitMQBackend, queue: str, rabbitmq: RabbitMQ
) -> None:
    """A work queue of an earlier version: no x-max-priority, which cannot be added."""
    old = Topology(max_priority=None)
    connection = await aio_pika.connect(rabbitmq.url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True, arguments=old.arguments(queue))
    with capture_logs() as logs:
        await backend.publish(queue, "low", properties=fa.MessageProperties(priority=0))
        await backend.publish(queue, "critical", properties=fa.MessageProperties(priority=9))
        source = await backend.open_source(queue, prefetch=2)
    warnings = [log for log in logs if log["event"] == "rabbitmq.no_priorities"]
    assert [w["queue"] for w in warnings] == [queue]  # once, not per publish
    got = [await receive_one(source) for _ in range(2)]
    assert [d.message.payload for d in got] == ["low", "critical"]  # first in, first out
    got[0].handle.dead_letter("no")
    got[1].handle.ack()
    with anyio.fail_after(10):
        await source.wait_settled()
    assert [letter.reason for letter in await backend.dead_letters(queue)] == ["no"]
    await source.close()
