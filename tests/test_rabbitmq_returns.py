"""RabbitMQ copies and publishes the broker returns or nacks (real server, asyncio).

A retry, defer or dead-letter copy is published with ``mandatory`` and confirms, then
its original is acked. When RabbitMQ returns the copy (nothing bound: a queue deleted
behind the backend's back) or nacks it, the original must stay unacknowledged, the
failure must be logged and counted, and the topology declared again, so that the
message reaches its queue after the consumer comes back. Publishes and dead-letter
replays must not report a returned message as sent either.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aio_pika
import anyio
import pytest
from structlog.testing import capture_logs

import foxactors as fa
from foxactors.backends import RabbitMQBackend
from foxactors.testing.servers import RabbitMQ

from .helpers import receive_one

pytestmark = pytest.mark.anyio


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


async def delete(url: str, *, queue: str | None = None, exchange: str | None = None) -> None:
    """Delete a queue or an exchange behind the backend's back (an operator, a policy)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        if queue is not None:
            await channel.queue_delete(queue)
        if exchange is not None:
            await channel.exchange_delete(exchange)


async def exists(url: str, queue: str) -> bool:
    """Whether ``queue`` exists (a passive declaration)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        try:
            await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return False
        return True


def events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def fast_reconnect(app: fa.WorkerApp) -> fa.WorkerApp:
    return app.with_reconnect(min_delay=0.01, max_delay=0.05, random_factor=0)


class Letters:
    """A dead-letter sink that says when the pipeline has given up ``n`` times."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reasons: list[str] = []
        self.all_in = anyio.Event()

    def write(self, letter: fa.DeadLetter) -> None:
        self.reasons.append(letter.reason)
        if len(self.reasons) == self.n:
            self.all_in.set()


async def test_a_returned_dead_letter_copy_keeps_the_original_until_the_dlq_is_back(
    backend: RabbitMQBackend, queue: str, rabbitmq: RabbitMQ
) -> None:
    attempts: list[int] = []

    async def handle(message: fa.Message) -> None:
        attempts.append(message.attempt)
        raise ValueError("bad address")

    await backend.declare(queue)
    await delete(rabbitmq.url, queue=f"{queue}-dlq")
    await backend.publish(queue, "x")
    letters = Letters(2)
    app = fast_reconnect(
        fa.WorkerApp("rabbit")
        .add_worker(handle)
        .with_retry(max_retries=0)
        .with_dead_letter_sink(letters)
    )
    with capture_logs() as logs:
        async with fa.open_system(app.build(backend, queue)):
            with anyio.fail_after(20):
                await letters.all_in.wait()  # the original came back: it was not acked
        # the graceful stop waited for the second copy's confirm
    assert attempts == [1]  # then delivered again, it is caught as poison, not run
    assert letters.reasons == [
        "failed after 1 attempt: ValueError: bad address",
        "poison message: delivered 2 times with max_retries=0",
    ]
    (failure,) = events(logs, "rabbitmq.copy_failed")
    assert failure["decision"] == "dead_letter"
    assert failure["log_level"] == "error"
    assert f"{queue}-dlq" in failure["error"]
    assert backend.statistics().copies_failed == 1
    # the consumer came back, declared the dead-letter queue again, and the copy landed
    (letter,) = await backend.dead_letters(queue)
    assert (letter.body, letter.attempts) == (b'"x"', 2)


@pytest.mark.parametrize("gone", ["retry queue", "retry exchange"])
async def test_a_refused_retry_copy_keeps_the_original_until_the_retry_path_is_back(
    backend: RabbitMQBackend, queue: str, rabbitmq: RabbitMQ, gone: str
) -> None:
    await backend.publish(queue, "warm-up", delay=0.05)  # declares the 50 ms bucket
    source = await backend.open_source(queue, prefetch=1)
    (await receive_one(source)).handle.ack()
    await source.close()
    if gone == "retry queue":
        await delete(rabbitmq.url, queue=f"{queue}-retry-50")
    else:
        await delete(rabbitmq.url, exchange=f"{queue}-retry_exchange")

    attempts: list[int] = []
    done = anyio.Event()

    async def handle(message: fa.Message) -> None:
        attempts.append(message.attempt)
        if len(attempts) < 3:
            raise ValueError("flaky")
        done.set()

    await backend.publish(queue, "x")
    app = fast_reconnect(
        fa.WorkerApp("rabbit")
        .add_worker(handle)
        .with_retry(max_retries=5, initial_backoff=0.05, multiplier=1, jitter=0)
    )
    with capture_logs() as logs:
        async with fa.open_system(app.build(backend, queue)):
            with anyio.fail_after(20):
                await done.wait()
    # 1: its retry copy was refused; 2: it came back (redelivered) and its retry copy
    # went through the retry path declared again; 3: after the 50 ms delay
    assert attempts == [1, 2, 3]
    (failure,) = events(logs, "rabbitmq.copy_failed")
    assert failure["decision"] == "retry"
    assert backend.statistics().copies_failed == 1
    assert await exists(rabbitmq.url, f"{queue}-retry-50")


async def test_copies_sharing_a_message_id_are_each_checked(
    backend: RabbitMQBackend, queue: str, rabbitmq: RabbitMQ
) -> None:
    await backend.declare(queue)
    await delete(rabbitmq.url, queue=f"{queue}-dlq")
    for payload in ("a", "b"):  # a producer's retried publish: two messages, one id
        await backend.publish_raw(queue, json.dumps(payload).encode(), message_id="same")
    source = await backend.open_source(queue, prefetch=2)
    got: list[fa.Delivery] = []
    with anyio.fail_after(20):
        while len(got) < 2:
            got.extend(await source.receive(2))
    for delivery in got:  # one batch: both copies in flight at once
        delivery.handle.dead_letter("no good")
    with anyio.fail_after(20), pytest.raises(fa.BackendError, match="dead_letter copy"):
        await source.receive(1)
    await source.close()
    assert backend.statistics().copies_failed == 2
    again = await backend.open_source(queue, prefetch=2)
    back: list[fa.Delivery] = []
    with anyio.fail_after(20):
        while len(back) < 2:
            back.extend(await again.receive(2))
    assert sorted(d.message.payload for d in back) == ["a", "b"]  # neither was acked
    for delivery in back:
        delivery.handle.ack()
    await again.close()


async def test_a_nacked_copy_keeps_the_original(
    backend: RabbitMQBackend, queue: str, rabbitmq: RabbitMQ
) -> None:
    await backend.declare(queue)
    dlq = f"{queue}-dlq"
    await delete(rabbitmq.url, queue=dlq)
    connection = await aio_pika.connect(rabbitmq.url)
    async with connection:  # a full dead-letter queue that refuses what comes in
        channel = await connection.channel()
        await channel.declare_queue(
            dlq, durable=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
        )
    await backend.publish(queue, "x")
    source = await backend.open_source(queue, prefetch=1)
    delivery = await receive_one(source)
    with capture_logs() as logs:
        delivery.handle.dead_letter("no good")
        with anyio.fail_after(20), pytest.raises(fa.BackendError, match="nack"):
            await source.receive(1)
    await source.close()
    (failure,) = events(logs, "rabbitmq.copy_failed")
    assert dlq in failure["error"]
    assert backend.statistics().copies_failed == 1
    again = await backend.open_source(queue, prefetch=1)
    back = await receive_one(again)
    assert (back.message.payload, back.message.attempt) == ("x", 2)
    back.handle.ack()
    await again.close()


@pytest.mark.parametrize("gone", ["queue", "retry queue", "retry exchange"])
async def test_a_returned_publish_names_the_queue_and_the_next_declares_it_again(
    backend: RabbitMQBackend, queue: str, rabbitmq: RabbitMQ, gone: str
) -> None:
    delay = 0.0 if gone == "queue" else 0.05
    await backend.publish(queue, "first", delay=delay)
    await delete(
        rabbitmq.url,
        queue={"queue": queue, "retry queue": f"{queue}-retry-50"}.get(gone),
        exchange=f"{queue}-retry_exchange" if gone == "retry exchange" else None,
    )
    with pytest.raises(fa.BackendError, match=queue):
        await backend.publish(queue, "lost?", delay=delay)
    await backend.publish(queue, "second", delay=delay)  # declared again: it goes through
    source = await backend.open_source(queue, prefetch=2)
    payloads = set()
    with anyio.fail_after(20):
        while "second" not in payloads:
            for delivery in await source.receive(2):
                payloads.add(delivery.message.payload)
                delivery.handle.ack()
    assert "lost?" not in payloads
    await source.close()


async def test_replay_keeps_a_dead_letter_whose_republish_was_returned(
    backend: RabbitMQBackend, queue: str, rabbitmq: RabbitMQ
) -> None:
    await backend.publish(queue, "x")
    source = await backend.open_source(queue, prefetch=1)
    (await receive_one(source)).handle.dead_letter("no good")
    await source.wait_settled()
    await source.close()
    await delete(rabbitmq.url, queue=queue)
    with pytest.raises(fa.BackendError, match=queue):
        await backend.replay_dead_letters(queue)
    assert await backend.count_dead_letters(queue) == 1  # not dropped
    assert await backend.replay_dead_letters(queue) == 1  # the queue is declared again
    assert await backend.count_dead_letters(queue) == 0
    again = await backend.open_source(queue, prefetch=1)
    replayed = await receive_one(again)
    assert replayed.message.payload == "x"
    replayed.handle.ack()
    await again.close()
