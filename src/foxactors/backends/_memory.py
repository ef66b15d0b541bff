"""The embedded memory backend: the broker contract, in process, deterministic.

Same contract as the brokers: redelivery on requeue and when a consumer goes away,
delayed retry, dead letters, an attempt count that travels with the message, credit
(prefetch). Delays and expirations run on the event loop's clock, so they pass in
virtual time in tests; the times it reports (``published_at``, ``failed_at``) are
wall-clock Unix seconds, as the brokers report them.
"""

from __future__ import annotations

import builtins
import copy
import itertools
import time
import warnings
from collections.abc import Collection
from typing import Any, overload

import anyio

from foxactors._ack import AckHandle, Decision
from foxactors._codec import Codec, JsonCodec
from foxactors._errors import BackendError, ConfigurationError
from foxactors._ids import new_id
from foxactors._message import Delivery, Message, MessageProperties, check_priority
from foxactors._tracing import outgoing
from foxactors._validate import require_int, require_seconds

from ._admission import Admission, Inadmissible, default_properties
from ._connection import ConnectionCounts, ConnectionStatistics
from ._contract import QueueStatistics
from ._credit import CreditSource
from ._deadletter import DeadLetter
from ._fair import FairShares, check_tenant
from ._memory_fair import FairReady
from ._memory_queue import Entry, Queue, Tag

_ACK = Decision.ACK  # hot path: a global is cheaper than an enum lookup


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
        self._queues: dict[str, Queue] = {}
        self._generations = itertools.count(1)
        self._counts = ConnectionCounts()  # in process: never fails, never lost
        self.tenants: frozenset[str] | None = None  # a dedicated view's tenants

    def _queue(self, name: str) -> Queue:
        queue = self._queues.get(name)
        if queue is None:
            if not isinstance(name, str) or not name:
                raise ConfigurationError(f"queue name must be a non-empty string, got {name!r}")
            queue = self._queues[name] = Queue(name)
        return queue

    # -- fair shares ------------------------------------------------------------

    def share_fairly(self, queue: str, shares: FairShares) -> None:
        """Declare ``queue`` fair: a sub-queue per tenant, weighted turns, limits.

        Entries already ready move to their tenants' sub-queues. Declaring it again
        changes the shares from each tenant's next turn on.

        Raises:
            ConfigurationError: ``shares`` is not a `FairShares`.
        """
        if not isinstance(shares, FairShares):
            raise ConfigurationError(f"shares must be a FairShares, got {shares!r}")
        target = self._queue(queue)
        if target.fair is not None:
            target.fair.reshare(shares)
            target.arrived()
            return
        fair = FairReady(shares)
        old = target.ready
        while old.count:
            fair.push(old.pop(), front=False)
        target.ready = target.fair = fair

    def fair_shares(self, queue: str) -> FairShares | None:
        """The shares ``queue`` was declared with, or None (first in, first out)."""
        fair = self._queue(queue).fair
        return None if fair is None else fair.shares

    def for_tenants(self, tenants: Collection[str]) -> MemoryBackend:
        """The same backend, whose sources take only ``tenants``' messages.

        Only fair queues (`share_fairly`) keep tenants apart; opening a source of
        another queue on the view raises `ConfigurationError`.
        """
        if isinstance(tenants, str) or not isinstance(tenants, Collection) or not tenants:
            raise ConfigurationError(
                f"tenants must be a non-empty collection of tenant names, got {tenants!r}"
            )
        view = copy.copy(self)
        view.tenants = frozenset(check_tenant(t) for t in tenants)
        return view

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
            properties: Message properties; ``priority`` orders delivery (higher
                first, first in first out within one; None counts as normal).
            delay: Seconds before it becomes deliverable.

        Raises:
            EncodeError: The codec cannot encode the payload; nothing was published.
            ConfigurationError: A bad queue name, delay or priority.
        """
        if properties is not None:
            check_priority(properties)
        body = self.codec.encode(payload)
        properties, span = outgoing(properties, self.codec.content_type, queue, self.name)
        if span is None:
            return self.publish_raw(queue, body, properties=properties, delay=delay)
        with span:
            return self.publish_raw(queue, body, properties=properties, delay=delay)

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
        if properties is None:
            properties = default_properties(self.codec)
        entry = Entry(new_id(), body, properties, time.time(), now)
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
        target = self._queue(queue)
        if self.tenants is not None and target.fair is None:
            raise ConfigurationError(
                f"queue {queue!r} is not fair, so its tenants' messages are not kept apart: "
                f"declare it with share_fairly() before dedicating sources to tenants"
            )
        source = MemorySource(self, target, prefetch, next(self._generations))
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

    async def queue_depth(self, queue: str) -> QueueStatistics:
        """`queue_statistics`, as every backend answers it (the contract's `Backend`)."""
        return self.queue_statistics(queue)

    def dead_letter_queue(self, queue: str) -> MemoryDeadLetters:
        """The dead letters of ``queue``: list, count, replay, purge, async as everywhere.

        `dead_letters`, `replay_dead_letters` and `purge_dead_letters` do the same at
        once (the memory backend needs no I/O).
        """
        return MemoryDeadLetters(self, queue)

    def dead_letters(self, queue: str) -> list[DeadLetter]:
        """Return the dead letters of ``queue``, oldest first."""
        return list(self._queue(queue).dead)

    def replay_dead_letters(self, queue: str, *, limit: int | None = None) -> int:
        """Move dead letters of ``queue`` back to it (attempts start over), oldest first.

        All of them, or the first ``limit``.
        """
        target = self._queue(queue)
        replayed, target.dead = target.dead[:limit], target.dead[len(target.dead[:limit]) :]
        for letter in replayed:
            target.push(
                Entry(letter.id, letter.body, letter.properties, time.time(), anyio.current_time())
            )
        return len(replayed)

    async def close(self) -> None:
        """Nothing to release: the memory backend holds no connection."""

    def purge_dead_letters(self, queue: str) -> int:
        """Delete the dead letters of ``queue``; return how many there were."""
        target = self._queue(queue)
        count, target.dead = len(target.dead), []
        return count


class MemoryDeadLetters:
    """The dead letters of a memory queue, in the shape of every backend's.

    Attributes:
        queue: The queue whose dead letters these are.
    """

    def __init__(self, backend: MemoryBackend, queue: str) -> None:
        self._backend = backend
        self.queue = queue

    async def list(self, *, limit: int | None = 1000) -> builtins.list[DeadLetter]:
        """Return up to ``limit`` dead letters, oldest first, leaving them in place."""
        return self._backend.dead_letters(self.queue)[:limit]

    async def count(self) -> int:
        """Return how many dead letters the queue holds."""
        return len(self._backend._queue(self.queue).dead)

    async def replay(self, *, limit: int | None = None) -> int:
        """Move dead letters back to the queue (attempts start over), oldest first."""
        return self._backend.replay_dead_letters(self.queue, limit=limit)

    async def purge(self) -> int:
        """Delete the dead letters; return how many there were."""
        return self._backend.purge_dead_letters(self.queue)


class MemorySource(CreditSource[Tag, Entry]):
    """One consumer of a memory queue (see `Source`)."""

    def __init__(
        self, backend: MemoryBackend, queue: Queue, prefetch: int, generation: int
    ) -> None:
        super().__init__(queue.name, prefetch, generation)
        self._counts = backend._counts
        self._admit = Admission(backend.codec)
        self._q = queue
        self._tags = itertools.count(1)
        self._next_due: float | None = None
        self._tenants = backend.tenants

    def _take(self, credit: int) -> list[Delivery] | None:
        queue = self._q
        self._next_due = queue.promote_due(anyio.current_time())
        ready = queue.ready
        if isinstance(ready, FairReady):
            return self._take_fair(ready, credit)
        if not ready.count:
            return None
        out: list[Delivery] = []
        while ready.count and len(out) < credit:
            delivery = self._deliver(ready.pop())
            if delivery is not None:
                out.append(delivery)
        return out

    def _take_fair(self, fair: FairReady, credit: int) -> list[Delivery] | None:
        out: list[Delivery] = []
        while len(out) < credit:
            entry = fair.take(self._tenants)
            if entry is None:
                break
            delivery = self._deliver(entry)
            if delivery is not None:
                out.append(delivery)
        return out or None

    async def _fetch(self) -> None:
        await self._q.wait_arrival(self._next_due)

    def _deliver(self, entry: Entry) -> Delivery | None:
        entry.deliveries += 1
        tag = (self.generation, next(self._tags))
        self._q.in_flight[tag] = entry
        self._unsettled[tag] = entry
        handle = AckHandle(self, tag, self.generation)
        properties = entry.properties
        ttl = properties.expiration  # counted on the loop clock, as delays are
        try:
            payload = self._admit(
                entry.body,
                properties.content_type,
                ttl,
                None if ttl is None else anyio.current_time() - entry.enqueued_at,
            )
        except Inadmissible as exc:
            exc.settle(handle, queue=self.queue, message_id=entry.id)
            return None
        message = Message(  # id, payload, body, properties, attempt, queue, published_at
            entry.id,
            payload,
            entry.body,
            properties,
            entry.deliveries,
            self.queue,
            entry.published_at,
        )
        return Delivery(message, handle)

    def settle(self, handle: AckHandle, decision: Decision, delay: float, reason: str) -> bool:
        """Apply a decision for one of this source's handles (see `Settler`)."""
        entry = self._held(handle, decision)
        if entry is None:
            return False
        queue = self._q
        del queue.in_flight[handle.tag]  # type: ignore[arg-type] # a Tag: it was held
        if queue.fair is not None and queue.fair.release(entry):
            queue.arrived()  # its tenant has room again: a waiting source may take it
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
        return True

    def lose_connection(self, reason: str) -> None:
        """Fail as a broker connection that dropped: for fault injection in tests.

        From now on `receive` raises `BackendError` with ``reason``, and settlements of
        this source's deliveries are stale no-ops (logged, not applied); `close` then
        puts its unsettled deliveries back at the front of the queue, as a broker does
        with a dropped connection's. The consumer actor crashes on the raise and its
        supervisor opens a new source. Does nothing once closed or failed.
        """
        if self._failure is None and not self._closed:
            self._failure = BackendError(reason)
            self._wake_all()
            self._q.arrived()  # a receiver waiting for entries wakes, and raises

    async def close(self) -> None:
        """Stop consuming; every unsettled delivery goes back to the front of the queue."""
        if self._closed:
            return
        self._closed = True
        self._counts.ended(lost=False)
        queue = self._q
        for tag in sorted(self._unsettled, reverse=True):
            entry = queue.in_flight.pop(tag)
            if queue.fair is not None:
                queue.fair.release(entry)
            queue.push(entry, front=True)
        self._unsettled.clear()
        self._wake_all()
