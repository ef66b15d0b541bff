"""`RabbitMQSource`: one consumer of one queue, on a channel of its own."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from foxactors._ack import AckHandle, Decision
from foxactors._logging import get_logger
from foxactors._message import Delivery, Message
from foxactors.backends._admission import Admission, Inadmissible
from foxactors.backends._source import BrokerSource, Settlement

from . import _wire as wire
from ._client import why

if TYPE_CHECKING:
    from ._backend import RabbitMQBackend

_logger = get_logger("foxactors")  # stdlib logging unless structlog is configured


@attrs.define(slots=True)
class _Held:
    raw: Any  # aiormq DeliveredMessage
    attempt: int


def _message_id(entry: Settlement) -> str | None:
    message_id: str | None = entry[1].raw.header.properties.message_id
    return message_id


class RabbitMQSource(BrokerSource[int, _Held]):
    """One consumer of one RabbitMQ queue, on a channel of its own.

    Settlements are applied in batches by the settling loop (`settle_forever`): retry, defer and
    dead-letter copies are published and confirmed first, then the originals are
    acknowledged, with ``multiple=True`` over every leading run of settled deliveries.
    Nothing is acknowledged before its outcome. A copy the broker returns (nothing
    bound to its routing key) or nacks leaves its original unacknowledged and fails
    the source, so the consumer's restart declares the topology again and the broker
    delivers the original again. Losing the connection or channel
    makes `receive` raise `BackendError`; the broker returns every unacknowledged
    delivery, and this source's handles become stale.
    """

    def __init__(
        self,
        backend: RabbitMQBackend,
        queue: str,
        prefetch: int,
        generation: int,
        connection: Any = None,
    ) -> None:
        super().__init__(backend, queue, prefetch, generation)
        self._backend = backend
        self.consumer_tag = f"foxactors-{queue}-{generation}-{uuid.uuid4().hex[:8]}"
        self._admit = Admission(backend.codec)
        self._outstanding: collections.deque[int] = collections.deque()
        self._done: set[int] = set()
        self._arrived = asyncio.Event()
        self._connection: Any = connection
        self._owns_connection = connection is None
        self._channel: Any = None
        self._raw: Any = None

    @property
    def held(self) -> int:
        """Deliveries the broker gave this source that it has not acknowledged yet.

        Received and not yet handed out, handed out and not settled, and settled but
        not yet applied on the broker; none once the source is closed or failed (the
        broker has them back).
        """
        if self._closed or self._failure is not None:
            return 0
        return len(self._buffer) + self.unsettled + len(self._pending)

    async def start(self) -> None:
        """Connect (unless given a connection), set the prefetch (QoS), consume."""
        if self._owns_connection:
            self._connection = await self._backend.connect()
        # a returned copy must fail its publish, not resolve as if delivered
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        await self._channel.set_qos(prefetch_count=self.prefetch)
        self._channel.close_callbacks.add(self._on_close)
        self._raw = await self._channel.get_underlay_channel()
        await self._raw.basic_consume(
            self.queue, self._on_message, no_ack=False, consumer_tag=self.consumer_tag
        )
        self._started()
        if self._owns_connection:  # no actor beside it to apply its settlements
            self._run_alone()

    # aiormq delivers messages and channel closes to callbacks: each does no more than
    # hand over (buffer, fail) and wake the receiving task, which does the rest.

    def _on_message(self, raw: Any) -> Any:
        self._buffer.append(raw)
        self._arrived.set()
        return None

    def _on_close(self, _sender: Any, exc: BaseException | None) -> None:
        if not self._closed:
            reason = why(exc, "closed by the broker")
            _logger.error("rabbitmq.channel_lost", queue=self.queue, error=reason)
            self._fail(f"lost the RabbitMQ channel of {self.queue!r}: {reason}")

    def _wake(self) -> None:
        self._arrived.set()

    async def _fetch(self) -> None:
        self._arrived.clear()
        await self._arrived.wait()

    def _deliver(self, item: Any, now: float) -> Delivery | None:
        raw = item
        tag: int = raw.delivery.delivery_tag
        props = raw.header.properties
        attempt, count, problem = wire.attempt_of(props.headers or {}, raw.delivery.redelivered)
        held = _Held(raw, attempt)
        self._unsettled[tag] = held
        self._outstanding.append(tag)
        handle = AckHandle(self, tag, self.generation)
        if problem:
            handle.dead_letter(problem)
            return None
        if count is None and raw.delivery.redelivered:
            # A classic queue only says "redelivered", not how often: make this
            # redelivery count durably (a copy with the attempt in its header, then
            # ack), so that max retries holds even if every attempt kills the worker.
            handle.defer(0)
            return None
        try:  # expired messages never come: RabbitMQ dead-letters them itself
            payload = self._admit(raw.body, props.content_type)
        except Inadmissible as exc:
            exc.settle(handle, queue=self.queue, message_id=props.message_id or tag)
            return None
        try:
            properties = wire.from_amqp(props)
        except (TypeError, ValueError) as exc:
            handle.dead_letter(f"bad properties: {exc}")
            return None
        stamp = props.timestamp
        message = Message(
            id=props.message_id or f"{self.queue}:{self.generation}:{tag}",
            payload=payload,
            body=raw.body,
            properties=properties,
            attempt=held.attempt,
            queue=self.queue,
            published_at=stamp.timestamp() if stamp is not None else time.time(),
        )
        return Delivery(message, handle)

    # -- settling ---------------------------------------------------------------------

    async def _apply(self, batch: list[Settlement]) -> None:
        failed: dict[int, tuple[Decision, BaseException]] = {}
        copies = [entry for entry in batch if entry[2] in wire.COPIED]
        for wave in wire.waves(copies, _message_id):
            results = await asyncio.gather(
                *(self._copy(*entry) for entry in wave), return_exceptions=True
            )
            for (tag, _, decision, _, _), result in zip(wave, results, strict=True):
                if isinstance(result, BaseException):
                    failed[tag] = (decision, result)
        for decision, error in failed.values():
            self._backend.copy_failed()
            _logger.error(
                "rabbitmq.copy_failed", queue=self.queue, decision=decision.value, error=str(error)
            )
        acks = {
            tag
            for tag, _, decision, _, _ in batch
            if decision is not Decision.REQUEUE and tag not in failed
        }
        await self._ack(acks)
        for tag, _, decision, _, _ in batch:
            if decision is Decision.REQUEUE:
                await self._raw.basic_reject(tag, requeue=True)
                self._done.add(tag)
        if failed:
            # The originals stay unacknowledged: the broker returns them when this
            # source's channel closes, and the consumer's restart declares the
            # topology again. Requeueing them here instead would run them again at
            # once, copy them again and fail again, as fast as the broker answers.
            decision, error = next(iter(failed.values()))
            self._fail(
                f"the {decision.value} copy of a delivery of {self.queue!r} failed "
                f"({error}); its original was not acknowledged and comes back"
            )

    async def _ack(self, tags: set[int]) -> None:
        """Ack ``tags``: one ``multiple=True`` over the leading settled run, the rest singly."""
        outstanding, done = self._outstanding, self._done
        upto = 0
        while outstanding and (outstanding[0] in tags or outstanding[0] in done):
            tag = outstanding.popleft()
            if tag in tags:
                tags.discard(tag)
                upto = tag
            else:
                done.discard(tag)
        if upto:
            await self._raw.basic_ack(upto, multiple=True)
        for tag in tags:
            await self._raw.basic_ack(tag)
            done.add(tag)

    async def _copy(
        self, tag: int, held: _Held, decision: Decision, delay: float, reason: str
    ) -> None:
        """Publish the retry, defer or dead-letter copy of a delivery, with confirms."""
        del tag
        raw = held.raw
        props = raw.header.properties
        headers = wire.copy_headers(
            props.headers,
            props.expiration,
            decision,
            held.attempt,
            reason=reason,
            routing_key=raw.delivery.routing_key or self.queue,
            now=time.time(),
        )
        copy = wire.copy_of(props, raw.body, headers)
        await self._backend._send(
            self._channel, self.queue, copy, delay, dead_letter=decision is Decision.DEAD_LETTER
        )

    async def close(self) -> None:
        """Apply decided settlements, stop consuming, close: the broker returns the rest."""
        if self._closed:
            return
        try:
            await self._stop()
        finally:
            # even when cancelled: an open channel would keep its deliveries for ever
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(10),
                contextlib.suppress(Exception),
            ):
                if self._owns_connection:
                    await self._connection.close()
                else:  # closing the channel returns its unacknowledged deliveries
                    await self._channel.close()
