"""The backend contract, declared once: backend, source, dead-letter queue, capabilities.

The pipeline and the command line use backends through these protocols only. A
capability is checked with ``isinstance`` (the protocols are runtime-checkable), never
by a backend's name. The checklist that a backend keeps the contract is the
conformance suite, ``tests/test_backend_conformance.py`` (see docs/backends.md).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import attrs

from foxactors._ack import Settler
from foxactors._message import Delivery, MessageProperties

if TYPE_CHECKING:
    from foxactors._actor import Actor

    from ._connection import ConnectionStatistics
    from ._deadletter import DeadLetter
    from ._fair import FairShares


@attrs.frozen
class QueueStatistics:
    """How many messages one queue holds, by state: the broker's view, on every backend.

    `Backend.queue_depth` returns one (a broker's subclass adds what it alone can
    tell). The job store's view of the same queue, by job state and tenant, is
    ``JobQueue.depth``.

    Attributes:
        ready: Waiting to be delivered.
        delayed: Waiting for their delay (publish delay, retry or deferral) to pass.
        in_flight: Delivered, not yet settled.
        dead: In the dead-letter queue.
        seen_here: The states this backend can count only as this process sees
            them (a class attribute, not a field): empty where the broker counts
            all; RabbitMQ's ``delayed`` and ``in_flight`` (see its subclass).
    """

    seen_here: ClassVar[frozenset[str]] = frozenset()

    ready: int
    delayed: int
    in_flight: int
    dead: int


class Source(Settler, Protocol):
    """One consumer of one queue, with credit: never more than ``prefetch`` unsettled.

    It hands out deliveries whose handles settle with it (`Settler`); bad input (see
    the admission check) it settles itself, as dead letters. Handles of a closed or
    failed source are stale: settling them is a logged no-op.
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

        Raises:
            BackendError: The source is closed or lost its connection.
        """

    async def wait_settled(self) -> None:
        """Wait until no delivery is unsettled."""

    async def close(self) -> None:
        """Stop consuming; every unsettled delivery goes back to its queue."""


@runtime_checkable
class DeadLetterQueue(Protocol):
    """The dead letters of one queue: the same shape, async, on every backend.

    Attributes:
        queue: The queue whose dead letters these are.
    """

    queue: str

    async def list(self, *, limit: int | None = 1000) -> builtins.list[DeadLetter]:
        """Return up to ``limit`` dead letters (None: all), oldest first, leaving them."""

    async def count(self) -> int:
        """Return how many dead letters wait."""

    async def replay(self, *, limit: int | None = None) -> int:
        """Move dead letters back to their queue, oldest first; return how many.

        Attempts start over. Never loses one: a failure leaves the rest in place.
        """

    async def purge(self) -> int:
        """Delete the dead letters; return how many there were."""


@runtime_checkable
class Backend(Protocol):
    """A place messages are published to, consumed from, and dead-lettered in."""

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

    def statistics(self) -> ConnectionStatistics:
        """Return what its connections and consumers are doing (one shape for all)."""

    def dead_letter_queue(self, queue: str) -> DeadLetterQueue:
        """The dead letters of ``queue``."""

    async def queue_depth(self, queue: str) -> QueueStatistics:
        """Count ``queue``'s messages: ready, delayed, in flight, dead.

        Read from the broker when asked (a round trip or a few): for a scrape or a
        health check, not for every message. What each backend can see differs (its
        ``queue_statistics`` docstring says): RabbitMQ counts in flight only for this
        process's consumers, and delayed only in the retry queues this process
        declared.

        Raises:
            BackendError: The broker cannot be reached.
        """

    async def close(self) -> None:
        """Release what the backend holds itself (sources close their own)."""


@runtime_checkable
class SharedConnection(Protocol):
    """A capability: the consumers use a connection owned by an actor.

    `WorkerApp` then supervises, rest_for_one, the actor ``connection_actor()`` makes
    and, after it, the consumer, which asks the actor for the connection
    (`GetConnection`) and opens its source on it. When the connection is lost, the
    actor crashes and the consumer is rebuilt on a new one.
    """

    def connection_actor(self) -> Callable[[], Actor[Any]]:
        """A factory of the actor that owns a connection (see `BrokerConnection`)."""

    async def open_source(self, queue: str, *, prefetch: int, connection: Any = None) -> Source:
        """Start consuming ``queue`` on ``connection`` (it stays open on close).

        Such a source applies no settlement by itself: its owner runs its
        ``settle_forever`` (in a `WorkerApp`, the intake's ``settler`` actor from
        `IntakeHelpers`). Without it, decisions wait and the credit runs out.
        """


@runtime_checkable
class IntakeHelpers(Protocol):
    """A capability: actors that work beside the consumer (e.g. Redis lease keepers).

    `WorkerApp` starts them after the consumer, under the same rest_for_one
    supervisor; they ask the consumer for its source with `GetSource`.
    """

    def intake_actors(self, queue: str) -> list[tuple[str, Callable[[], Actor[Any]]]]:
        """The helper actors of a consumer of ``queue``: (name, factory) pairs."""


@runtime_checkable
class BatchPublisher(Protocol):
    """A capability: publish several messages to one queue together, in order.

    As many `Backend.publish` calls one after the other would, in fewer round trips;
    each message is published or fails on its own.
    """

    async def publish_many(
        self,
        queue: str,
        messages: Sequence[tuple[Any, MessageProperties | None]],
        *,
        delay: float = 0.0,
    ) -> list[str | Exception]:
        """Publish ``(payload, properties)`` pairs, in order; each one's id or error.

        An item that failed does not stop the others: its place in the answer holds
        its exception (say `BackendError`: it may or may not have reached the broker,
        as with `publish`).
        """


@runtime_checkable
class FairQueues(Protocol):
    """A capability: queues shared fairly across tenants (see `FairShares`).

    A fair queue keeps a sub-queue per tenant (the ``x-tenant`` header) and hands
    out the next message by weighted turns over the tenants with ready work, in
    O(1) whatever their number, holding each tenant's concurrency limit across
    every consumer. A queue not declared fair is first in, first out, unchanged.
    """

    def share_fairly(self, queue: str, shares: FairShares) -> None:
        """Declare ``queue`` fair with ``shares``, for publishers and consumers alike."""

    def fair_shares(self, queue: str) -> FairShares | None:
        """The shares ``queue`` was declared with here, or None (first in, first out)."""

    def for_tenants(self, tenants: Collection[str]) -> Backend:
        """The same backend, whose sources of fair queues take only ``tenants``' messages."""
