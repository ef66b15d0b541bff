"""The embedded memory backend: the broker contract, in process, deterministic.

Same contract as the brokers: redelivery on requeue and when a consumer goes away,
delayed retry, dead letters, an attempt count that travels with the message, credit
(prefetch). Delays and expirations run on the event loop's clock, so they pass in
virtual time in tests; the times it reports (``published_at``, ``failed_at``) are
wall-clock Unix seconds, as the brokers report them.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import time
import uuid
import warnings
from collections import deque
from typing import Any, overload

import anyio
import attrs
import structlog

from foxactors._ack import AckHandle, Decision
from foxactors._codec import Codec, JsonCodec
from foxactors._errors import BackendError, ConfigurationError, DecodeError
from foxactors._message import DEFAULT_PROPERTIES, Delivery, Message, MessageProperties
from foxactors._validate import require_int, require_seconds

from ._base import ConnectionCounts, ConnectionStatistics, DeadLetter

_logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("foxactors")

Tag = tuple[int, int]  # (consumer generation, delivery number)
_ACK = Decision.ACK  # hot path: a global is cheaper than an enum lookup


@attrs.define
class _Entry:
    id: str
    body: bytes
    properties: MessageProperties
    published_at: float  # wall clock (Unix seconds), what the message reports
    enqueued_at: float  # the event loop's clock: what expiration counts from
    deliveries: int = 0


@attrs.frozen
class QueueStatistics:
    """Counts for one memory queue.

    Attributes:
        ready: Waiting to be delivered.
        delayed: Waiting for their delay (publish delay or retry) to pass.
        in_flight: Delivered, not yet settled.
        dead: In the dead-letter queue.
    """

    ready: int
    delayed: int
    in_flight: int
    dead: int


class _Ready:
    """Ready entries: first in, first out within a priority, higher priorities first.

    One deque per priority present, so that taking the next entry costs O(1) in
    the common case of one priority (a heap paid O(log n) per entry).
    """

    __slots__ = ("_lanes", "_order", "count")

    def __init__(self) -> None:
        self._lanes: dict[int, deque[_Entry]] = {}
        self._order: list[int] = []  # priorities present, ascending (the last is next)
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def push(self, entry: _Entry, front: bool) -> None:
        priority = entry.properties.priority or 0
        lane = self._lanes.get(priority)
        if lane is None:
            lane = self._lanes[priority] = deque()
            bisect.insort(self._order, priority)
        if front:
            lane.appendleft(entry)
        else:
            lane.append(entry)
        self.count += 1

    def pop(self) -> _Entry:
        priority = self._order[-1]
        lane = self._lanes[priority]
        entry = lane.popleft()
        if not lane:
            del self._lanes[priority]
            self._order.pop()
        self.count -= 1
        return entry


class _Queue:
    """One queue: ready entries by priority, a heap of delayed ones."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ready = _Ready()
        self.delayed: list[tuple[float, int, _Entry]] = []  # (due, seq, entry)
        self.in_flight: dict[Tag, _Entry] = {}
        self.dead: list[DeadLetter] = []
        self._seq = itertools.count()
        self._arrived: anyio.Event | None = None  # consumers waiting for entries
        self._idle: anyio.Event | None = None  # join() waiting for nothing to be left

    def push(self, entry: _Entry, *, front: bool = False) -> None:
        self.ready.push(entry, front)
        self.arrived()

    def push_delayed(self, entry: _Entry, due: float) -> None:
        heapq.heappush(self.delayed, (due, next(self._seq), entry))
        self.arrived()  # a waiting consumer may need an earlier deadline

    def promote_due(self, now: float) -> float | None:
        """Move due entries to ready; return the next due time, if any."""
        while self.delayed and self.delayed[0][0] <= now:
            self.push(heapq.heappop(self.delayed)[2])
        return self.delayed[0][0] if self.delayed else None

    def arrived(self) -> None:
        if self._arrived is not None:
            self._arrived.set()
            self._arrived = None

    async def wait_arrival(self, deadline: float | None) -> None:
        if self._arrived is None:
            self._arrived = anyio.Event()
        event = self._arrived
        if deadline is None:
            await event.wait()
        else:
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                await event.wait()

    def settled(self) -> None:
        """An entry left the in-flight set: wake join() if nothing is left."""
        if self._idle is not None and self.idle:
            self._idle.set()
            self._idle = None

    async def wait_idle(self) -> None:
        while not self.idle:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    @property
    def idle(self) -> bool:
        return not (self.ready.count or self.delayed or self.in_flight)


class MemoryBackend:
    """An in-process broker: the embedded default, and the backend of tests.

    Args:
        codec: Encodes published payloads and decodes received bodies (JSON with a
            1 MiB limit by default). Undecodable bodies go to the dead-letter queue.

    Example:
        ```python
        backend = MemoryBackend()
        await backend.publish("emails", {"to": "ada@example.com"})
        await backend.join("emails")  # wait until it was handled and settled
        ```
    """

    name = "memory"

    def __init__(self, codec: Codec | None = None) -> None:
        self.codec: Codec = codec if codec is not None else JsonCodec()
        self._queues: dict[str, _Queue] = {}
        self._generations = itertools.count(1)
        self._counts = ConnectionCounts()  # in process: never fails, never lost

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            if not isinstance(name, str) or not name:
                raise ConfigurationError(f"queue name must be a non-empty string, got {name!r}")
            queue = self._queues[name] = _Queue(name)
        return queue

    # -- producing ----------------------------------------------------------------

    async def publish(
        self,
        queue: str,
        payload: Any,
        *,
        properties: MessageProperties | None = None,
        delay: float = 0.0,
    ) -> str:
        """Encode and enqueue ``payload``; return its message id.

        Args:
            queue: Queue name (created on first use).
            payload: Data for the codec (JSON by default).
            properties: Message properties; ``priority`` orders delivery (higher first).
            delay: Seconds before it becomes deliverable.

        Raises:
            EncodeError: The codec cannot encode the payload; nothing was published.
            ConfigurationError: A bad queue name or delay.
        """
        return self.publish_raw(
            queue, self.codec.encode(payload), properties=properties, delay=delay
        )

    def publish_raw(
        self,
        queue: str,
        body: bytes,
        *,
        properties: MessageProperties | None = None,
        delay: float = 0.0,
    ) -> str:
        """Enqueue an already encoded ``body`` as it is (for tests of bad input)."""
        require_seconds("delay", delay)
        now = anyio.current_time()
        entry = _Entry(uuid.uuid4().hex, body, properties or DEFAULT_PROPERTIES, time.time(), now)
        target = self._queue(queue)
        if delay > 0:
            target.push_delayed(entry, now + delay)
        else:
            target.push(entry)
        return entry.id

    # -- consuming ----------------------------------------------------------------

    async def open_source(self, queue: str, *, prefetch: int) -> MemorySource:
        """Start consuming ``queue`` with at most ``prefetch`` unsettled deliveries."""
        require_int("prefetch", prefetch, 1)
        source = MemorySource(self, self._queue(queue), prefetch, next(self._generations))
        self._counts.connected()
        self._counts.started()
        return source

    # -- inspecting -----------------------------------------------------------------

    async def join(self, queue: str) -> None:
        """Wait until ``queue`` has nothing ready, delayed or in flight."""
        await self._queue(queue).wait_idle()

    @overload
    def statistics(self) -> ConnectionStatistics: ...

    @overload
    def statistics(self, queue: str) -> QueueStatistics: ...

    def statistics(self, queue: str | None = None) -> ConnectionStatistics | QueueStatistics:
        """Return the consumer counts, in the shape every backend returns.

        The memory backend is always connected: ``consuming`` counts its open sources
        and ``connects`` the sources opened; nothing fails or is lost, so the other
        counts stay zero. ``statistics(queue)``, the counts of one queue, is
        deprecated: call `queue_statistics`.
        """
        if queue is None:
            return self._counts.snapshot()
        warnings.warn(
            "MemoryBackend.statistics(queue) is deprecated: use queue_statistics(queue); "
            "statistics() without a queue returns ConnectionStatistics, as on every backend",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.queue_statistics(queue)

    def queue_statistics(self, queue: str) -> QueueStatistics:
        """Return the counts of ``queue``: ready, delayed, in flight, dead."""
        target = self._queue(queue)
        return QueueStatistics(
            len(target.ready), len(target.delayed), len(target.in_flight), len(target.dead)
        )

    def dead_letters(self, queue: str) -> list[DeadLetter]:
        """Return the dead letters of ``queue``, oldest first."""
        return list(self._queue(queue).dead)

    def replay_dead_letters(self, queue: str) -> int:
        """Move every dead letter of ``queue`` back to it (attempts start over)."""
        target = self._queue(queue)
        replayed, target.dead = target.dead, []
        for letter in replayed:
            target.push(
                _Entry(letter.id, letter.body, letter.properties, time.time(), anyio.current_time())
            )
        return len(replayed)

    def purge_dead_letters(self, queue: str) -> int:
        """Delete the dead letters of ``queue``; return how many there were."""
        target = self._queue(queue)
        count, target.dead = len(target.dead), []
        return count


class MemorySource:
    """One consumer of a memory queue (see `Source`)."""

    def __init__(
        self, backend: MemoryBackend, queue: _Queue, prefetch: int, generation: int
    ) -> None:
        self._backend = backend
        self._q = queue
        self.queue = queue.name
        self.prefetch = prefetch
        self.generation = generation
        self._unsettled: set[Tag] = set()
        self._tags = itertools.count(1)
        self.live = True  # until closed (see `Settler`)
        self._want = 0  # credit the waiting receiver needs (0: nobody waits)
        self._credit: anyio.Event | None = None
        self._all_settled: anyio.Event | None = None

    @property
    def unsettled(self) -> int:
        """Deliveries handed out and not yet settled."""
        return len(self._unsettled)

    async def receive(self, max_count: int, min_credit: int = 1) -> list[Delivery]:
        """Wait for a delivery and ``min_credit`` free credit; return at most ``max_count``."""
        queue = self._q
        min_credit = max(1, min(min_credit, self.prefetch))
        while True:
            if not self.live:
                raise BackendError(f"consumer of {self.queue!r} is closed")
            next_due = queue.promote_due(anyio.current_time())
            free = self.prefetch - len(self._unsettled)
            if free < min_credit:  # wait until settlements free enough credit
                self._want = min_credit
                self._credit = anyio.Event()
                await self._credit.wait()
                continue
            credit = min(max_count, free)
            ready = queue.ready
            if ready.count:
                out: list[Delivery] = []
                while ready.count and len(out) < credit:
                    delivery = self._deliver(ready.pop())
                    if delivery is not None:
                        out.append(delivery)
                if out:
                    return out
                continue
            await queue.wait_arrival(next_due)

    def _deliver(self, entry: _Entry) -> Delivery | None:
        entry.deliveries += 1
        tag = (self.generation, next(self._tags))
        self._q.in_flight[tag] = entry
        self._unsettled.add(tag)
        handle = AckHandle(self, tag, self.generation)
        ttl = entry.properties.expiration
        if ttl is not None and anyio.current_time() - entry.enqueued_at > ttl:
            handle.dead_letter(f"expired: not delivered within {ttl} s")  # as RabbitMQ's DLX
            return None
        try:
            payload = self._backend.codec.decode(entry.body)
        except DecodeError as exc:
            _logger.warning(
                "message.undecodable", queue=self.queue, message_id=entry.id, error=str(exc)
            )
            handle.dead_letter(f"undecodable: {exc}")
            return None
        message = Message(  # id, payload, body, properties, attempt, queue, published_at
            entry.id,
            payload,
            entry.body,
            entry.properties,
            entry.deliveries,
            self.queue,
            entry.published_at,
        )
        return Delivery(message, handle)

    def settle(self, handle: AckHandle, decision: Decision, delay: float, reason: str) -> bool:
        """Apply a decision for one of this source's handles (see `Settler`)."""
        tag = handle.tag
        if not self.live or tag not in self._unsettled:
            _logger.warning(
                "settlement.stale", queue=self.queue, tag=str(tag), decision=decision.value
            )
            return False
        assert isinstance(tag, tuple)
        self._unsettled.discard(tag)
        queue = self._q
        entry = queue.in_flight.pop(tag)
        if decision is _ACK:
            pass
        elif decision is Decision.REQUEUE:
            queue.push(entry, front=True)
        elif decision is Decision.RETRY:
            queue.push_delayed(entry, anyio.current_time() + delay)
        elif decision is Decision.DEFER:
            entry.deliveries -= 1  # not an attempt: it was never tried
            queue.push_delayed(entry, anyio.current_time() + delay)
        elif decision is Decision.DEAD_LETTER:
            queue.dead.append(
                DeadLetter(
                    entry.id,
                    self.queue,
                    entry.body,
                    entry.properties,
                    reason,
                    entry.deliveries,
                    time.time(),
                )
            )
        if not queue.in_flight:
            queue.settled()
        if self._credit is not None or self._all_settled is not None:
            self._credit_freed()
        return True

    def _credit_freed(self) -> None:
        unsettled = len(self._unsettled)
        if self._credit is not None and self.prefetch - unsettled >= self._want:
            self._credit.set()
            self._credit = None
        if self._all_settled is not None and not unsettled:
            self._all_settled.set()
            self._all_settled = None

    def dropped(self, handle: AckHandle) -> None:
        """A handle was dropped unsettled: report it and requeue its delivery."""
        if handle.tag in self._unsettled and self.live:
            _logger.error("delivery.dropped", queue=self.queue, tag=str(handle.tag))
            handle.requeue()

    async def wait_settled(self) -> None:
        """Wait until no delivery of this consumer is unsettled."""
        while self._unsettled:
            if self._all_settled is None:
                self._all_settled = anyio.Event()
            await self._all_settled.wait()

    async def close(self) -> None:
        """Stop consuming; every unsettled delivery goes back to the front of the queue."""
        if not self.live:
            return
        self.live = False
        self._backend._counts.ended(lost=False)
        queue = self._q
        for tag in sorted(self._unsettled, reverse=True):  # keep their order at the front
            queue.push(queue.in_flight.pop(tag), front=True)
        self._unsettled.clear()
        self._credit_freed()
