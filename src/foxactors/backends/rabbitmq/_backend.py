"""`RabbitMQBackend`: connecting, declaring the topology, publishing, opening sources."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import aio_pika
import aiormq
import attrs
from pamqp.commands import Basic

from foxactors._actor import Actor
from foxactors._codec import Codec, JsonCodec
from foxactors._errors import BackendError, ConfigurationError
from foxactors._ids import new_id
from foxactors._logging import get_logger
from foxactors._message import MessageProperties
from foxactors._redact import redact
from foxactors._validate import require_int, require_seconds
from foxactors.backends._admission import default_properties
from foxactors.backends._connection import (
    BrokerConnection,
    ConnectionCounts,
    ConnectionStatistics,
)
from foxactors.backends._contract import QueueStatistics
from foxactors.backends._deadletter import DeadLetterShortcuts
from foxactors.backends._keeper import keeper
from foxactors.backends._publish import encode_and_publish, publish_in_order

from ._client import CONNECTION_ERRORS, unreachable
from ._connection import RabbitMQLink
from ._deadletters import RabbitMQDeadLetters
from ._source import RabbitMQSource
from ._topology import Topology, delay_bucket
from ._wire import to_amqp

_logger = get_logger("foxactors")  # stdlib logging unless structlog is configured

PUBLISH_CHUNK = 500
"""Messages `RabbitMQBackend.publish_many` has out at once, awaiting their confirms."""


@attrs.frozen
class RabbitMQStatistics(ConnectionStatistics):
    """`ConnectionStatistics` plus the copies the broker did not take.

    Attributes:
        copies_failed: Retry, defer and dead-letter copies that RabbitMQ returned
            (unroutable), nacked, or that failed with their channel; their originals
            were left unacknowledged and came back.
    """

    copies_failed: int = 0


@attrs.frozen
class RabbitMQQueueStatistics(QueueStatistics):
    """What one work queue holds, from passive declares of it and its companions.

    AMQP tells how many messages a queue has ready and how many consumers it has,
    and no more (the rest needs the management plugin's HTTP API, which this
    backend does not use): so ``in_flight`` and ``delayed`` are what this process
    can see.

    Attributes:
        ready: Messages ready in the work queue (every process's view: the broker's).
        delayed: Messages in the retry queues of ``queue`` that this backend declared
            or published to since it was made (a retry queue only another process
            used is not seen).
        in_flight: Deliveries this backend's consumers of ``queue`` hold and have not
            acknowledged (other processes' consumers are not seen).
        dead: Messages in the dead-letter queue (the broker's count).
        consumers: Consumers of the work queue, in every process (the broker's).
        delayed_by_bucket: ``delayed`` per retry queue, by its delay in milliseconds.
    """

    seen_here: ClassVar[frozenset[str]] = frozenset({"delayed", "in_flight"})

    consumers: int = 0
    delayed_by_bucket: Mapping[int, int] = attrs.field(factory=lambda: MappingProxyType({}))


class RabbitMQBackend(DeadLetterShortcuts):
    """Publish to and consume from RabbitMQ, with retry queues and a dead-letter queue.

    Args:
        url: ``amqp://user:password@host:port/vhost`` (or ``amqps://`` for TLS).
        codec: Encodes payloads and decodes bodies (JSON, 1 MiB limit, by default).
        topology: Queue type, priorities and the names of the retry and dead-letter
            queues.
        persistent: Publish persistent messages (the default).

    Example:
        ```python
        backend = RabbitMQBackend("amqp://guest:guest@localhost/")
        await backend.publish("emails", {"to": "ada@example.com"})
        ```

    Connections are opened on first use. In a `WorkerApp`, a connection actor owns the
    consumer's connection (see `connection_actor`); when the connection or channel is
    lost, the actors that depend on it crash and their supervisor rebuilds them with
    backoff.
    """

    name = "rabbitmq"

    def __init__(
        self,
        url: str,
        *,
        codec: Codec | None = None,
        topology: Topology | None = None,
        persistent: bool = True,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("amqp://", "amqps://")):
            raise ConfigurationError(
                f"RabbitMQ URL must start with amqp:// or amqps://, got {redact(str(url))!r}"
            )
        self.url = url
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self.topology = topology if topology is not None else Topology()
        self.persistent = persistent
        self._publisher: Any = None  # (connection, channel)
        self._declared: set[str] = set()
        self._declared_buckets: set[tuple[str, int]] = set()
        self._buckets: dict[str, set[int]] = {}  # every bucket used, kept when reconnecting
        self._sources: weakref.WeakSet[RabbitMQSource] = weakref.WeakSet()
        self._lock = asyncio.Lock()
        self._generations = itertools.count(1)
        self._counts = ConnectionCounts()
        self._copies_failed = 0

    def statistics(self) -> RabbitMQStatistics:
        """Return connection state and counts (see `RabbitMQStatistics`)."""
        return RabbitMQStatistics(
            **attrs.asdict(self._counts.snapshot()), copies_failed=self._copies_failed
        )

    async def connect(self) -> aio_pika.abc.AbstractConnection:
        """Open a new connection; a wrong URL or credentials fail with a clear error."""
        try:
            connection = await aio_pika.connect(self.url, timeout=10)
        except Exception as exc:
            wrong_password = "Authentication" in type(exc).__name__
            raise self._counts.refused(
                "RabbitMQ",
                self.url,
                exc,
                wrong_password=wrong_password,
                retryable=unreachable(exc),
            ) from None
        self._counts.connected()
        return connection

    async def _channel(self) -> Any:
        async with self._lock:
            if self._publisher is None or self._publisher[1].is_closed:
                await self._drop_publisher()
                connection = await self.connect()
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                self._publisher = (connection, channel)
            return self._publisher[1]

    async def declare(self, queue: str, channel: Any = None) -> None:
        """Declare ``queue``, its retry exchange and its dead-letter queue (idempotent).

        A classic work queue that already exists without ``x-max-priority`` (declared
        before priorities, or by another client) is used as it is, without
        priorities, and a warning says so once (``rabbitmq.no_priorities``).

        Raises:
            BackendError: An existing queue was declared with other arguments.
        """
        await self._declare(queue, channel)

    async def _declare(self, queue: str, channel: Any = None) -> Any:
        """Declare ``queue``'s topology once; return a channel that is still open."""
        if not isinstance(queue, str) or not queue:
            raise ConfigurationError(f"queue name must be a non-empty string, got {queue!r}")
        if queue in self._declared:
            return channel
        channel = channel or await self._channel()
        topology = self.topology
        try:
            await channel.declare_queue(
                topology.dlq(queue), durable=True, arguments={"x-queue-type": topology.queue_type}
            )
            try:
                await channel.declare_queue(
                    queue, durable=True, arguments=topology.arguments(queue)
                )
            except aio_pika.exceptions.ChannelPreconditionFailed as exc:
                if topology.max_priority is None or "x-max-priority" not in str(exc):
                    raise
                # The broker closed the channel: declare again, as the queue is, on a
                # new one. Priorities need a new queue; nothing is lost meanwhile.
                channel = await self._channel()
                await channel.declare_queue(
                    queue, durable=True, arguments=topology.without_priorities().arguments(queue)
                )
                _logger.warning(
                    "rabbitmq.no_priorities",
                    queue=queue,
                    hint="the queue exists without x-max-priority: priorities are not "
                    "honoured on it; to have them, move its messages to a queue declared "
                    "anew, or pass Topology(max_priority=None) to silence this",
                )
            await channel.declare_exchange(
                topology.retry_exchange_of(queue), aio_pika.ExchangeType.DIRECT, durable=True
            )
        except aio_pika.exceptions.ChannelPreconditionFailed as exc:
            raise BackendError(
                f"queue {queue!r} or its retry/dead-letter queues exist with other arguments "
                f"({exc}); delete them or match the topology ({topology})"
            ) from None
        self._declared.add(queue)
        return channel

    async def _retry_target(self, channel: Any, queue: str, delay: float) -> str:
        """Declare (once) the bucket queue for ``delay``; return its routing key."""
        ms = delay_bucket(delay)
        key = str(ms)
        if (queue, ms) in self._declared_buckets:
            return key
        name = self.topology.retry_queue.format(q=queue, ms=ms)
        bucket = await channel.declare_queue(
            name,
            durable=True,
            arguments={
                "x-queue-type": self.topology.queue_type,
                "x-message-ttl": ms,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": queue,
            },
        )
        await bucket.bind(self.topology.retry_exchange_of(queue), key)  # declared with the queue
        self._declared_buckets.add((queue, ms))
        self._buckets.setdefault(queue, set()).add(ms)
        return key

    async def publish(
        self,
        queue: str,
        payload: Any,
        *,
        properties: MessageProperties | None = None,
        delay: float = 0.0,
    ) -> str:
        """Encode and publish ``payload`` with confirms; return its message id.

        Raises:
            EncodeError: The codec cannot encode the payload; nothing was published.
            ConfigurationError: A bad queue name, delay or priority.
            BackendError: The broker refused or returned the message.
        """
        return await encode_and_publish(self, queue, payload, properties, delay)

    async def publish_raw(
        self,
        queue: str,
        body: bytes,
        *,
        properties: MessageProperties | None = None,
        delay: float = 0.0,
        message_id: str | None = None,
    ) -> str:
        """Publish an already encoded ``body`` as it is, waiting for the confirm."""
        require_seconds("delay", delay)
        message_id = message_id or new_id()
        message = to_amqp(
            properties or default_properties(self.codec),
            body,
            message_id,
            now=time.time(),
            persistent=self.persistent,
        )
        await self._with_channel(queue, lambda channel: self._send(channel, queue, message, delay))
        return message_id

    async def publish_many(
        self,
        queue: str,
        messages: Sequence[tuple[Any, MessageProperties | None]],
        *,
        delay: float = 0.0,
    ) -> list[str | Exception]:
        """Publish ``(payload, properties)`` pairs in order; each one's id or error.

        They go out on the publishing channel one after the other without waiting for
        each other's confirms (`BatchPublisher`), `PUBLISH_CHUNK` at a time. The
        channel is open and the queue (and the delay's retry queue) declared first;
        then each publish, started in the order given, takes the channel's lock in that
        order, and RabbitMQ keeps a channel's order within a queue. Should the
        connection be lost midway, those that failed are sent again as `publish`
        sends one (a message may then go out twice, and in another order).

        Raises:
            ConfigurationError: A bad queue name or delay.
            BackendError: RabbitMQ cannot be reached, or refused the queue's
                declaration: nothing was published.
        """
        require_seconds("delay", delay)

        async def declared(channel: Any) -> None:
            if delay > 0:
                await self._retry_target(channel, queue, delay)

        await self._with_channel(queue, declared)
        answers: list[str | Exception] = []
        for first in range(0, len(messages), PUBLISH_CHUNK):
            chunk = messages[first : first + PUBLISH_CHUNK]
            answers += await publish_in_order(self, queue, chunk, delay=delay)
        return answers

    async def _with_channel(self, queue: str, use: Callable[[Any], Awaitable[None]]) -> None:
        """``use`` the publishing channel, ``queue``'s topology declared on it.

        A connection lost since the last use: once more on a new one.
        """
        for attempt in (1, 2):
            channel = await self._channel()
            try:
                channel = await self._declare(queue, channel)
                await use(channel)
            except CONNECTION_ERRORS as exc:
                await self._drop_publisher(channel)
                if attempt == 2:
                    raise BackendError(f"publishing to {queue!r} failed: {exc}") from None
            else:
                return

    async def _drop_publisher(self, failed: Any = None) -> None:
        """Close the publishing connection: the one whose channel ``failed`` (if given).

        Concurrent publishes that failed together drop it once, not the new one that
        the first of them opened to try again.
        """
        if failed is not None and (self._publisher is None or self._publisher[1] is not failed):
            return
        if self._publisher is not None:
            connection, self._publisher = self._publisher[0], None
            self._declared.clear()
            self._declared_buckets.clear()
            with contextlib.suppress(Exception):
                await connection.close()

    async def _send(
        self, channel: Any, queue: str, message: Any, delay: float, *, dead_letter: bool = False
    ) -> None:
        """Publish ``message`` for ``queue`` (mandatory, confirmed) and check the result.

        Now, after ``delay`` (through its retry exchange), or to its dead-letter queue.

        Raises:
            BackendError: RabbitMQ returned the message (nothing bound: a queue or
                binding deleted behind our back), nacked it, or the exchange is gone.
                A return or a missing exchange also forgets that ``queue``'s topology
                was declared, so that the next use declares it again.
        """
        topology = self.topology
        if dead_letter:
            target = topology.dlq(queue)
        elif delay > 0:
            target = topology.retry_queue.format(q=queue, ms=delay_bucket(delay))
        else:
            target = queue
        try:
            if delay > 0 and not dead_letter:
                key = await self._retry_target(channel, queue, delay)
                exchange = await channel.get_exchange(
                    topology.retry_exchange_of(queue), ensure=False
                )
                await exchange.publish(message, routing_key=key, mandatory=True)
            else:
                await channel.default_exchange.publish(message, routing_key=target, mandatory=True)
        except aiormq.exceptions.PublishError as exc:
            self._forget(queue)
            frame = exc.frame
            why = frame.reply_text if isinstance(frame, Basic.Return) else str(exc)
            raise BackendError(
                f"RabbitMQ did not take the message for {target!r}: returned unroutable "
                f"({why}); was the queue deleted? It is declared again on next use"
            ) from None
        except aiormq.exceptions.DeliveryError as exc:
            raise BackendError(
                f"RabbitMQ did not take the message for {target!r}: nacked ({exc})"
            ) from None
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            self._forget(queue)
            raise BackendError(
                f"RabbitMQ did not take the message for {target!r}: {exc}; was the "
                "exchange deleted? It is declared again on next use"
            ) from None

    def _forget(self, queue: str) -> None:
        """Forget that ``queue``'s topology was declared: the next use declares it again."""
        self._declared.discard(queue)
        self._declared_buckets -= {b for b in self._declared_buckets if b[0] == queue}

    def connection_actor(self) -> Callable[[], Actor[Any]]:
        """A factory of the actor that owns a connection for this backend's consumers.

        `WorkerApp` supervises it with the consumer, rest_for_one: when the connection
        is lost, the actor crashes and the consumer is rebuilt on a new connection.
        """
        return functools.partial(BrokerConnection, RabbitMQLink(self))

    def intake_actors(self, queue: str) -> list[tuple[str, Callable[[], Actor[Any]]]]:
        """The actor that applies a consumer's settlements, by name (``settler``).

        `WorkerApp` puts it after the consumer in its rest_for_one intake group: a
        source opened on a shared connection leaves its settling to it.
        """
        del queue
        return [("settler", keeper(RabbitMQSource.settle_forever, RabbitMQSource))]

    async def open_source(
        self, queue: str, *, prefetch: int, connection: Any = None
    ) -> RabbitMQSource:
        """Start consuming ``queue`` (declaring it) with at most ``prefetch`` unsettled.

        On a channel of ``connection`` if given (it stays open when the source closes;
        the ``settler`` of `intake_actors` applies its settlements), else on a
        connection of the source's own (it applies them itself).
        """
        require_int("prefetch", prefetch, 1)
        await self.declare(queue)
        source = RabbitMQSource(self, queue, prefetch, next(self._generations), connection)
        try:
            await source.start()
        except BaseException:  # no channel or connection left open behind a failed start
            await source.close()
            raise
        self._counts.started()
        self._sources.add(source)
        _logger.info("rabbitmq.consuming", queue=queue, consumer_tag=source.consumer_tag)
        return source

    def source_ended(self, *, lost: bool) -> None:
        """One of its sources stopped consuming, closed or ``lost``."""
        self._counts.ended(lost=lost)

    def copy_failed(self) -> None:
        """A source's retry, defer or dead-letter copy was not taken (see statistics)."""
        self._copies_failed += 1

    # -- depth ------------------------------------------------------------------------

    async def queue_statistics(self, queue: str) -> RabbitMQQueueStatistics:
        """Count ``queue``: ready and dead from the broker, in flight and delayed as seen here.

        Passive declares of the work queue, its dead-letter queue and the retry queues
        this backend knows, on a short-lived channel of the publishing connection (one
        connection per backend, opened on first use and kept: a scrape opens none). A
        queue that does not exist counts zero. See `RabbitMQQueueStatistics`.

        Raises:
            ConfigurationError: ``queue`` is not a non-empty string.
            BackendError: RabbitMQ cannot be reached.
        """
        if not isinstance(queue, str) or not queue:
            raise ConfigurationError(f"queue name must be a non-empty string, got {queue!r}")
        topology = self.topology
        buckets = sorted(self._buckets.get(queue, ()))
        names = [queue, topology.dlq(queue)]
        names += [topology.retry_queue.format(q=queue, ms=ms) for ms in buckets]
        try:
            counts = await self._count(names)
        except CONNECTION_ERRORS as exc:
            await self._drop_publisher()
            raise BackendError(f"counting {queue!r} failed: {exc}") from None
        (ready, consumers), (dead, _) = counts[0], counts[1]
        delayed = {ms: n for ms, (n, _) in zip(buckets, counts[2:], strict=True)}
        in_flight = sum(source.held for source in list(self._sources) if source.queue == queue)
        return RabbitMQQueueStatistics(
            ready,
            sum(delayed.values()),
            in_flight,
            dead,
            consumers=consumers,
            delayed_by_bucket=MappingProxyType(delayed),
        )

    async def queue_depth(self, queue: str) -> RabbitMQQueueStatistics:
        """`queue_statistics`, as every backend answers it (the contract's `Backend`)."""
        return await self.queue_statistics(queue)

    async def _count(self, names: list[str]) -> list[tuple[int, int]]:
        """(messages ready, consumers) of each queue in ``names``; (0, 0) if it is missing."""
        await self._channel()  # the publishing connection: opened once, then reused
        connection = self._publisher[0]
        out: list[tuple[int, int]] = []
        channel: Any = None
        try:
            for name in names:
                if channel is None:
                    channel = await connection.channel(publisher_confirms=False)
                raw = await channel.get_underlay_channel()
                try:
                    declared = await raw.queue_declare(name, passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    out.append((0, 0))  # no such queue: the broker closed the channel
                    channel = None
                    continue
                out.append((int(declared.message_count or 0), int(declared.consumer_count or 0)))
        finally:
            if channel is not None and not channel.is_closed:
                with contextlib.suppress(Exception):
                    await channel.close()
        return out

    # -- dead letters -----------------------------------------------------------------

    def dead_letter_queue(self, queue: str) -> RabbitMQDeadLetters:
        """The dead-letter queue of ``queue``: list, count, replay, purge."""
        return RabbitMQDeadLetters(self, queue)

    async def close(self) -> None:
        """Close the publishing connection (sources close their own)."""
        await self._drop_publisher()
