"""`TurnBatcher`: what callers submit in one event-loop turn, sent together.

No task of its own: the first caller of a turn becomes the batch's sender. It yields
once, so that every coroutine ready in this turn has its go and may add its item;
then it sends them all in one go (one pipeline, one round trip), in the order they
were submitted, and answers each caller with its own reply or error. The others just
wait for their answer.

A sender cancelled before it sends hands the batch to the first caller still
waiting. Once sending, it finishes the send for the others (shielded, within
``timeout``) before its own cancellation goes on. Nobody waits for ever: a failed
send fails every caller of the batch with that error, and `close` fails every
caller not yet answered and stops the sends under way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel

from ._waiter import AsyncioWaiter, TrioWaiter, waiter_class

T = TypeVar("T")
R = TypeVar("R")

_UNANSWERED = object()
_CLOSED = "closed before it was answered"
_INTERRUPTED = "the caller sending its batch was cancelled mid-send"


class _Slot(Generic[T]):
    """One caller's item, its answer, and whether it must send its batch."""

    __slots__ = ("answered", "error", "event", "item", "left", "reply", "sends")

    def __init__(self, item: T, *, sends: bool, waiter: type[AsyncioWaiter | TrioWaiter]) -> None:
        self.item = item
        # only a caller that waits for its answer needs an event (a sender gets its
        # answer from its own send): an event costs more than the rest of the slot
        self.event = None if sends else waiter()
        self.sends = sends  # this caller sends the batch (first, or handed it)
        self.left = False  # cancelled before the send: nothing to send for it
        self.answered = False
        self.reply: object = _UNANSWERED
        self.error: Exception | None = None

    @property
    def waiting(self) -> bool:
        return not (self.answered or self.left)

    def answer(self, reply: object) -> None:
        """Give the caller ``reply`` (an `Exception` is raised at it); once only."""
        if self.answered:
            return
        self.answered = True
        if isinstance(reply, Exception):
            self.error = reply
        else:
            self.reply = reply
        if self.event is not None:
            self.event.set()

    def outcome(self) -> object:
        if self.error is not None:
            raise self.error
        return self.reply


class _Batch(Generic[T]):
    __slots__ = ("closed", "scope", "sending", "slots")

    def __init__(self) -> None:
        self.slots: list[_Slot[T]] = []
        self.sending = False  # taken by its sender: nobody joins it any more
        self.scope = anyio.CancelScope()  # around its send: `close` stops it
        self.closed = False  # `close` answered its callers and stopped its send


class TurnBatcher(Generic[T, R]):
    """Sends the items submitted in one event-loop turn together, by `send`.

    Args:
        send: Sends items (in submission order) and returns one reply per item, an
            `Exception` for an item that failed on its own; raising fails them all.
        lost: The error (given why) of a caller whose answer is lost: `close` came
            first, or the caller sending its batch was cancelled mid-send and the
            send did not finish.
        timeout: Seconds a sender that was cancelled still gives the send, for the
            others waiting on it; past that, they all fail with `TimeoutError`.
    """

    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[Sequence[R | Exception]]],
        *,
        lost: Callable[[str], Exception],
        timeout: float,
    ) -> None:
        self._send = send
        self._lost = lost
        self._timeout = timeout
        self._open: _Batch[T] | None = None  # the batch this turn's items join
        self._waiter: type[AsyncioWaiter | TrioWaiter] | None = None  # of the loop it runs on
        self._unanswered: set[_Batch[T]] = set()  # opened, not all answered: for close
        self.sent = 0
        """Batches sent (each one call of ``send``)."""

    async def submit(self, item: T) -> R:
        """Send ``item`` with the others of this event-loop turn; its reply.

        Raises:
            Exception: Its own error from ``send``, the batch's if the whole send
                failed, or the ``lost`` error if `close` came first.
        """
        batch = self._open
        if batch is None:
            batch = self._open = _Batch()
            self._unanswered.add(batch)
        waiter = self._waiter
        if waiter is None:  # a batcher runs on one event loop library
            waiter = self._waiter = waiter_class()
        slot = _Slot(item, sends=not batch.slots, waiter=waiter)
        batch.slots.append(slot)
        if slot.sends:
            try:
                await anyio.lowlevel.checkpoint()  # this turn's other callers join
            except BaseException:
                self._leave(batch, slot)
                raise
        else:
            assert slot.event is not None
            try:
                await slot.event.wait()
            except BaseException:
                self._leave(batch, slot)
                raise
        if slot.sends and not slot.answered:
            await self._flush(batch, slot)
        return slot.outcome()  # type: ignore[return-value]  # a reply of send's

    def _leave(self, batch: _Batch[T], slot: _Slot[T]) -> None:
        """``slot``'s caller was cancelled: send nothing for it, hand on its duty."""
        if batch.sending:
            return  # sent or being sent: the send goes on for the others
        slot.left = True
        if not slot.sends or slot.answered:
            return
        for other in batch.slots:
            if other.waiting:  # a caller that waits: it has an event
                assert other.event is not None
                other.sends = True
                other.event.set()
                return
        self._forget(batch)  # nobody left to send it: a new batch for later callers

    def _forget(self, batch: _Batch[T]) -> None:
        if self._open is batch:
            self._open = None
        self._unanswered.discard(batch)

    async def _flush(self, batch: _Batch[T], slot: _Slot[T]) -> None:
        """Send ``batch`` (``slot`` is its sender's) and answer every caller."""
        if self._open is batch:
            self._open = None  # later callers open the next batch
        batch.sending = True
        slots = [s for s in batch.slots if s.waiting]
        replies: Sequence[R | Exception] | None = None
        try:
            self.sent += 1
            scope = batch.scope  # `close` cancels it
            if len(slots) > 1:  # others wait on it: a cancelled sender still sends
                scope.shield = True
                scope.deadline = anyio.current_time() + self._timeout
            with scope:  # one scope for all three: each costs microseconds
                replies = await self._send([s.item for s in slots])
            if replies is None and not batch.closed:
                raise TimeoutError(f"the batch's send took more than {self._timeout} s")
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else self._lost(_INTERRUPTED)
            for each in slots:
                each.answer(failure)
            raise
        finally:
            self._unanswered.discard(batch)
        if replies is None:
            return  # `close` stopped the send, and answered everyone
        for each, reply in zip(slots, replies, strict=True):
            each.answer(reply)

    def close(self) -> None:
        """Fail every caller not answered yet with the ``lost`` error.

        A send under way is stopped (cancelled where it waits): a server that went
        silent keeps nobody waiting.
        """
        self._open = None
        batches, self._unanswered = self._unanswered, set()
        for batch in batches:
            batch.closed = True
            for slot in batch.slots:
                if slot.waiting:
                    slot.answer(self._lost(_CLOSED))
            batch.scope.cancel()
