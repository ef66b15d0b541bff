"""The contract between the pipeline and a message backend."""

from __future__ import annotations

from typing import Any, Protocol

import attrs

from foxactors._ack import Settler
from foxactors._message import Delivery, MessageProperties

CONNECTION = "foxactors.connection.get"
"""What a consumer asks a backend's connection actor for: the live connection.

A backend whose consumers share a connection offers ``connection_actor()`` (a factory
of an actor that owns the connection, answers this message with it, and crashes when
it is lost) and ``open_source(queue, prefetch=..., connection=...)``. `WorkerApp`
then puts the connection actor and the consumer under a rest_for_one supervisor.
"""


@attrs.frozen
class DeadLetter:
    """A message that was given up on, with why and when.

    Attributes:
        id: The original message id.
        queue: The queue it came from.
        body: The original body, untouched.
        properties: The original properties and headers, untouched.
        reason: Why it was dead-lettered (one line).
        attempts: How many times it was delivered.
        failed_at: When, in the backend's clock (seconds).
    """

    id: str
    queue: str
    body: bytes
    properties: MessageProperties
    reason: str
    attempts: int
    failed_at: float


class Source(Settler, Protocol):
    """One consumer of one queue, with credit: never more than ``prefetch`` unsettled.

    Handles of a closed source are stale: settling them is a logged no-op.
    """

    queue: str
    prefetch: int

    @property
    def unsettled(self) -> int:
        """Deliveries handed out and not yet settled."""

    async def receive(self, max_count: int, min_credit: int = 1) -> list[Delivery]:
        """Wait for a delivery and ``min_credit`` free credit; return at most ``max_count``.

        ``min_credit`` is GenStage's minimum demand: asking again only once that much
        credit is free makes deliveries arrive in batches.
        """

    async def wait_settled(self) -> None:
        """Wait until no delivery is unsettled."""

    async def close(self) -> None:
        """Stop consuming; every unsettled delivery goes back to its queue."""


class Backend(Protocol):
    """A place messages are published to and consumed from."""

    name: str

    async def publish(
        self,
        queue: str,
        payload: Any,
        *,
        properties: MessageProperties | None = None,
        delay: float = 0.0,
    ) -> str:
        """Publish ``payload`` (encoded by the backend's codec); return the message id."""

    async def open_source(self, queue: str, *, prefetch: int) -> Source:
        """Start consuming ``queue`` with at most ``prefetch`` unsettled deliveries."""
