"""The RabbitMQ backend (aio-pika): manual acks, delayed retry queues, a dead-letter queue.

Topology, declared idempotently per queue ``q`` (names configurable):

- ``q``: the work queue (durable; classic or quorum). Expired messages dead-letter
  to ``q-dlq`` through RabbitMQ's own dead-lettering.
- ``q-retry_exchange``: a direct exchange; one queue ``q-retry-<ms>`` per delay bucket
  is bound to it. A bucket queue has a message TTL of its delay and dead-letters back
  to ``q``, so a message due in 1 s never waits behind one due in 60 s.
- ``q-dlq``: dead letters, with the original body and properties untouched and the
  headers ``x-original-routing-key``, ``x-failure-reason``, ``x-final-attempt`` and
  ``x-failed-at`` added.

Attempts: ``x-retry-attempt`` counts the attempts that went through the retry path;
a redelivery (the broker's redelivered flag, or a quorum queue's delivery count) adds
to it, so max retries holds even when workers die mid-message.

RabbitMQ runs on asyncio only (aio-pika): use this backend under asyncio.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import functools
import itertools
import math
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import attrs
import structlog

from foxactors._ack import AckHandle, Decision
from foxactors._actor import Actor
from foxactors._codec import Codec, JsonCodec
from foxactors._errors import BackendError, ConfigurationError, DecodeError
from foxactors._lifecycle import Exit
from foxactors._message import Delivery, Message, MessageProperties
from foxactors._validate import require_int, require_seconds

from ._base import (
    CONNECTION,
    ConnectionCounts,
    ConnectionStatistics,
    DeadLetter,
    redact,
)
from ._source import BrokerSource, Settlement

try:
    import aio_pika
    import aiormq
    from pamqp.commands import Basic
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the RabbitMQ backend needs aio-pika: pip install 'foxactors[rabbitmq]' "
        "(from a clone: pip install '.[rabbitmq]')"
    ) from exc

_logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("foxactors")

ATTEMPT_HEADER = "x-retry-attempt"
_DLQ_HEADERS = ("x-original-routing-key", "x-failure-reason", "x-final-attempt", "x-failed-at")
_REPLAY_DROPS = frozenset({*_DLQ_HEADERS, ATTEMPT_HEADER, "x-death", "x-delivery-count"})
_CLUSTER_HEADER = "x-cluster-id"  # AMQP 0-9-1 reserves cluster-id; RabbitMQ refuses it


_CONNECTION_ERRORS = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
)
# The broker answered a connect, and said no: trying again would not help.
_REFUSALS = (
    aiormq.exceptions.AuthenticationError,
    aiormq.exceptions.ProbableAuthenticationError,
    aiormq.exceptions.ConnectionNotAllowed,  # no access to the vhost
    aiormq.exceptions.IncompatibleProtocolError,  # not an AMQP 0-9-1 server
    ssl.SSLCertVerificationError,
)


def _unreachable(exc: BaseException) -> bool:
    """Whether a failed connect is worth trying again (the broker was not reached).

    Network errors and timeouts are; refusals are not, nor anything outside the
    network (an unknown vhost shows as a protocol error, for instance).
    """
    return isinstance(exc, OSError | TimeoutError) and not isinstance(exc, _REFUSALS)


def delay_bucket(delay: float) -> int:
    """Round ``delay`` seconds up to a bucket in milliseconds (two significant digits).

    Few buckets (at most 90 per power of ten) keep the number of retry queues small
    while no message waits more than 10% longer than asked.
    """
    ms = max(1, math.ceil(delay * 1000))
    scale = 10 ** max(0, len(str(ms)) - 2)
    return int(math.ceil(ms / scale) * scale)


@attrs.frozen
class Topology:
    """Names and shape of the queues of one work queue.

    Attributes:
        queue_type: ``"classic"`` or ``"quorum"``.
        max_priority: For classic queues, the highest priority honoured (None: none).
        retry_exchange: Format of the retry exchange's name (``{q}``: the queue).
        retry_queue: Format of a retry bucket queue's name (``{ms}``: its delay).
        dead_letter_queue: Format of the dead-letter queue's name.
    """

    queue_type: str = attrs.field(default="classic")
    max_priority: int | None = None
    retry_exchange: str = "{q}-retry_exchange"
    retry_queue: str = "{q}-retry-{ms}"
    dead_letter_queue: str = "{q}-dlq"

    @queue_type.validator
    def _check_type(self, _: Any, value: str) -> None:
        if value not in ("classic", "quorum"):
            raise ConfigurationError(f"queue_type must be 'classic' or 'quorum', got {value!r}")

    def __attrs_post_init__(self) -> None:
        if self.max_priority is not None:
            require_int("max_priority", self.max_priority, 1)
            if self.queue_type == "quorum":
                raise ConfigurationError("quorum queues have no priorities: drop max_priority")

    def dlq(self, queue: str) -> str:
        """The dead-letter queue of ``queue``."""
        return self.dead_letter_queue.format(q=queue)

    def retry_exchange_of(self, queue: str) -> str:
        """The retry exchange of ``queue``."""
        return self.retry_exchange.format(q=queue)

    def arguments(self, queue: str) -> dict[str, Any]:
        """The declaration arguments of the work queue ``queue``."""
        args: dict[str, Any] = {
            "x-queue-type": self.queue_type,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dlq(queue),
        }
        if self.max_priority is not None:
            args["x-max-priority"] = self.max_priority
        return args


def to_amqp(
    properties: MessageProperties, body: bytes, message_id: str, *, persistent: bool = True
) -> aio_pika.Message:
    """Build an aio-pika message from broker-neutral properties."""
    headers = dict(properties.headers)
    if properties.cluster_id is not None:
        headers[_CLUSTER_HEADER] = properties.cluster_id
    return aio_pika.Message(
        body,
        headers=headers,
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        delivery_mode=(
            aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
        ),
        priority=properties.priority,
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        expiration=properties.expiration,
        message_id=message_id,
        timestamp=datetime.datetime.now(datetime.UTC),
        type=properties.message_type,
        user_id=properties.user_id,
        app_id=properties.app_id,
    )


def from_amqp(props: Any) -> MessageProperties:
    """Map AMQP basic properties (pamqp) to `MessageProperties`."""
    headers = dict(props.headers or {})
    cluster_id = headers.pop(_CLUSTER_HEADER, None)
    expiration = props.expiration
    return MessageProperties(
        content_type=props.content_type or "application/octet-stream",
        content_encoding=props.content_encoding,
        priority=props.priority,
        expiration=float(expiration) / 1000 if expiration else None,
        message_type=props.message_type,
        user_id=props.user_id,
        app_id=props.app_id,
        cluster_id=cluster_id if isinstance(cluster_id, str) else None,
        reply_to=props.reply_to,
        correlation_id=props.correlation_id,
        headers=headers,
    )


@attrs.frozen
class RabbitMQStatistics(ConnectionStatistics):
    """`ConnectionStatistics` plus the copies the broker did not take.

    Attributes:
        copies_failed: Retry, defer and dead-letter copies that RabbitMQ returned
            (unroutable), nacked, or that failed with their channel; their originals
            were left unacknowledged and came back.
    """

    copies_failed: int = 0


class RabbitMQBackend:
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
                retryable=_unreachable(exc),
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

        Raises:
            BackendError: An existing queue was declared with other arguments.
        """
        if not isinstance(queue, str) or not queue:
            raise ConfigurationError(f"queue name must be a non-empty string, got {queue!r}")
        if queue in self._declared:
            return
        channel = channel or await self._channel()
        topology = self.topology
        try:
            await channel.declare_queue(
                topology.dlq(queue), durable=True, arguments={"x-queue-type": topology.queue_type}
            )
            await channel.declare_queue(queue, durable=True, arguments=topology.arguments(queue))
            await channel.declare_exchange(
                topology.retry_exchange_of(queue), aio_pika.ExchangeType.DIRECT, durable=True
            )
        except aio_pika.exceptions.ChannelPreconditionFailed as exc:
            raise BackendError(
                f"queue {queue!r} or its retry/dead-letter queues exist with other arguments "
                f"({exc}); delete them or match the topology ({topology})"
            ) from None
        self._declared.add(queue)

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
            ConfigurationError: A bad queue name or delay.
            BackendError: The broker refused or returned the message.
        """
        return await self.publish_raw(
            queue, self.codec.encode(payload), properties=properties, delay=delay
        )

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
        message_id = message_id or uuid.uuid4().hex
        message = to_amqp(
            properties or MessageProperties(), body, message_id, persistent=self.persistent
        )
        for attempt in (1, 2):  # a connection lost since the last publish: reconnect once
            channel = await self._channel()
            try:
                await self.declare(queue, channel)
                await self._send(channel, queue, message, delay)
            except _CONNECTION_ERRORS as exc:
                await self._drop_publisher()
                if attempt == 2:
                    raise BackendError(f"publishing to {queue!r} failed: {exc}") from None
            else:
                break
        return message_id

    async def _drop_publisher(self) -> None:
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
        return functools.partial(RabbitMQConnection, self)

    async def open_source(
        self, queue: str, *, prefetch: int, connection: Any = None
    ) -> RabbitMQSource:
        """Start consuming ``queue`` (declaring it) with at most ``prefetch`` unsettled.

        On a channel of ``connection`` if given (it stays open when the source closes),
        else on a connection of the source's own.
        """
        require_int("prefetch", prefetch, 1)
        await self.declare(queue)
        source = RabbitMQSource(self, queue, prefetch, next(self._generations), connection)
        await source.start()
        self._counts.started()
        _logger.info("rabbitmq.consuming", queue=queue, consumer_tag=source.consumer_tag)
        return source

    def _source_ended(self, *, lost: bool) -> None:
        self._counts.ended(lost=lost)

    # -- dead letters -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _dead_letter_queue(self, queue: str) -> AsyncIterator[tuple[Any, str]]:
        """A channel of its own (aiormq) and the name of ``queue``'s dead-letter queue."""
        connection = await self.connect()
        try:
            channel = await connection.channel()
            await self.declare(queue, channel)
            yield await channel.get_underlay_channel(), self.topology.dlq(queue)
        finally:
            await connection.close()

    async def dead_letters(self, queue: str, *, limit: int = 1000) -> list[DeadLetter]:
        """Return up to ``limit`` dead letters of ``queue``, oldest first, leaving them."""
        async with self._dead_letter_queue(queue) as (raw, dlq):
            return [_dead_letter(queue, m) for m in await _get_many(raw, dlq, limit)]
            # closing the channel returns them all, in order

    async def count_dead_letters(self, queue: str) -> int:
        """Return how many messages wait in ``queue``'s dead-letter queue."""
        async with self._dead_letter_queue(queue) as (raw, dlq):
            declared = await raw.queue_declare(dlq, passive=True)
            return int(declared.message_count or 0)

    async def replay_dead_letters(self, queue: str, *, limit: int | None = None) -> int:
        """Move dead letters back to ``queue`` (headers kept, attempts start over).

        Each one is published (and confirmed) before it leaves the dead-letter queue,
        so a crash in between duplicates a dead letter, never loses it.

        Raises:
            BackendError: RabbitMQ returned or refused a republished letter (say,
                ``queue`` was deleted): that letter and those after it stay in the
                dead-letter queue; ``queue`` is declared again on the next try.
        """
        moved = 0
        async with self._dead_letter_queue(queue) as (raw, dlq):
            for message in await _get_many(raw, dlq, limit):
                letter = _dead_letter(queue, message)
                headers = {
                    k: v for k, v in letter.properties.headers.items() if k not in _REPLAY_DROPS
                }
                await self.publish_raw(
                    queue,
                    letter.body,
                    properties=attrs.evolve(letter.properties, headers=headers),
                    message_id=letter.id,
                )
                await raw.basic_ack(message.delivery.delivery_tag)
                moved += 1
        return moved

    async def purge_dead_letters(self, queue: str) -> int:
        """Delete the dead letters of ``queue``; return how many there were."""
        async with self._dead_letter_queue(queue) as (raw, dlq):
            purged = await raw.queue_purge(dlq)
            return int(purged.message_count or 0)

    async def close(self) -> None:
        """Close the publishing connection (sources close their own)."""
        await self._drop_publisher()


async def _get_many(raw: Any, queue: str, limit: int | None) -> list[Any]:
    out: list[Any] = []
    while limit is None or len(out) < limit:
        message = await raw.basic_get(queue, no_ack=False)
        if isinstance(message.delivery, Basic.GetEmpty):
            break
        out.append(message)
    return out


def _dead_letter(queue: str, message: Any) -> DeadLetter:
    props = message.header.properties
    headers = dict(props.headers or {})
    reason = headers.get("x-failure-reason")
    if reason is None:  # dead-lettered by the broker itself (e.g. expired)
        deaths = headers.get("x-death") or [{}]
        reason = f"{deaths[0].get('reason', 'unknown')} (by the broker)"
    failed_at = headers.get("x-failed-at")
    try:
        failed = datetime.datetime.fromisoformat(str(failed_at)).timestamp()
    except ValueError:
        failed = math.nan
    attempts = headers.get("x-final-attempt")
    return DeadLetter(
        props.message_id or "",
        queue,
        message.body,
        from_amqp(props),
        str(reason),
        attempts if isinstance(attempts, int) else 0,
        failed,
    )


_COPIED = (Decision.RETRY, Decision.DEFER, Decision.DEAD_LETTER)


def _waves(copies: list[Settlement]) -> list[list[Settlement]]:
    """Split ``copies`` into waves in which no two share a message id.

    aiormq matches a returned message to its publish by message id: with two copies
    of one id in flight at once, the return of one could fail the other's publish
    and let the returned one resolve as delivered. (It gives a message without an id
    a random one, so those never clash.)
    """
    waves: list[list[Settlement]] = []
    seen: collections.Counter[str] = collections.Counter()
    for entry in copies:
        message_id = entry[1].raw.header.properties.message_id
        n = 0
        if message_id:
            n, seen[message_id] = seen[message_id], seen[message_id] + 1
        if n == len(waves):
            waves.append([])
        waves[n].append(entry)
    return waves


@attrs.define(slots=True)
class _Held:
    raw: Any  # aiormq DeliveredMessage
    attempt: int


class RabbitMQSource(BrokerSource[_Held]):
    """One consumer of one RabbitMQ queue, on a channel of its own.

    Settlements are applied by a flusher task, in batches: retry, defer and
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
        self.consumer_tag = f"foxactors-{queue}-{generation}-{uuid.uuid4().hex[:8]}"
        self._codec = backend.codec
        self._outstanding: collections.deque[int] = collections.deque()
        self._done: set[int] = set()
        self._arrived = asyncio.Event()
        self._connection: Any = connection
        self._owns_connection = connection is None
        self._channel: Any = None
        self._raw: Any = None

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

    def _on_message(self, raw: Any) -> Any:
        self._buffer.append(raw)
        self._arrived.set()
        return None

    def _on_close(self, _sender: Any, exc: BaseException | None) -> None:
        if not self._closed:
            why = _why(exc, "closed by the broker")
            _logger.error("rabbitmq.channel_lost", queue=self.queue, error=why)
            self._fail(f"lost the RabbitMQ channel of {self.queue!r}: {why}")

    def _wake(self) -> None:
        self._arrived.set()

    async def _fetch(self) -> None:
        self._arrived.clear()
        await self._arrived.wait()

    def _deliver(self, item: Any, now: float) -> Delivery | None:
        raw = item
        tag: int = raw.delivery.delivery_tag
        props = raw.header.properties
        headers = props.headers or {}
        prior = headers.get(ATTEMPT_HEADER, 0)
        bad_attempt = type(prior) is not int or prior < 0
        if bad_attempt:
            prior = 0
        count = headers.get("x-delivery-count")  # quorum queues count redeliveries
        redeliveries = count if type(count) is int else int(raw.delivery.redelivered)
        held = _Held(raw, prior + 1 + redeliveries)
        self._unsettled[tag] = held
        self._outstanding.append(tag)
        handle = AckHandle(self, tag, self.generation)
        if bad_attempt:
            handle.dead_letter(
                f"bad header: {ATTEMPT_HEADER}={headers[ATTEMPT_HEADER]!r} is not a count"
            )
            return None
        if count is None and raw.delivery.redelivered:
            # A classic queue only says "redelivered", not how often: make this
            # redelivery count durably (a copy with the attempt in its header, then
            # ack), so that max retries holds even if every attempt kills the worker.
            handle.defer(0)
            return None
        content_type = props.content_type
        if content_type and content_type != self._codec.content_type:
            handle.dead_letter(
                f"unknown content type {content_type!r}: this consumer decodes "
                f"{self._codec.content_type!r}"
            )
            return None
        try:
            payload = self._codec.decode(raw.body)
        except DecodeError as exc:
            _logger.warning("message.undecodable", queue=self.queue, tag=tag, error=str(exc))
            handle.dead_letter(f"undecodable: {exc}")
            return None
        try:
            properties = from_amqp(props)
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
        for wave in _waves([entry for entry in batch if entry[2] in _COPIED]):
            results = await asyncio.gather(
                *(self._copy(*entry) for entry in wave), return_exceptions=True
            )
            for (tag, _, decision, _, _), result in zip(wave, results, strict=True):
                if isinstance(result, BaseException):
                    failed[tag] = (decision, result)
        for decision, error in failed.values():
            self._backend._copies_failed += 1
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
        headers = {k: v for k, v in (props.headers or {}).items() if k != "x-delivery-count"}
        if props.expiration:
            headers["x-original-expiration"] = props.expiration
        if decision is Decision.DEAD_LETTER:
            headers.update(
                {
                    "x-original-routing-key": raw.delivery.routing_key or self.queue,
                    "x-failure-reason": reason,
                    "x-final-attempt": held.attempt,
                    "x-failed-at": datetime.datetime.now(datetime.UTC).isoformat(),
                }
            )
        else:
            headers[ATTEMPT_HEADER] = (
                held.attempt if decision is Decision.RETRY else held.attempt - 1
            )
        copy = aio_pika.Message(
            raw.body,
            headers=headers,
            content_type=props.content_type,
            content_encoding=props.content_encoding,
            delivery_mode=props.delivery_mode,
            priority=props.priority,
            correlation_id=props.correlation_id,
            reply_to=props.reply_to,
            message_id=props.message_id,
            timestamp=props.timestamp,
            type=props.message_type,
            user_id=props.user_id,
            app_id=props.app_id,
        )
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


class RabbitMQConnection(Actor[Any]):
    """Owns one connection for the consumers under the same supervisor.

    Answers `CONNECTION` with it; when the broker closes it or the network drops,
    this actor crashes, so its rest_for_one supervisor rebuilds it and then the
    consumers that depended on it: never a connection back while consumers stay gone.
    """

    def __init__(self, backend: RabbitMQBackend) -> None:
        self._backend = backend
        self._stopping = False

    async def on_start(self) -> None:
        """Connect (a wrong URL or password fails the start, with a clear error)."""
        self.connection = await self._backend.connect()
        self._lost = asyncio.Event()
        self._error: BaseException | None = None
        self.connection.close_callbacks.add(self._on_close)
        self.start_task(self._watch)

    def _on_close(self, _sender: Any, exc: BaseException | None) -> None:
        if not self._stopping:
            self._error = exc
            self._lost.set()

    async def _watch(self) -> None:
        await self._lost.wait()
        raise BackendError(f"lost the RabbitMQ connection: {_why(self._error, 'closed')}")

    async def receive(self, message: Any) -> Any:
        """Answer `CONNECTION` with the live connection."""
        if message == CONNECTION:
            if self._lost.is_set():
                raise BackendError("the RabbitMQ connection is lost; reconnecting")
            return self.connection
        return None

    async def on_stop(self, exit: Exit) -> None:
        """Close the connection."""
        self._stopping = True
        with contextlib.suppress(Exception):
            await self.connection.close()


def _why(error: BaseException | None, default: str) -> str:
    """Why a connection or channel closed: the error's message, else its type."""
    if error is None:
        return default
    return str(error) or type(error).__name__
