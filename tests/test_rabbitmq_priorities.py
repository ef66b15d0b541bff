"""RabbitMQ priorities: the topology declares them, and a queue declared without them still works.

Against a real rabbitmq-server of the suite's own (asyncio, real time). The ordering
every backend keeps is in the conformance suite.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import anyio
import pytest
from structlog.testing import capture_logs

import foxactors as fa
from foxactors.backends import RabbitMQBackend, Topology
from foxactors.testing.servers import RabbitMQ

from .helpers import receive_one

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.fixture
def queue() -> str:
    return f"prio-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def backend(rabbitmq: RabbitMQ) -> AsyncIterator[RabbitMQBackend]:
    rabbit = RabbitMQBackend(rabbitmq.url)
    yield rabbit
    await rabbit.close()


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
