"""`RedisBackend`: clients, consumer groups, publishing, opening sources."""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import os
import socket
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from types import MappingProxyType
from typing import Any

import anyio
import attrs
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from foxactors._actor import Actor
from foxactors._batch import TurnBatcher
from foxactors._codec import Codec, JsonCodec
from foxactors._errors import BackendError, ConfigurationError
from foxactors._ids import new_id
from foxactors._logging import get_logger
from foxactors._message import DEFAULT_PROPERTIES, MessageProperties, Priority
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
from foxactors.backends._fair import FairShares, check_tenant
from foxactors.backends._keeper import keeper
from foxactors.backends._publish import encode_and_publish, prepare, publish_in_order

from . import _fair as fair
from . import _levels as levels
from . import _scheduler as scheduler
from . import _wire as wire
from ._client import ERRORS, TIMEOUT, new_client, server_of, unreachable, wrong_password
from ._connection import RedisLink
from ._deadletters import RedisDeadLetters
from ._fair_source import FairRedisSource
from ._keeper import keep_leases, move_due_forever, reclaim_forever
from ._leases import Leases
from ._source import RedisSource

_logger = get_logger("foxactors")  # stdlib logging unless structlog is configured

PUBLISH_CHUNK = 1000
"""Entries `RedisBackend.publish_many` sends in one pipeline; chunks go one by one."""


@attrs.define
class StreamCounts:
    """The counters behind `RedisStatistics`' own fields (see there)."""

    reclaimed: int = 0
    trimmed: int = 0
    leases_lost: int = 0
    forgotten: int = 0
    moved_due: int = 0


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


@attrs.frozen
class RedisQueueStatistics(QueueStatistics):
    """What waits in one queue's streams, every priority level counted.

    Attributes:
        ready: Entries not yet read by the group, in every level's stream (the
            group's lag).
        delayed: Entries in the delayed set (retries, deferrals, delayed publishes).
        in_flight: Entries read and not yet settled (the group's pending lists,
            every consumer's, in every process).
        dead: Entries in the dead-letter stream.
        ready_by_priority: ``ready`` per level (`Priority`), highest first.
        in_flight_by_priority: ``in_flight`` per level, highest first.
    """

    ready_by_priority: Mapping[Priority, int]
    in_flight_by_priority: Mapping[Priority, int] = attrs.field(
        factory=lambda: MappingProxyType({})
    )


def _lost(why: str) -> BackendError:
    """The error of a publish whose answer was lost (``why``)."""
    return BackendError(f"publish not answered ({why}): its entry may or may not have been added")


class RedisBackend(DeadLetterShortcuts):
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
        priority_stream: Name of the stream of a priority level other than normal
            (``{level}``: ``critical``, ``high`` or ``low``); normal's is the
            stream's own name.
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
        priority_stream: str = "{stream}:{level}",
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
        if not isinstance(priority_stream, str) or "{level}" not in priority_stream:
            raise ConfigurationError(
                "priority_stream must name each level's stream with {level} (and "
                f"usually {{stream}}), got {priority_stream!r}"
            )
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
        self._priority_stream = priority_stream
        self._levels: dict[str, tuple[str, ...]] = {}
        self._publisher: aioredis.Redis | None = None
        self._connecting = anyio.Lock()  # concurrent first publishes open one client
        # A turn's publishes (100 enqueues in flight) go out as one pipeline.
        self._adds: TurnBatcher[tuple[str, dict[str, Any]], Any] = TurnBatcher(
            self._add_entries, lost=_lost, timeout=TIMEOUT
        )
        self._default_properties = default_properties(self.codec)
        self._in_use: set[tuple[str, str]] = set()
        self._generations = itertools.count(1)
        self._counts = ConnectionCounts()
        self.stream_counts = StreamCounts()
        self._fair: dict[str, FairShares] = {}  # fair queues declared here
        self._fair_written: set[str] = set()  # ... whose shares this process wrote
        self.tenants: frozenset[str] | None = None  # a dedicated view's tenants
        self._server: tuple[object, ...] | None = None  # see `same_server`

    # -- fair shares ----------------------------------------------------------------------

    def share_fairly(self, queue: str, shares: FairShares) -> None:
        """Declare ``queue`` fair: a list per tenant, weighted turns, limits (docs/tenants.md).

        Declare it alike in every process that publishes to or consumes it: each
        writes the shares to Redis when it first uses the queue.

        Raises:
            ConfigurationError: A bad stream name, or ``shares`` is not a `FairShares`.
        """
        wire.check_stream(queue)
        if not isinstance(shares, FairShares):
            raise ConfigurationError(f"shares must be a FairShares, got {shares!r}")
        self._fair[queue] = shares
        self._fair_written.discard(queue)

    def fair_shares(self, queue: str) -> FairShares | None:
        """The shares ``queue`` was declared with here, or None (first in, first out)."""
        return self._fair.get(queue)

    def for_tenants(self, tenants: Collection[str]) -> RedisBackend:
        """The same backend, whose sources of fair queues take only ``tenants``' entries.

        The view publishes on this backend's client: closing this backend closes it,
        and closing the view closes nothing.
        """
        if isinstance(tenants, str) or not isinstance(tenants, Collection) or not tenants:
            raise ConfigurationError(
                f"tenants must be a non-empty collection of tenant names, got {tenants!r}"
            )
        view = copy.copy(self)
        view.tenants = frozenset(check_tenant(t) for t in tenants)
        view._client = self._client  # type: ignore[method-assign] # one client, closed by `close`
        view.close = _view_close  # type: ignore[method-assign] # what it uses is this one's
        return view

    async def _fair_publish(self, client: Any, queue: str, fields: dict[str, Any]) -> None:
        keys = fair.FairKeys.of(queue)
        if queue not in self._fair_written:
            await fair.write_conf(client, keys, self._fair[queue])
            self._fair_written.add(queue)
        await fair.push(client, keys, fields)

    # -- names, connections, statistics ------------------------------------------------

    def dead_letter_stream(self, stream: str) -> str:
        """The dead-letter stream of ``stream``."""
        return self._dead_letter_stream.format(stream=stream)

    def delayed_set(self, stream: str) -> str:
        """The sorted set of ``stream``'s entries due later."""
        return self._delayed_set.format(stream=stream)

    def level_streams(self, stream: str) -> tuple[str, ...]:
        """The streams of ``stream``'s priority levels, highest first.

        Critical, high, normal (``stream`` itself), low: see `priority_stream`.
        """
        names = self._levels.get(stream)
        if names is None:
            names = self._levels[stream] = levels.level_streams(self._priority_stream, stream)
        return names

    def stream_of(self, stream: str, priority: int | None) -> str:
        """The stream a message of ``priority`` is added to (None: normal's, ``stream``)."""
        if priority is None:
            return stream
        return self.level_streams(stream)[levels.level_of(priority)]

    def statistics(self) -> RedisStatistics:
        """Return connection state and lease counts (see `RedisStatistics`)."""
        return RedisStatistics(
            **attrs.asdict(self._counts.snapshot()), **attrs.asdict(self.stream_counts)
        )

    def client(self, *, retries: int = 0) -> aioredis.Redis:
        """A new client (its own connection pool).

        Consumers' clients do not retry by themselves (``retries=0``): a failure
        surfaces at once, so that supervision, not a hidden loop, decides. The
        publishing and admin client retries a command once on a fresh connection.
        """
        return new_client(self.url, retries=retries)

    async def connect(self, *, retries: int = 0) -> aioredis.Redis:
        """Open a client and check it (PING): a wrong URL or password fails clearly."""
        client = self.client(retries=retries)
        try:
            with anyio.fail_after(TIMEOUT):
                await client.ping()
        except (*ERRORS, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                await client.aclose()
            raise self._counts.refused(
                "Redis",
                self.url,
                exc,
                wrong_password=wrong_password(exc),
                retryable=unreachable(exc),
            ) from None
        self._counts.connected()
        return client

    async def _client(self) -> Any:  # redis-py's reply types are too wide to narrow
        if self._publisher is None:
            async with self._connecting:
                if self._publisher is None:
                    self._publisher = await self.connect(retries=1)
        return self._publisher

    async def ensure_group(self, client: aioredis.Redis, stream: str) -> None:
        """Create the consumer group (and the stream) if missing, from its first entry."""
        wire.check_stream(stream)
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
        return wire.entry_fields(
            body,
            properties,
            message_id,
            payload_field=self.payload_field,
            content_type=self.codec.content_type,
            now=time.time(),
        )

    async def publish(
        self,
        queue: str,
        payload: Any,
        *,
        properties: MessageProperties | None = None,
        delay: float = 0.0,
    ) -> str:
        """Encode ``payload`` and add it to the stream ``queue``; return its message id.

        It goes to the stream of its priority's level (see `level_streams`): a
        message without a priority, or of priority 3 to 5, to ``queue`` itself. With
        ``delay``, it goes to the delayed set and enters that stream when due.

        Raises:
            EncodeError: The codec cannot encode the payload; nothing was published.
            ConfigurationError: A bad stream name, header, delay or priority.
            BackendError: Redis cannot be reached.
        """
        return await encode_and_publish(self, queue, payload, properties, delay)

    async def publish_many(
        self,
        queue: str,
        messages: Sequence[tuple[Any, MessageProperties | None]],
        *,
        delay: float = 0.0,
    ) -> list[str | Exception]:
        """Publish ``(payload, properties)`` pairs in order; each one's id or error.

        Into the stream, they go out together: one pipeline per `PUBLISH_CHUNK`, the
        entries in the order given (`BatchPublisher`). Delayed ones and a fair
        queue's are published one after the other (their scripts run apart, and could
        otherwise interleave); delayed ones due in the same millisecond may come out
        of the delayed set in any order, as with `publish`.
        """
        answers: list[str | Exception] = []
        if delay > 0 or queue in self._fair:
            for payload, properties in messages:
                try:
                    answers.append(
                        await self.publish(queue, payload, properties=properties, delay=delay)
                    )
                except Exception as exc:  # its own place in the answer
                    answers.append(exc)
            return answers
        # Connected first: then each publish adds its entry to this turn's batch
        # before its first wait, in the order the tasks start (the order given), and
        # the batch is one pipeline. (Waiting to connect, they would join batches of
        # their own, sent side by side on connections of their own, in any order.)
        # Chunks one after the other keep each pipeline within the batch's deadline.
        await self._client()
        for first in range(0, len(messages), PUBLISH_CHUNK):
            chunk = messages[first : first + PUBLISH_CHUNK]
            answers += await publish_in_order(self, queue, chunk)
        return answers

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
        wire.check_stream(queue)
        require_seconds("delay", delay)
        message_id = message_id or new_id()
        properties = properties or DEFAULT_PROPERTIES
        fields = self.fields(body, properties, message_id)
        client = await self._client()  # retries once on a fresh connection
        try:
            if delay > 0:
                await scheduler.schedule(client, self.delayed_set(queue), delay, fields)
            elif queue in self._fair:
                await self._fair_publish(client, queue, fields)
            else:
                await self._adds.submit((self.stream_of(queue, properties.priority), fields))
        except (*ERRORS, TimeoutError) as exc:
            detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, TimeoutError) else exc
            raise BackendError(f"publishing to {queue!r} failed: {detail}") from None
        except BackendError as exc:  # shared by the batch: each caller raises its own
            raise type(exc)(f"publishing to {queue!r} failed: {exc}") from None
        return message_id

    def same_server(self, client: aioredis.Redis) -> bool:
        """Whether ``client`` reaches this backend's Redis server and database, as its user.

        As their URLs name them (host, port or socket path, database, user name): the
        same server named two ways (``localhost`` and ``127.0.0.1``) counts as two.
        """
        if self._server is None:
            self._server = server_of(self.client())  # a client opens no connection
        return server_of(client) == self._server

    def entry_command(
        self, queue: str, payload: Any, properties: MessageProperties | None
    ) -> tuple[list[str], AbstractContextManager[Any] | None]:
        """What `publish` would add, as the arguments of one XADD; and the publish's span.

        For a job store on the same server (`same_server`), whose script adds the
        entry together with the job's record. The span (tracing on) is the caller's
        to end once the entry is added.

        Raises:
            EncodeError: The codec cannot encode ``payload``.
            ConfigurationError: A bad priority, stream name or header (as `publish`);
                a body or header that is bytes but not UTF-8 text; a fair queue
                (its publish is a script of its own).
        """
        if queue in self._fair:
            raise ConfigurationError(f"{queue!r} is a fair queue: publish to it with publish()")
        wire.check_stream(queue)
        body, sent, span = prepare(self, queue, payload, properties)
        try:
            sent = sent or DEFAULT_PROPERTIES
            command = [self.stream_of(queue, sent.priority)]
            if self.maxlen is not None:
                command += ("MAXLEN", "~", str(self.maxlen))
            command.append("*")
            for name, value in self.fields(body, sent, new_id()).items():
                if isinstance(value, str):
                    command += (name, value)
                elif isinstance(value, bytes):
                    command += (name, value.decode())
                else:
                    command += (name, repr(value))  # an int or float, as redis-py sends it
        except BaseException as exc:
            if span is not None:  # ended here: the caller gets no span to end
                span.__exit__(type(exc), exc, exc.__traceback__)
            if isinstance(exc, UnicodeDecodeError):
                raise ConfigurationError(
                    f"a message to {queue!r} has a body or header that is not UTF-8 text; "
                    "publish it with publish()"
                ) from None
            raise
        return command, span

    async def _add_entries(self, entries: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """XADD each (stream, fields), in order: one pipeline; each reply or error.

        Not a transaction: each entry is added or refused on its own (a refusal,
        say a key that is not a stream, is that caller's error). A connection that
        fails raises for all: none of them reports an entry added.
        """
        client = await self._client()
        if len(entries) == 1:
            stream, fields = entries[0]
            try:
                return [await client.xadd(stream, fields, maxlen=self.maxlen, approximate=True)]
            except ResponseError as exc:
                return [exc]
        async with client.pipeline(transaction=False) as pipe:
            for stream, fields in entries:
                pipe.xadd(stream, fields, maxlen=self.maxlen, approximate=True)
            return list(await pipe.execute(raise_on_error=False))

    # -- consuming -----------------------------------------------------------------------

    async def open_source(
        self, queue: str, *, prefetch: int, connection: aioredis.Redis | None = None
    ) -> RedisSource:
        """Start consuming the stream ``queue`` with at most ``prefetch`` unsettled.

        With ``connection`` (a client owned by a `BrokerConnection` actor), the
        settler, lease keeper, reclaimer and scheduler run as actors beside the
        consumer (see `intake_actors`); without, on a client of its own, the source
        runs them itself.
        """
        require_int("prefetch", prefetch, 1)
        client = connection if connection is not None else await self.connect()
        name, n = self.consumer, 1
        while (queue, name) in self._in_use:
            n += 1
            name = f"{self.consumer}-{n}"
        self._in_use.add((queue, name))
        options: dict[str, Any] = {
            "prefetch": prefetch,
            "generation": next(self._generations),
            "client": client,
            "consumer": name,
            "owns_client": connection is None,
        }
        source: RedisSource
        if queue in self._fair:
            source = FairRedisSource(self, queue, tenants=self.tenants, **options)
        elif self.tenants is not None:
            self._in_use.discard((queue, name))
            raise ConfigurationError(
                f"queue {queue!r} is not fair, so its tenants' entries are not kept apart: "
                f"declare it with share_fairly() before dedicating sources to tenants"
            )
        else:
            source = RedisSource(self, queue, **options)
        try:
            await source.start()
        except BaseException:
            await source.close()
            raise
        self._counts.started()
        _logger.info("redis.consuming", stream=queue, group=self.group, consumer=name)
        return source

    def source_ended(self, *, lost: bool) -> None:
        """One of its sources stopped consuming, closed or ``lost``."""
        self._counts.ended(lost=lost)

    def _release(self, queue: str, consumer: str) -> None:
        self._in_use.discard((queue, consumer))

    def connection_actor(self) -> Callable[[], Actor[Any]]:
        """A factory of the actor that owns the client of this backend's consumers."""
        return functools.partial(BrokerConnection, RedisLink(self))

    def intake_actors(self, queue: str) -> list[tuple[str, Callable[[], Actor[Any]]]]:
        """The actors that settle, keep leases, reclaim and schedule for a consumer.

        `WorkerApp` puts them after the consumer in its rest_for_one intake group.
        """
        del queue
        return [
            ("settler", keeper(RedisSource.settle_forever, RedisSource)),
            ("leases", keeper(keep_leases, RedisSource)),
            ("reclaimer", keeper(reclaim_forever, RedisSource)),
            ("scheduler", keeper(move_due_forever, RedisSource)),
        ]

    async def move_due(self, client: aioredis.Redis, stream: str) -> tuple[int, float | None]:
        """Move due delayed entries into ``stream``'s levels: (how many, seconds to the next).

        A fair queue's go to the back of their tenants' lists.
        """
        if stream in self._fair:
            moved, wait = await fair.move_due(
                client, fair.FairKeys.of(stream), self.delayed_set(stream)
            )
        else:
            moved, wait = await scheduler.move_due(
                client, self.delayed_set(stream), self.level_streams(stream), self.maxlen
            )
        if moved:
            self.stream_counts.moved_due += moved
        return moved, wait

    # -- lengths -------------------------------------------------------------------------

    async def queue_statistics(self, queue: str) -> RedisQueueStatistics:
        """Count what waits in ``queue``, every priority level's stream included.

        Ready and in flight per level, delayed, dead: see `RedisQueueStatistics`.

        Raises:
            BackendError: Redis cannot be reached.
        """
        wire.check_stream(queue)
        client = await self._client()
        try:
            by_level: dict[Priority, int] = {}
            pending_by_level: dict[Priority, int] = {}
            for level, stream in zip(levels.LEVELS, self.level_streams(queue), strict=True):
                by_level[level], pending_by_level[level] = await self._lengths(client, stream)
            if queue in self._fair:  # what waits in the tenants' lists is ready too
                waiting = await client.hget(fair.FairKeys.of(queue).out, ":ready")
                by_level[Priority.NORMAL] += int(waiting or 0)
            delayed = int(await client.zcard(self.delayed_set(queue)))
            dead = int(await client.xlen(self.dead_letter_stream(queue)))
        except ERRORS as exc:
            raise BackendError(f"counting {queue!r} failed: {exc}") from None
        return RedisQueueStatistics(
            sum(by_level.values()),
            delayed,
            sum(pending_by_level.values()),
            dead,
            MappingProxyType(by_level),
            MappingProxyType(pending_by_level),
        )

    async def queue_depth(self, queue: str) -> RedisQueueStatistics:
        """`queue_statistics`, as every backend answers it (the contract's `Backend`)."""
        return await self.queue_statistics(queue)

    async def _lengths(self, client: Any, stream: str) -> tuple[int, int]:
        """(entries not yet read by the group, entries pending) of one stream."""
        try:
            groups = await client.xinfo_groups(stream)
        except ResponseError as exc:
            if "no such key" in str(exc):
                return 0, 0
            raise
        group = next((g for g in groups if g["name"] == self.group.encode()), None)
        if group is None:  # a level's stream no consumer read yet: all of it is ready
            return int(await client.xlen(stream)), 0
        lag = group.get("lag")
        if lag is None:  # Redis cannot tell (entries deleted mid-stream): count them
            lag, start = 0, "(" + group["last-delivered-id"].decode()
            while page := await client.xrange(stream, min=start, count=1000):
                lag += len(page)
                start = "(" + page[-1][0].decode()
        return int(lag), int(group["pending"])

    # -- dead letters --------------------------------------------------------------------

    def dead_letter_queue(self, queue: str) -> RedisDeadLetters:
        """The dead-letter stream of ``queue``: list, count, replay, purge."""
        return RedisDeadLetters(self, queue)

    async def close(self) -> None:
        """Close the publishing client (sources close their own).

        Publishes not answered yet fail with `BackendError` (their entries may or
        may not have been added).
        """
        self._adds.close()
        if self._publisher is not None:
            client, self._publisher = self._publisher, None
            with contextlib.suppress(Exception):
                await client.aclose()


async def _view_close() -> None:
    """A tenants view's `close`: the view owns nothing (its backend closes the client)."""
