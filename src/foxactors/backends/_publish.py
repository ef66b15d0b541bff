"""What a broker backend's ``publish`` does before its wire, and ``publish_many`` in order.

`encode_and_publish` checks, encodes and traces one message; `publish_in_order` sends
many as concurrent publishes that keep their order.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import anyio

from foxactors._codec import Codec
from foxactors._errors import BackendError
from foxactors._message import MessageProperties, check_priority
from foxactors._tracing import outgoing


class RawPublisher(Protocol):
    """A backend that publishes encoded bodies (RabbitMQ's and Redis's)."""

    @property
    def name(self) -> str:
        """The broker's name, for spans."""

    codec: Codec

    async def publish_raw(
        self,
        queue: str,
        body: bytes,
        *,
        properties: MessageProperties | None = None,
        delay: float = 0.0,
    ) -> str:
        """Publish an encoded body; return its message id."""


def prepare(
    backend: RawPublisher, queue: str, payload: Any, properties: MessageProperties | None
) -> tuple[bytes, MessageProperties | None, AbstractContextManager[Any] | None]:
    """What a publish sends: the body, the properties with what `outgoing` adds, its span.

    The span (tracing on) is the caller's to end once the broker has the message.

    Raises:
        EncodeError: The codec cannot encode ``payload``.
        ConfigurationError: A priority out of range.
    """
    if properties is not None:
        check_priority(properties)
    body = backend.codec.encode(payload)
    properties, span = outgoing(properties, backend.codec.content_type, queue, backend.name)
    return body, properties, span


async def encode_and_publish(
    backend: RawPublisher,
    queue: str,
    payload: Any,
    properties: MessageProperties | None,
    delay: float,
) -> str:
    """Check the priority, encode, add what `outgoing` adds, publish; the message id.

    The span `outgoing` starts (tracing on) ends once the broker has the message.
    """
    body, properties, span = prepare(backend, queue, payload, properties)
    if span is None:
        return await backend.publish_raw(queue, body, properties=properties, delay=delay)
    with span:
        return await backend.publish_raw(queue, body, properties=properties, delay=delay)


async def publish_in_order(
    backend: RawPublisher,
    queue: str,
    messages: Sequence[tuple[Any, MessageProperties | None]],
    *,
    delay: float = 0.0,
) -> list[str | Exception]:
    """Publish ``messages`` as tasks started in order in one task group; each id or error.

    For a backend that is connected (and has declared ``queue``) already, and whose
    ``publish`` then reaches its wire's queue (the turn's batch, the channel's lock)
    before its first wait: the tasks start in the order given, so the messages go out
    in that order, without waiting for each other's answers. anyio's tasks: a cancel
    reaches them through their scopes (so one that sends a batch for others finishes
    it, shielded: the batcher's promise).
    """
    answers: list[str | Exception] = [BackendError("not published")] * len(messages)

    async def one(index: int, payload: Any, properties: MessageProperties | None) -> None:
        try:
            answers[index] = await encode_and_publish(backend, queue, payload, properties, delay)
        except Exception as exc:  # its own place in the answer
            answers[index] = exc

    async with anyio.create_task_group() as tasks:
        for index, (payload, properties) in enumerate(messages):
            tasks.start_soon(one, index, payload, properties)
    return answers
