"""The bounded mailbox behind every actor.

A mailbox is a deque with a capacity, plus an unbounded *system lane* for control
messages (stop requests, death-watch notices, child exits), which are few by
construction and must never be refused. It has exactly one receiver: the actor's
message loop.

The fast paths never touch the event loop: ``put`` appends when there is room and
the loop pops while items are queued. Only an empty mailbox (receiver) or a full one
(sender) waits, on an ``anyio.Event``. Blocked senders queue in FIFO order and hand
their message over when a slot frees, so a late sender never overtakes them.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Generic, TypeVar

import anyio
import attrs

from ._errors import ActorStopped, MailboxFull
from ._waiter import AsyncioWaiter, TrioWaiter, waiter_class

T = TypeVar("T")


@attrs.frozen
class MailboxStatistics:
    """A snapshot of one mailbox.

    Attributes:
        depth: Messages queued, not counting the one being handled.
        capacity: Most messages the mailbox holds before ``tell`` waits.
        blocked_senders: Senders waiting for room.
        open: False once the actor stopped accepting messages.
    """

    depth: int
    capacity: int
    blocked_senders: int
    open: bool


class _BlockedSend:
    __slots__ = ("delivered", "error", "event", "item")

    def __init__(self, item: object) -> None:
        self.item = item
        self.event = anyio.Event()
        self.delivered = False
        self.error: ActorStopped | None = None


class Mailbox(Generic[T]):
    """A bounded FIFO with backpressure, a system lane and one receiver.

    Args:
        capacity: Most user messages held at once (at least 1).
        owner: The owning actor's path, used in error messages.
    """

    __slots__ = (
        "_waiter_class",
        "blocked",
        "capacity",
        "items",
        "open",
        "owner",
        "system",
        "waiter",
    )

    def __init__(self, capacity: int, owner: str) -> None:
        self.items: deque[T] = deque()
        self.system: deque[object] = deque()
        self.capacity = capacity
        self.owner = owner
        self.open = True
        self.blocked: deque[_BlockedSend] = deque()
        self.waiter: AsyncioWaiter | TrioWaiter | None = None
        self._waiter_class: type[AsyncioWaiter | TrioWaiter] | None = None

    def _refuse(self) -> ActorStopped:
        return ActorStopped(f"actor {self.owner} is stopped; the message was not delivered")

    def put_nowait(self, item: T) -> None:
        """Enqueue ``item`` or raise at once.

        Raises:
            MailboxFull: The mailbox is at capacity; nothing was enqueued.
            ActorStopped: The actor no longer accepts messages.
        """
        if not self.open:
            raise self._refuse()
        if len(self.items) >= self.capacity:
            raise MailboxFull(
                f"mailbox of {self.owner} is full ({self.capacity} messages); "
                "use 'await tell()' to wait for room"
            )
        self.items.append(item)
        if self.waiter is not None:
            self.wake()

    async def put(self, item: T) -> None:
        """Enqueue ``item``, waiting while the mailbox is full.

        Does not checkpoint when there is room. If cancelled while waiting, the item
        may or may not have been delivered, as with anyio memory streams.

        Raises:
            ActorStopped: The actor no longer accepts messages (also while waiting).
        """
        if self.open and len(self.items) < self.capacity:
            self.items.append(item)
            if self.waiter is not None:
                self.wake()
            return
        if not self.open:
            raise self._refuse()
        blocked = _BlockedSend(item)
        self.blocked.append(blocked)
        try:
            await blocked.event.wait()
        except BaseException:
            if not blocked.delivered and blocked.error is None:
                self.blocked.remove(blocked)
            raise
        if blocked.error is not None:
            raise blocked.error

    def put_system(self, item: object) -> None:
        """Enqueue a control message; never blocks and is never refused."""
        self.system.append(item)
        if self.waiter is not None:
            self.wake()

    def wake(self) -> None:
        """Wake the receiver if it waits for a message."""
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            waiter.set()

    def admit_blocked(self) -> None:
        """Move the oldest blocked sender's item in; call after popping an item."""
        blocked = self.blocked.popleft()
        blocked.delivered = True
        self.items.append(blocked.item)  # type: ignore[arg-type]
        blocked.event.set()

    async def wait(self) -> None:
        """Wait until a user or system message is queued (receiver side)."""
        if self.items or self.system:
            return
        if self._waiter_class is None:
            self._waiter_class = waiter_class()
        waiter = self.waiter = self._waiter_class()
        try:
            await waiter.wait()
        finally:
            self.waiter = None

    def close(self) -> None:
        """Refuse new messages; blocked senders fail with `ActorStopped`.

        Messages already queued stay queued, to be drained or taken with `take_all`.
        """
        if not self.open:
            return
        self.open = False
        while self.blocked:
            blocked = self.blocked.popleft()
            blocked.error = self._refuse()
            blocked.event.set()

    def retract(self, item: object) -> bool:
        """Remove ``item`` (by identity) if it is still queued; True if it was.

        Behind `ActorRef.retract`: a sender taking back a message the actor has
        not started (the pool moving a delivery from a busy worker to an idle one).
        """
        for position, queued in enumerate(self.items):
            if queued is item:
                del self.items[position]
                if self.blocked:
                    self.admit_blocked()
                return True
        return False

    def take_leading(self, kind: type[Any]) -> list[T]:
        """Remove and return the messages of type ``kind`` at the head, in order.

        Stops at the first message of another type, and takes nothing while a
        control message waits (those come first). Blocked senders move into the
        room freed, as when the receiver pops. For a receiver that handles a run
        of one kind at once instead of one loop turn each.
        """
        items, system, blocked = self.items, self.system, self.blocked
        taken: list[T] = []
        while items and not system and type(items[0]) is kind:
            taken.append(items.popleft())
            if blocked:
                self.admit_blocked()
        return taken

    def take_all(self) -> list[T]:
        """Remove and return every queued user message (for explicit rejection)."""
        items = list(self.items)
        self.items.clear()
        return items

    def statistics(self) -> MailboxStatistics:
        """Return a snapshot of depth, capacity and waiting senders."""
        return MailboxStatistics(
            depth=len(self.items),
            capacity=self.capacity,
            blocked_senders=len(self.blocked),
            open=self.open,
        )
