"""`encode_and_publish`: what a broker backend's ``publish`` does before its wire."""

from __future__ import annotations

from typing import Any, Protocol

from foxactors._codec import Codec
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
    if properties is not None:
        check_priority(properties)
    body = backend.codec.encode(payload)
    properties, span = outgoing(properties, backend.codec.content_type, queue, backend.name)
    if span is None:
        return await backend.publish_raw(queue, body, properties=properties, delay=delay)
    with span:
        return await backend.publish_raw(queue, body, properties=properties, delay=delay)
