"""The Redis Streams backend (redis-py asyncio, hiredis): consumer groups and leases.

Keys of a stream ``s`` (names configurable):

- ``s``: the stream. Each entry has the body in its ``payload`` field, properties as
  fields of their own (``id``, ``type``, ``priority``, ``correlation_id``...), and any
  other field as a header. Consumers read it in a consumer group (``foxactors`` by
  default), created from the start of the stream if missing.
- ``s:delayed``: a sorted set of entries due later (retries, deferrals, delayed
  publishes), scored by due time on the Redis clock. A scheduler moves due ones
  back into the stream with a Lua script: each exactly once, even with many
  schedulers, and nothing is lost across restarts with persistence on.
- ``s:dlq``: the dead-letter stream: the original fields plus ``x-failure-reason``,
  ``x-final-attempt``, ``x-failed-at`` and ``x-original-id``.

Leases: an entry read by a consumer stays in the group's pending list until it is
settled. A consumer renews the lease of what it holds (resets its idle time); a
reclaimer moves entries idle longer than ``claim_min_idle`` (their consumer died) to
a live consumer. The attempt number is the entry's delivery count from the pending
list plus the attempts of earlier copies (``x-attempt``), so max retries holds even
when consumers die mid-message.

Every copy (retry, requeue, defer, dead letter) and the acknowledgement of its
original happen in one Lua script, and only while the settling consumer still owns
the entry; plain acks go out as one XACK per batch. Nothing is acknowledged before
its outcome.

Redis Streams run on asyncio only (redis-py): use this backend under asyncio.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import functools
import itertools
import math
import os
import socket
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import attrs
import structlog

from foxactors._ack import AckHandle, Decision
from foxactors._actor import Actor
from foxactors._codec import Codec, JsonCodec
from foxactors._errors import BackendError, ConfigurationError, DecodeError
from foxactors._lifecycle import Exit
from foxactors._message import DEFAULT_PROPERTIES, Delivery, Message, MessageProperties
from foxactors._validate import require_int, require_seconds

from . import _redis_scripts as scripts
from ._base import (
    CONNECTION,
    SOURCE,
    ConnectionCounts,
    ConnectionStatistics,
    DeadLetter,
    redact,
)
from ._source import BrokerSource, Settlement

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import AuthenticationError, RedisError, ResponseError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the Redis backend needs redis-py: pip install 'foxactors[redis]' "
        "(from a clone: pip install '.[redis]')"
    ) from exc

_logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("foxactors")

ATTEMPT_FIELD = "x-attempt"
"""Attempts made before this entry was written (retries and requeues copy the entry)."""

_PROPERTY_FIELDS = {
    "content_type": "content_type",
    "content_encoding": "content_encoding",
    "priority": "priority",
    "expiration": "expiration",
    "type": "message_type",
    "user_id": "user_id",
    "app_id": "app_id",
    "cluster_id": "cluster_id",
    "reply_to": "reply_to",
    "correlation_id": "correlation_id",
}
_DLQ_FIELDS = ("x-failure-reason", "x-final-attempt", "x-failed-at", "x-original-id")
_DLQ_KEYS = frozenset(field.encode() for field in _DLQ_FIELDS)
RESERVED_FIELDS = frozenset(
    {"payload", "id", "timestamp", ATTEMPT_FIELD, *_PROPERTY_FIELDS, *_DLQ_FIELDS}
)
"""Field names with a meaning of their own; headers may not use them."""

_NUMERIC_FIELDS: dict[str, type[int] | type[float]] = {
    ATTEMPT_FIELD: int,
    "timestamp": float,
    "priority": int,
    "expiration": float,
}
_ERRORS = (RedisError, OSError)
_TIMEOUT = 10.0  # seconds a command may take before its connection counts as dead


def _unreachable(exc: BaseException) -> bool:
    """Whether a failed connect is worth trying again (the server was not reached).

    Network errors, timeouts and a server still loading its data are; refused
    credentials and error replies (an unknown database) are not.
    """
    if isinstance(exc, AuthenticationError | ssl.SSLCertVerificationError):
        return False
    return isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError | TimeoutError)


@attrs.frozen
class Leases:
    """How long a consumer may hold entries, and how dead consumers' entries come back.

    Attributes:
        claim_min_idle: Seconds an entry may go without its consumer renewing the
            lease before another consumer takes it over (default 60). Live consumers
            renew every ``claim_min_idle / 4``, so only a dead or cut-off consumer's
            entries are taken; a message is redelivered this long after its consumer
            died, at the latest ``1.5 * claim_min_idle``.
        claim_batch: Entries claimed at most per round (default 100), and never more
            than the consumer has credit for.
        forget_after: A consumer idle this long that holds no pending entries is
            removed from the group (default one hour).
    """

    claim_min_idle: float = 60.0
    claim_batch: int = 100
    forget_after: float = 3600.0

    def __attrs_post_init__(self) -> None:
        require_seconds("claim_min_idle", self.claim_min_idle, positive=True)
        require_seconds("forget_after", self.forget_after, positive=True)
        require_int("claim_batch", self.claim_batch, 1)

    @property
    def renew_every(self) -> float:
        """How often a consumer renews the leases of what it holds."""
        return self.claim_min_idle / 4

    @property
    def reclaim_every(self) -> float:
        """How often a reclaimer looks for entries of dead consumers."""
        return self.claim_min_idle / 2


@attrs.frozen
class RedisStatistics(ConnectionStatistics):
    """`ConnectionStatistics` plus what the leases and the scheduler did.

    Attributes:
        reclaimed: Entries taken over from consumers that stopped renewing.
        trimmed: Pending entries whose stream data was trimmed or deleted, removed
            from the pending list instead of retried.
        leases_lost: Entries another consumer took while this process held them.
        forgotten: Dead consumers removed from their group.
        moved_due: Delayed entries moved back into their stream by this process.
    """

    reclaimed: int = 0
    trimmed: int = 0
    leases_lost: int = 0
    forgotten: int = 0
    moved_due: int = 0


class _BadEntry(Exception):
    """An entry that cannot become a message; its text is the dead-letter reason."""


def _text(name: str, value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise _BadEntry(f"bad field: {name} is not UTF-8 ({value[:40]!r})") from None


def _number(name: str, value: bytes, kind: type[int] | type[float]) -> Any:
    try:
        number = kind(value)
    except ValueError:
        raise _BadEntry(f"bad field: {name}={value[:40]!r} is not {kind.__name__}") from None
    if not math.isfinite(number) or number < 0:
        raise _BadEntry(f"bad field: {name}={value[:40]!r} is out of range")
    return number


def _entry_time(entry_id: bytes) -> float:
    return int(entry_id.partition(b"-")[0]) / 1000


_Parsed = tuple[bytes, str, MessageProperties, int, float]  # body, id, properties, prior, time
_PLAIN_FIELDS = frozenset({b"id", b"timestamp"})


def _plain(
    entry_id: bytes, fields: Mapping[bytes, bytes], payload_key: bytes, default: MessageProperties
) -> _Parsed | None:
    """Parse the common entries fast, or return None for the full parse.

    Common: payload, id and timestamp (what `publish` writes without properties), or
    a payload alone (what other producers often write).
    """
    body = fields.get(payload_key)
    if body is None or len(fields) > 3:
        return None
    if len(fields) == 1:
        return body, entry_id.decode(), default, 0, _entry_time(entry_id)
    message_id = fields.get(b"id")
    stamp = fields.get(b"timestamp")
    if message_id is None or stamp is None:
        return None
    try:
        published_at = float(stamp)
        text_id = message_id.decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return (body, text_id, default, 0, published_at) if published_at >= 0 else None


def _unfit(properties: MessageProperties, published_at: float, content_type: str) -> str | None:
    """Why a parsed message cannot be handled here (content type, expiry), or None."""
    if properties.content_type != content_type:
        return (
            f"unknown content type {properties.content_type!r}: this consumer decodes "
            f"{content_type!r}"
        )
    expiration = properties.expiration
    if expiration is not None and published_at + expiration < time.time():
        return f"expired: not delivered within {expiration:g} s"
    return None


def _parse(
    entry_id: bytes, fields: Mapping[bytes, bytes], payload_key: bytes, default: MessageProperties
) -> _Parsed:
    """Split an entry's fields into body, id, properties, prior attempts, publish time.

    Raises:
        _BadEntry: No payload, or a field of the wrong type.
    """
    body = fields.get(payload_key)
    if body is None:
        raise _BadEntry(f"no {payload_key.decode()!r} field")
    message_id = entry_id
    numbers: dict[str, Any] = {}
    values: dict[str, Any] = {}
    headers: dict[str, Any] = {}
    for raw_key, value in fields.items():
        if raw_key == payload_key:
            continue
        key = _text("field name", raw_key)
        kind = _NUMERIC_FIELDS.get(key)
        if kind is not None:
            numbers[key] = _number(key, value, kind)
        elif key == "id":
            message_id = value
        elif key in _PROPERTY_FIELDS:
            values[_PROPERTY_FIELDS[key]] = _text(key, value)
        else:
            try:
                headers[key] = value.decode()
            except UnicodeDecodeError:
                headers[key] = value
    prior = numbers.pop(ATTEMPT_FIELD, 0)
    published_at = numbers.pop("timestamp", None)
    values.update(numbers)  # priority, expiration
    if values or headers:
        values.setdefault("content_type", default.content_type)
        properties = MessageProperties(**values, headers=headers)
    else:
        properties = default
    published = published_at if published_at is not None else _entry_time(entry_id)
    return body, _text("id", message_id), properties, prior, published


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


class RedisBackend:
    """Publish to and consume from Redis Streams with consumer groups and leases.

    Args:
        url: ``redis://[:password@]host:port/db``, ``rediss://`` for TLS, or
            ``unix://path``.
        group: The consumer group (default ``"foxactors"``): processes in the same
            group share the stream's entries; each group gets every entry.
        consumer: This process's consumer name (default ``host-pid``, unique per
            process; a second source of the same stream in the process gets a
            suffix).
        codec: Encodes payloads and decodes bodies (JSON, 1 MiB limit, by default).
        leases: Lease and reclaim settings (see `Leases`).
        maxlen: Trim streams to about this many entries when adding (None: never).
            Trimming drops the oldest entries whether or not they were consumed or
            acknowledged: see the docs.
        block: Seconds a read waits for new entries before asking again.
        poll_interval: Seconds between looks at the delayed set.
        health_interval: Seconds between health checks of a supervised connection.
        dead_letter_stream: Name of the dead-letter stream (``{stream}``: the stream).
        delayed_set: Name of the delayed sorted set.
        payload_field: The field that holds the body.

    Example:
        ```python
        backend = RedisBackend("redis://localhost:6379/0")
        await backend.publish("emails", {"to": "ada@example.com"})
        ```
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        group: str = "foxactors",
        consumer: str | None = None,
        codec: Codec | None = None,
        leases: Leases | None = None,
        maxlen: int | None = None,
        block: float = 1.0,
        poll_interval: float = 0.25,
        health_interval: float = 1.0,
        dead_letter_stream: str = "{stream}:dlq",
        delayed_set: str = "{stream}:delayed",
        payload_field: str = "payload",
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                "Redis URL must start with redis://, rediss:// or unix://, "
                f"got {redact(str(url))!r}"
            )
        for name, value in (("group", group), ("payload_field", payload_field)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
        if consumer is not None and (not isinstance(consumer, str) or not consumer):
            raise ConfigurationError(f"consumer must be a non-empty string, got {consumer!r}")
        if maxlen is not None:
            require_int("maxlen", maxlen, 1)
        require_seconds("block", block, positive=True)
        require_seconds("poll_interval", poll_interval, positive=True)
        require_seconds("health_interval", health_interval, positive=True)
        self.url = url
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self.leases = leases if leases is not None else Leases()
        self.maxlen = maxlen
        self.block = block
        self.poll_interval = poll_interval
        self.health_interval = health_interval
        self.payload_field = payload_field
        self._dead_letter_stream = dead_letter_stream
        self._delayed_set = delayed_set
        self._publisher: aioredis.Redis | None = None
        self._default_properties = (
            DEFAULT_PROPERTIES
            if self.codec.content_type == DEFAULT_PROPERTIES.content_type
            else MessageProperties(content_type=self.codec.content_type)
        )
        self._in_use: set[tuple[str, str]] = set()
        self._generations = itertools.count(1)
        self._counts = ConnectionCounts()
        self._events: collections.Counter[str] = collections.Counter()

    # -- names, connections, statistics ------------------------------------------------

    def dead_letter_stream(self, stream: str) -> str:
        """The dead-letter stream of ``stream``."""
        return self._dead_letter_stream.format(stream=stream)

    def delayed_set(self, stream: str) -> str:
        """The sorted set of ``stream``'s entries due later."""
        return self._delayed_set.format(stream=stream)

    def statistics(self) -> RedisStatistics:
        """Return connection state and lease counts (see `RedisStatistics`)."""
        counts = self._counts.snapshot()
        events = self._events
        return RedisStatistics(
            **attrs.asdict(counts),
            reclaimed=events["reclaimed"],
            trimmed=events["trimmed"],
            leases_lost=events["leases_lost"],
            forgotten=events["forgotten"],
            moved_due=events["moved_due"],
        )

    def client(self, *, retries: int = 0) -> aioredis.Redis:
        """A new client (its own connection pool).

        Consumers' clients do not retry by themselves (``retries=0``): a failure
        surfaces at once, so that supervision, not a hidden loop, decides. The
        publishing and admin client retries a command once on a fresh connection.
        """
        # No socket_timeout: with one, redis-py (8.1, Python 3.11) can swallow a task's
        # cancellation, and a cancelled read must end. Reads and health checks carry
        # timeouts of their own instead; TCP keepalive finds dead peers.
        return aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=5,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), retries),
        )

    async def connect(self, *, retries: int = 0) -> aioredis.Redis:
        """Open a client and check it (PING): a wrong URL or password fails clearly."""
        client = self.client(retries=retries)
        try:
            with anyio.fail_after(_TIMEOUT):
                await client.ping()
        except (*_ERRORS, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                await client.aclose()
            wrong_password = isinstance(exc, AuthenticationError) or "WRONGPASS" in str(exc)
            raise self._counts.refused(
                "Redis",
                self.url,
                exc,
                wrong_password=wrong_password,
                retryable=_unreachable(exc),
            ) from None
        self._counts.connected()
        return client

    async def _client(self) -> Any:  # redis-py's reply types are too wide to narrow
        if self._publisher is None:
            self._publisher = await self.connect(retries=1)
        return self._publisher

    async def ensure_group(self, client: aioredis.Redis, stream: str) -> None:
        """Create the consumer group (and the stream) if missing, from its first entry."""
        _check_stream(stream)
        try:
            await client.xgroup_create(stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return
            if "WRONGTYPE" in str(exc):
                raise BackendError(
                    f"key {stream!r} exists and is not a stream; pick another stream name"
                ) from None
            raise

    # -- publishing ----------------------------------------------------------------------

    def fields(self, body: bytes, properties: MessageProperties, message_id: str) -> dict[str, Any]:
        """The entry fields of a message: body, id, time, properties, headers.

        Raises:
            ConfigurationError: A header uses a reserved name or has a value that
                Redis cannot hold (str, bytes, int and float can; they come back as str).
        """
        fields: dict[str, Any] = {
            self.payload_field: body,
            "id": message_id,
            "timestamp": repr(time.time()),
        }
        if properties is DEFAULT_PROPERTIES:
            return fields
        for field, name in _PROPERTY_FIELDS.items():
            value = getattr(properties, name)
            if value is None or (name == "content_type" and value == self.codec.content_type):
                continue
            fields[field] = repr(value) if isinstance(value, float) else str(value)
        for key, value in properties.headers.items():
            if key in RESERVED_FIELDS or key == self.payload_field:
                raise ConfigurationError(
                    f"header {key!r} uses a reserved field name of Redis entries; rename it"
                )
            if isinstance(value, bool) or not isinstance(value, str | bytes | int | float):
                raise ConfigurationError(
                    f"header {key!r} is {type(value).__name__}; Redis fields hold str, bytes, "
                    "int or float (encode it as a string)"
                )
            fields[key] = value
        return fields

    async def publish(
        self,
        queue: str,
        payload: Any,
        *,
        properties: MessageProperties | None = None,
        delay: float = 0.0,
    ) -> str:
        """Encode ``payload`` and add it to the stream ``queue``; return its message id.

        With ``delay``, it goes to the delayed set and enters the stream when due.

        Raises:
            EncodeError: The codec cannot encode the payload; nothing was published.
            ConfigurationError: A bad stream name, header or delay.
            BackendError: Redis cannot be reached.
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
        """Add an already encoded ``body`` as it is (see `publish`)."""
        _check_stream(queue)
        require_seconds("delay", delay)
        message_id = message_id or uuid.uuid4().hex
        fields = self.fields(body, properties or DEFAULT_PROPERTIES, message_id)
        client = await self._client()  # retries once on a fresh connection
        try:
            if delay > 0:
                flat = [uuid.uuid4().hex, *itertools.chain.from_iterable(fields.items())]
                await client.eval(
                    scripts.SCHEDULE, 1, self.delayed_set(queue), math.ceil(delay * 1000), *flat
                )
            else:
                await client.xadd(queue, fields, maxlen=self.maxlen, approximate=True)
        except _ERRORS as exc:
            raise BackendError(f"publishing to {queue!r} failed: {exc}") from None
        return message_id

    # -- consuming -----------------------------------------------------------------------

    async def open_source(
        self, queue: str, *, prefetch: int, connection: aioredis.Redis | None = None
    ) -> RedisSource:
        """Start consuming the stream ``queue`` with at most ``prefetch`` unsettled.

        With ``connection`` (a client owned by a `RedisConnection` actor), the lease
        keeper, reclaimer and scheduler run as actors beside the consumer (see
        `intake_actors`); without, on a client of its own, the source runs them itself.
        """
        require_int("prefetch", prefetch, 1)
        client = connection if connection is not None else await self.connect()
        name, n = self.consumer, 1
        while (queue, name) in self._in_use:
            n += 1
            name = f"{self.consumer}-{n}"
        self._in_use.add((queue, name))
        source = RedisSource(
            self,
            queue,
            prefetch=prefetch,
            generation=next(self._generations),
            client=client,
            consumer=name,
            owns_client=connection is None,
        )
        try:
            await source.start()
        except BaseException:
            await source.close()
            raise
        self._counts.started()
        _logger.info("redis.consuming", stream=queue, group=self.group, consumer=name)
        return source

    def _source_ended(self, *, lost: bool) -> None:
        self._counts.ended(lost=lost)

    def _release(self, queue: str, consumer: str) -> None:
        self._in_use.discard((queue, consumer))

    def _count(self, event: str, n: int = 1) -> None:
        self._events[event] += n

    def connection_actor(self) -> Callable[[], Actor[Any]]:
        """A factory of the actor that owns the client of this backend's consumers."""
        return functools.partial(RedisConnection, self)

    def intake_actors(self, queue: str) -> list[tuple[str, Callable[[], Actor[Any]]]]:
        """The actors that keep a consumer's leases, reclaim and schedule, by name.

        `WorkerApp` puts them after the consumer in its rest_for_one intake group.
        """
        del queue
        return [
            ("leases", functools.partial(StreamKeeper, keep_leases)),
            ("reclaimer", functools.partial(StreamKeeper, reclaim_forever)),
            ("scheduler", functools.partial(StreamKeeper, move_due_forever)),
        ]

    async def move_due(self, client: aioredis.Redis, stream: str) -> tuple[int, float | None]:
        """Move due delayed entries into ``stream``: (how many, seconds to the next)."""
        moved, wait = await client.eval(
            scripts.MOVE_DUE, 2, self.delayed_set(stream), stream, 1000, self.maxlen or ""
        )
        if moved:
            self._count("moved_due", int(moved))
        return int(moved), (None if int(wait) < 0 else int(wait) / 1000)

    # -- dead letters --------------------------------------------------------------------

    async def dead_letters(self, queue: str, *, limit: int = 1000) -> list[DeadLetter]:
        """Return up to ``limit`` dead letters of ``queue``, oldest first, leaving them."""
        client = await self._client()
        entries = await client.xrange(self.dead_letter_stream(queue), count=limit)
        return [self._dead_letter(queue, entry_id, fields) for entry_id, fields in entries]

    def _dead_letter(self, queue: str, entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
        extra = {
            k.decode(): v.decode(errors="replace") for k, v in fields.items() if k in _DLQ_KEYS
        }
        rest = {k: v for k, v in fields.items() if k not in _DLQ_KEYS}
        try:
            parsed = _parse(entry_id, rest, self.payload_field.encode(), self._default_properties)
            body, message_id, properties = parsed[:3]
        except _BadEntry:  # a bad entry dead-lettered as it was
            body = rest.get(self.payload_field.encode(), b"")
            message_id = extra.get("x-original-id", entry_id.decode())
            properties = DEFAULT_PROPERTIES
        try:
            failed_at = datetime.datetime.fromisoformat(extra.get("x-failed-at", "")).timestamp()
        except ValueError:
            failed_at = math.nan
        attempts = extra.get("x-final-attempt", "0")
        return DeadLetter(
            message_id,
            queue,
            body,
            properties,
            extra.get("x-failure-reason", "unknown"),
            int(attempts) if attempts.isdigit() else 0,
            failed_at,
        )

    async def count_dead_letters(self, queue: str) -> int:
        """Return how many entries the dead-letter stream of ``queue`` holds."""
        client = await self._client()
        return int(await client.xlen(self.dead_letter_stream(queue)))

    async def replay_dead_letters(self, queue: str, *, limit: int | None = None) -> int:
        """Move dead letters back to ``queue`` (attempts start over), oldest first.

        Each move is one Lua script (add to the stream, delete the dead letter): a
        dead letter is never lost nor replayed twice.
        """
        client = await self._client()
        dlq = self.dead_letter_stream(queue)
        moved = 0
        start = "-"
        while limit is None or moved < limit:
            page = await client.xrange(dlq, min=start, count=min(100, (limit or 100) - moved or 1))
            if not page:
                break
            for entry_id, _ in page:
                moved += int(
                    await client.eval(
                        scripts.REPLAY,
                        2,
                        dlq,
                        queue,
                        entry_id,
                        self.maxlen or "",
                        *_DLQ_FIELDS,
                        ATTEMPT_FIELD,
                    )
                )
            start = "(" + page[-1][0].decode()
        return moved

    async def purge_dead_letters(self, queue: str) -> int:
        """Delete the dead letters of ``queue``; return how many there were."""
        client = await self._client()
        return int(await client.xtrim(self.dead_letter_stream(queue), maxlen=0, approximate=False))

    async def close(self) -> None:
        """Close the publishing client (sources close their own)."""
        if self._publisher is not None:
            client, self._publisher = self._publisher, None
            with contextlib.suppress(Exception):
                await client.aclose()


def _check_stream(stream: str) -> None:
    if not isinstance(stream, str) or not stream:
        raise ConfigurationError(f"stream name must be a non-empty string, got {stream!r}")


_Copy = tuple[bytes, int, Decision, float, str]  # entry id, attempt, decision, delay, reason
_COPY_MODE = {
    Decision.RETRY: "later",
    Decision.DEFER: "later",
    Decision.REQUEUE: "now",
    Decision.DEAD_LETTER: "dlq",
}


class RedisSource(BrokerSource[tuple[int, float]]):  # held: (attempt, leased at)
    """One consumer (a name in the group) of one stream.

    Reads with XREADGROUP; hands out at most ``prefetch`` unsettled deliveries;
    applies settlements in batches from a flusher task (one XACK for the acks, one
    script per copy, pipelined). Closing returns everything this consumer still holds
    to the stream. Losing the connection makes `receive` raise `BackendError`; the
    entries stay pending and come back to this consumer name's next source, or to
    another consumer once their lease runs out.
    """

    def __init__(
        self,
        backend: RedisBackend,
        queue: str,
        *,
        prefetch: int,
        generation: int,
        client: aioredis.Redis,
        consumer: str,
        owns_client: bool,
    ) -> None:
        super().__init__(backend, queue, prefetch, generation)
        self.client: Any = client  # redis-py's reply types are too wide to narrow usefully
        self.consumer = consumer
        self.group = backend.group
        self.leases = backend.leases
        self._owns_client = owns_client
        self._codec = backend.codec
        self._payload_key = backend.payload_field.encode()
        self._default_properties = backend._default_properties
        self._keys = (queue, backend.delayed_set(queue), backend.dead_letter_stream(queue))
        self._tasks: list[asyncio.Task[None]] = []
        self._cursor = b"0-0"

    @property
    def backend(self) -> RedisBackend:
        """The backend this source consumes for."""
        backend: RedisBackend = self._backend
        return backend

    async def start(self) -> None:
        """Create the group if missing, take back this name's pending entries, consume."""
        try:
            await self.backend.ensure_group(self.client, self.queue)
            await self._read_own_pending()
        except _ERRORS as exc:
            raise BackendError(f"cannot consume {self.queue!r}: {exc}") from None
        self._started()
        if self._owns_client:  # no actors beside it: keep leases, reclaim, schedule here
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._maintain(job))
                for job in (keep_leases, reclaim_forever, move_due_forever)
            ]

    async def _maintain(self, job: Callable[[RedisSource], Awaitable[None]]) -> None:
        try:
            await job(self)
        except _ERRORS as exc:
            self._fail(f"{job.__name__} on {self.queue!r} failed: {exc}")

    async def _read_own_pending(self) -> None:
        """What a previous life of this consumer name read and never settled comes back."""
        start = b"0"
        while True:
            reply = await self.client.xreadgroup(
                self.group, self.consumer, {self.queue: start}, count=self.prefetch
            )
            entries = reply[0][1] if reply else []
            if not entries:
                return
            counts = {
                p["message_id"]: p["times_delivered"]
                for p in await self.client.xpending_range(
                    self.queue,
                    self.group,
                    entries[0][0],
                    entries[-1][0],
                    len(entries),
                    self.consumer,
                )
            }
            gone = [entry_id for entry_id, fields in entries if not fields]
            if gone:  # trimmed or deleted while pending: nothing left to deliver
                await self.client.xack(self.queue, self.group, *gone)
                self._trimmed(gone)
            self._buffer.extend(
                (entry_id, fields, counts.get(entry_id, 1))
                for entry_id, fields in entries
                if fields
            )
            start = entries[-1][0]

    def _trimmed(self, ids: list[bytes]) -> None:
        self.backend._count("trimmed", len(ids))
        _logger.warning("redis.trimmed_pending", stream=self.queue, ids=[i.decode() for i in ids])

    def _fail(self, reason: str) -> None:
        if self._failure is None and not self._closed:
            _logger.error("redis.connection_lost", stream=self.queue, error=reason)
        super()._fail(reason)

    async def _fetch(self) -> None:
        # Read no more than the free credit: all of it is handed out at once. An entry
        # read and kept back would count as delivered; after a cut it would come back
        # with one attempt more without having run.
        await self._read(max(1, self.prefetch - len(self._unsettled)))

    async def _read(self, count: int) -> None:
        block = self.backend.block
        try:
            with anyio.fail_after(block + _TIMEOUT):
                # the command itself: redis-py's xreadgroup() also walks every reply
                # to record streaming lag, a cost per message we do not want
                reply = await self.client.execute_command(
                    *("XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count),
                    *("BLOCK", int(block * 1000), "STREAMS", self.queue, ">"),
                )
        except (*_ERRORS, TimeoutError) as exc:
            self._fail(f"reading {self.queue!r} failed: {exc}")
            return
        if reply and not self._closed:
            self._buffer.extend((entry_id, fields, 1) for entry_id, fields in reply[0][1])

    def _deliver(self, item: tuple[bytes, dict[bytes, bytes], int], now: float) -> Delivery | None:
        entry_id, fields, count = item
        handle = AckHandle(self, entry_id, self.generation)
        parsed = _plain(entry_id, fields, self._payload_key, self._default_properties)
        if parsed is None:  # properties, headers, or something wrong: the full parse
            try:
                parsed = _parse(entry_id, fields, self._payload_key, self._default_properties)
            except _BadEntry as exc:
                self._unsettled[entry_id] = (count, now)
                handle.dead_letter(str(exc))
                return None
        body, message_id, properties, prior, published_at = parsed
        attempt = prior + count
        self._unsettled[entry_id] = (attempt, now)
        if properties is not self._default_properties:
            reason = _unfit(properties, published_at, self._codec.content_type)
            if reason is not None:
                handle.dead_letter(reason)
                return None
        try:
            payload = self._codec.decode(body)
        except DecodeError as exc:
            _logger.warning(
                "message.undecodable", stream=self.queue, id=entry_id.decode(), error=str(exc)
            )
            handle.dead_letter(f"undecodable: {exc}")
            return None
        message = Message(
            id=message_id,
            payload=payload,
            body=body,
            properties=properties,
            attempt=attempt,
            queue=self.queue,
            published_at=published_at,
        )
        return Delivery(message, handle)

    # -- settling -------------------------------------------------------------------------

    async def _apply(self, batch: list[Settlement]) -> None:
        acks = [tag for tag, _, decision, _, _ in batch if decision is Decision.ACK]
        copies: list[_Copy] = [
            (tag, held[0], decision, delay, reason)
            for tag, held, decision, delay, reason in batch
            if decision is not Decision.ACK
        ]
        if not copies:
            await self.client.xack(self.queue, self.group, *acks)
            return
        pipe = self.client.pipeline(transaction=False)
        if acks:
            pipe.xack(self.queue, self.group, *acks)
        for entry in copies:
            self._queue_copy(pipe, entry)
        results = await pipe.execute()
        self._copied(copies, results[1:] if acks else results)

    def _queue_copy(self, pipe: Any, copy: _Copy) -> None:
        entry_id, attempt, decision, delay, reason = copy
        extra: tuple[Any, ...] = ()
        if decision is Decision.DEAD_LETTER:
            extra = (
                "x-failure-reason",
                reason,
                "x-final-attempt",
                attempt,
                "x-failed-at",
                _now_iso(),
                "x-original-id",
                entry_id,
            )
        pipe.eval(
            scripts.SETTLE,
            3,
            *self._keys,
            self.group,
            self.consumer,
            entry_id,
            _COPY_MODE[decision],
            math.ceil(delay * 1000),
            1 if decision is Decision.DEFER else 0,
            uuid.uuid4().hex,
            self.backend.maxlen or "",
            *extra,
        )

    def _copied(self, copies: list[_Copy], results: list[Any]) -> None:
        for (entry_id, _, decision, _, _), result in zip(copies, results, strict=True):
            if result == 0:
                self.backend._count("leases_lost")
                _logger.warning(
                    "redis.lease_lost",
                    stream=self.queue,
                    id=entry_id.decode(),
                    decision=decision.value,
                )
            elif result == -1:
                self._trimmed([entry_id])

    # -- leases ---------------------------------------------------------------------------

    async def renew(self) -> None:
        """Renew the leases of what this consumer holds (unsettled and buffered)."""
        if self._closed or self._failure is not None:
            return
        now = time.monotonic()
        due = now - self.leases.renew_every
        ids = [entry_id for entry_id, (_, at) in self._unsettled.items() if at <= due]
        ids += [entry[0] for entry in self._buffer]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            lost = await self.client.eval(
                scripts.RENEW, 1, self.queue, self.group, self.consumer, *chunk
            )
            for entry_id in chunk:
                held = self._unsettled.get(entry_id)
                if held is not None:
                    self._unsettled[entry_id] = (held[0], now)
            if lost:
                self.backend._count("leases_lost", len(lost))
                _logger.warning(
                    "redis.lease_lost", stream=self.queue, ids=[i.decode() for i in lost]
                )

    async def reclaim(self) -> bool:
        """Claim a batch of entries whose consumers stopped renewing; True if more wait."""
        if self._closed or self._failure is not None:
            return False
        room = self.prefetch - len(self._unsettled) - len(self._buffer)
        if room <= 0:
            return False
        leases = self.leases
        cursor, claimed, gone = await self.client.eval(
            scripts.RECLAIM,
            1,
            self.queue,
            self.group,
            self.consumer,
            int(leases.claim_min_idle * 1000),
            self._cursor,
            min(room, leases.claim_batch),
        )
        self._cursor = cursor
        if gone:
            self._trimmed(list(gone))
        if claimed:
            self.backend._count("reclaimed", len(claimed))
            _logger.warning(
                "redis.reclaimed",
                stream=self.queue,
                consumer=self.consumer,
                ids=[entry[0].decode() for entry in claimed],
            )
            self._buffer.extend(
                (entry_id, dict(zip(flat[::2], flat[1::2], strict=True)), int(count))
                for entry_id, count, flat in claimed
            )
            self._credit.set()
        return cursor != b"0-0" and len(claimed) + len(gone) > 0

    async def forget_dead_consumers(self) -> None:
        """Remove consumers idle past ``forget_after`` that hold no pending entries."""
        removed = await self.client.eval(
            scripts.FORGET,
            1,
            self.queue,
            self.group,
            int(self.leases.forget_after * 1000),
            self.consumer,
        )
        if removed:
            self.backend._count("forgotten", len(removed))
            _logger.info(
                "redis.consumers_forgotten",
                stream=self.queue,
                consumers=[n.decode() for n in removed],
            )

    # -- closing --------------------------------------------------------------------------

    async def close(self) -> None:
        """Apply decided settlements, then return whatever this consumer still holds."""
        if self._closed:
            return
        healthy = self._failure is None
        try:
            await _cancel(self._tasks)
            healthy = await self._stop()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                with contextlib.suppress(*_ERRORS):
                    if healthy:
                        await self._return_pending()
                with contextlib.suppress(Exception):
                    if self._owns_client:
                        await self.client.aclose()
                    elif not healthy:  # drop every pooled connection: some are dead
                        await self.client.connection_pool.disconnect()
            self.backend._release(self.queue, self.consumer)

    async def _return_pending(self) -> None:
        """Copy every entry still pending for this consumer back into the stream."""
        while True:
            pending = await self.client.xpending_range(
                self.queue, self.group, "-", "+", 100, self.consumer
            )
            if not pending:
                return
            pipe = self.client.pipeline(transaction=False)
            for p in pending:
                self._queue_copy(pipe, (p["message_id"], 0, Decision.REQUEUE, 0.0, ""))
            await pipe.execute()


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` until they end.

    redis-py can swallow a cancellation that lands in the middle of a command; like
    anyio's cancel scopes, this delivers it again until the task is gone.
    """
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)


# -- maintenance jobs: run by a standalone source itself, or by StreamKeeper actors -------


async def keep_leases(source: RedisSource) -> None:
    """Renew the source's leases for ever, every ``claim_min_idle / 4``."""
    while True:
        await asyncio.sleep(source.leases.renew_every)
        await source.renew()


async def reclaim_forever(source: RedisSource) -> None:
    """Claim dead consumers' entries in bounded batches; forget dead consumers."""
    every = source.leases.reclaim_every
    while True:
        more = await source.reclaim()
        if not more:
            await source.forget_dead_consumers()
        await asyncio.sleep(min(every, 0.05) if more else every)


async def move_due_forever(source: RedisSource) -> None:
    """Move due delayed entries into the stream, looking at least every poll interval."""
    backend = source.backend
    while True:
        _, wait = await backend.move_due(source.client, source.queue)
        poll = backend.poll_interval
        await asyncio.sleep(poll if wait is None else min(poll, wait))


class StreamKeeper(Actor[Any]):
    """Runs one maintenance job (leases, reclaims, the scheduler) for the consumer.

    It asks its sibling ``consumer`` for the current source; when the job fails (the
    connection is lost), it crashes and its rest_for_one supervisor restarts it.
    """

    def __init__(self, job: Callable[[RedisSource], Awaitable[None]]) -> None:
        self._job = job

    async def on_start(self) -> None:
        """Find the consumer's source and run the job on it."""
        source = await self.find("../consumer").ask(SOURCE, timeout=30)
        if not isinstance(source, RedisSource):
            raise BackendError(f"the consumer answered {source!r}, not a Redis source")
        self.start_task(functools.partial(self._job, source))

    async def receive(self, message: Any) -> Any:
        """Nothing to answer: the job runs in the background."""
        return None


class RedisConnection(Actor[Any]):
    """Owns the client of the consumers under the same supervisor, and checks it.

    Answers `CONNECTION` with the client. A failed health check (PING) crashes this
    actor, so its rest_for_one supervisor rebuilds it and then everything after it.
    """

    def __init__(self, backend: RedisBackend) -> None:
        self._backend = backend

    async def on_start(self) -> None:
        """Connect (a wrong URL or password fails the start, with a clear error)."""
        self.client = await self._backend.connect()
        self.start_task(self._watch)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._backend.health_interval)
            try:
                with anyio.fail_after(_TIMEOUT):
                    await self.client.ping()
            except (*_ERRORS, TimeoutError) as exc:
                raise BackendError(f"lost the Redis connection: {exc}") from None

    async def receive(self, message: Any) -> Any:
        """Answer `CONNECTION` with the client."""
        return self.client if message == CONNECTION else None

    async def on_stop(self, exit: Exit) -> None:
        """Close the client."""
        with contextlib.suppress(Exception):
            await self.client.aclose()
