"""`RabbitMQDeadLetters`: the dead-letter queue of a work queue, listed, replayed, purged."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pamqp.commands import Basic

from foxactors.backends._deadletter import DeadLetter

from . import _wire as wire

if TYPE_CHECKING:
    from ._backend import RabbitMQBackend


class RabbitMQDeadLetters:
    """The dead-letter queue of ``queue`` (``q-dlq`` by default), on a connection of its own.

    Each call opens a connection, declares the topology if needed, and closes it.

    Attributes:
        queue: The work queue whose dead letters these are.
    """

    def __init__(self, backend: RabbitMQBackend, queue: str) -> None:
        self._backend = backend
        self.queue = queue

    @contextlib.asynccontextmanager
    async def _channel(self) -> AsyncIterator[tuple[Any, str]]:
        """A channel of its own (aiormq) and the name of the dead-letter queue."""
        backend = self._backend
        await backend.declare(self.queue)  # on the publishing channel, which may be replaced
        connection = await backend.connect()
        try:
            channel = await connection.channel()
            yield await channel.get_underlay_channel(), backend.topology.dlq(self.queue)
        finally:
            await connection.close()

    async def list(self, *, limit: int | None = 1000) -> builtins.list[DeadLetter]:
        """Return up to ``limit`` dead letters, oldest first, leaving them in place."""
        async with self._channel() as (raw, dlq):
            return [
                wire.dead_letter(self.queue, m.body, m.header.properties)
                for m in await _get_many(raw, dlq, limit)
            ]
            # closing the channel returns them all, in order

    async def count(self) -> int:
        """Return how many messages wait in the dead-letter queue."""
        async with self._channel() as (raw, dlq):
            declared = await raw.queue_declare(dlq, passive=True)
            return int(declared.message_count or 0)

    async def replay(self, *, limit: int | None = None) -> int:
        """Move dead letters back to the work queue (headers kept, attempts start over).

        Each one is published (and confirmed) before it leaves the dead-letter queue,
        so a crash in between duplicates a dead letter, never loses it.

        Raises:
            BackendError: RabbitMQ returned or refused a republished letter (say,
                the work queue was deleted): that letter and those after it stay in
                the dead-letter queue; the queue is declared again on the next try.
        """
        moved = 0
        async with self._channel() as (raw, dlq):
            for message in await _get_many(raw, dlq, limit):
                letter = wire.dead_letter(self.queue, message.body, message.header.properties)
                await self._backend.publish_raw(
                    self.queue,
                    letter.body,
                    properties=wire.replay_properties(letter),
                    message_id=letter.id,
                )
                await raw.basic_ack(message.delivery.delivery_tag)
                moved += 1
        return moved

    async def purge(self) -> int:
        """Delete the dead letters; return how many there were."""
        async with self._channel() as (raw, dlq):
            purged = await raw.queue_purge(dlq)
            return int(purged.message_count or 0)


async def _get_many(raw: Any, queue: str, limit: int | None) -> list[Any]:
    out: list[Any] = []
    while limit is None or len(out) < limit:
        message = await raw.basic_get(queue, no_ack=False)
        if isinstance(message.delivery, Basic.GetEmpty):
            break
        out.append(message)
    return out
