"""`Pool`: supervises worker actors and hands deliveries only to free ones."""

from __future__ import annotations

import contextlib
import enum
import os
import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import attrs

from foxactors._ack import AckHandle
from foxactors._actor import ActorRef
from foxactors._errors import ActorError, ActorStopped, MailboxFull
from foxactors._lifecycle import Exit
from foxactors._message import Delivery, Outcome
from foxactors._spec import ChildSpec
from foxactors._supervisor import Supervisor, SupervisorStatistics
from foxactors._validate import coerce_enum, require_int, require_seconds

from ._messages import RETIRE, Handback, Recycle, ReturnPending
from ._work import Batch, BatchOutcomes, Deliveries, one_or_batch


class PoolStrategy(enum.Enum):
    """How the pool picks among workers with free capacity."""

    ROUND_ROBIN = "round_robin"
    RANDOM = "random"
    LEAST_LOADED = "least_loaded"


LOOKAHEAD = 16  # unstarted deliveries a busy worker may hold


def resident_memory() -> int:
    """Bytes of memory the process has resident (Linux: ``/proc/self/statm``)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@attrs.frozen
class MemoryLimit:
    """When a pool recycles its workers for memory.

    Attributes:
        bytes: The limit on what ``measure`` returns.
        interval: Seconds between measurements.
        measure: Returns the memory in use, in bytes (default: the process's
            resident set, `resident_memory`).
    """

    bytes: int
    interval: float = 5.0
    measure: Callable[[], int] = resident_memory

    def __attrs_post_init__(self) -> None:
        require_int("memory limit (bytes)", self.bytes, 1)
        require_seconds("memory check interval", self.interval, positive=True)


@attrs.frozen
class PoolStatistics(SupervisorStatistics):
    """A snapshot of a worker pool: a supervisor's, plus where its work is.

    Work is counted in pieces: a delivery, or a batch for a batch handler.

    Attributes:
        workers: Worker actors.
        capacity: Pieces of work each worker runs at once.
        busy: Workers holding work (started or queued behind what they run).
        in_flight: Pieces the workers hold, started or not.
        lookaheads: Of those, pieces queued behind a busy worker so that it starts
            them without waiting to be woken; a worker that goes idle takes them over.
        waiting: Pieces waiting in the pool for a worker with room.
        recycled: Workers recycled (``with_worker_recycling``) since the pool
            started; they count in ``restarts`` but not in ``recent_restarts``.
    """

    workers: int
    capacity: int
    busy: int
    in_flight: int
    lookaheads: int
    waiting: int
    recycled: int


class Pool(Supervisor):
    """A supervisor of worker actors that dispatches by demand.

    A delivery goes to a worker only while that worker has fewer than ``capacity``
    deliveries in hand (1 by default); otherwise it waits in the pool. So a slow
    message never strands others behind it while a worker sits idle, and the
    concurrency of the pool is ``workers * capacity``.

    With a ``memory`` limit, the pool measures the process every ``interval``
    seconds and, while it is above the limit, recycles one worker at a time, in turn,
    each once it has finished what it holds (see `MemoryLimit`).
    """

    def __init__(
        self,
        workers: Sequence[ChildSpec],
        *,
        upstream: str | Callable[[], str],
        strategy: PoolStrategy | str = PoolStrategy.ROUND_ROBIN,
        capacity: int = 1,
        max_restarts: int = 10,
        within: float = 10.0,
        memory: MemoryLimit | None = None,
    ) -> None:
        super().__init__(workers, strategy="one_for_one", max_restarts=max_restarts, within=within)
        self._pick = coerce_enum(PoolStrategy, strategy, "pool strategy")
        self._memory = memory
        self._capacity = capacity
        self._upstream_path = upstream
        self._pending: deque[Delivery | Batch] = deque()
        self._assigned: dict[AckHandle, int] = {}
        # the batches among the assigned work, by the handle `_assigned` keys them by:
        # a crash of the pool must give back all of a running batch, not only its key
        self._batches: dict[AckHandle, Batch] = {}
        self._next = 0
        self._recycled = 0

    async def on_start(self) -> None:
        """Start the workers, then learn their references."""
        await super().on_start()
        self._workers: list[ActorRef[Any]] = list(self.child_refs())
        self._load = [0] * len(self._workers)
        # A busy worker may hold up to LOOKAHEAD unstarted deliveries, so that it
        # starts the next without waiting to be woken; an idle worker takes the
        # newest back. Oldest first; a hint: `_retract` checks with the worker.
        self._ahead: list[deque[Delivery | Batch]] = [deque() for _ in self._workers]
        # Outcomes go upstream together while more messages wait in the mailbox.
        self._outbox: list[Outcome] = []
        self._free = self._capacity * len(self._workers)  # spare slots, all workers
        self._given = 0  # pieces of work the workers hold (started or not)
        self._limit = (self._capacity + LOOKAHEAD) * len(self._workers)
        # The workers that just finished a piece, latest last: each has room for one.
        self._hints: list[int] = []
        self._next_ahead = 0  # where the search for lookahead room starts, in turn
        # Found when the first outcomes go back, not now: the upstream may not exist
        # yet (a consumer in a subtree started after the pool). Its reference then
        # stays valid across restarts.
        self._up: ActorRef[Any] | None = None
        if self._memory is not None:
            self.start_task(self._watch_memory, self._memory)

    async def _watch_memory(self, limit: MemoryLimit) -> None:
        """While the process is above the limit, retire one worker per interval."""
        turn = 0
        while True:
            await anyio.sleep(limit.interval)
            used = limit.measure()
            if used > limit.bytes:
                worker = self._workers[turn % len(self._workers)]
                turn += 1
                self.log.warning(
                    "pool.memory_high", resident=used, limit=limit.bytes, worker=worker.path
                )
                with contextlib.suppress(ActorStopped):  # the pool is stopping
                    await worker.tell(RETIRE)  # after what it holds; it asks to be recycled

    def statistics(self) -> PoolStatistics:
        """Return the supervisor's figures and where the pool's work is now."""
        supervisor = super().statistics()
        return PoolStatistics(
            **attrs.asdict(supervisor, recurse=False),
            workers=len(self._workers),
            capacity=self._capacity,
            busy=sum(1 for load in self._load if load),
            in_flight=self._given,
            lookaheads=sum(map(len, self._ahead)),
            waiting=len(self._pending),
            recycled=self._recycled,
        )

    async def receive(self, message: Any) -> Any:
        """Dispatch work (deliveries, batches), pass outcomes back, and supervise."""
        kind = type(message)
        reply = None
        if kind is Outcome:  # the most frequent: one per message
            await self._outcomes_back(message)
        elif kind is Deliveries:
            self._pending.extend(message.items)
            await self._dispatch_pending()
        elif kind is Delivery or kind is Batch:
            # work waiting means no room (room is used as soon as it appears): queue it
            if self._pending or not await self._place(message):
                self._pending.append(message)
        elif kind is BatchOutcomes:
            await self._returned(message.outcomes[0].delivery.handle, message.outcomes)
        elif kind is Handback:
            work = message.work
            index = self._unassign(_key(work))
            if index is not None:
                self._release(index)
                with contextlib.suppress(ValueError):
                    self._ahead[index].remove(work)
            self._pending.appendleft(work)
            await self._dispatch_pending()
        elif kind is Recycle:
            await self._recycle(message.worker)
        elif kind is ReturnPending:
            reply = self._return_pending()
        else:
            reply = await super().receive(message)
        outbox = self._outbox  # whatever came last, collected outcomes go on (see below)
        if outbox and (len(outbox) >= 64 or not self.mailbox_depth):
            await self._send_outcomes()
        return reply

    async def _outcomes_back(self, message: Outcome) -> None:
        """Workers finished pieces of work: free their slots, collect the outcomes.

        The outcomes queued right behind ``message`` are booked in the same turn.
        """
        more = self._take_queued(Outcome)
        outbox = self._outbox
        outbox.append(message)
        if more:
            outbox.extend(more)  # first: on_stop sends the outbox on, even after a crash
        assigned, load, capacity = self._assigned, self._load, self._capacity
        emptied: list[int] | None = None
        self._hints = hints = []
        for outcome in (message, *more) if more else (message,):
            index = assigned.pop(outcome.delivery.handle, None)
            if index is not None:
                hints.append(index)
                load[index] -= 1
                self._given -= 1
                if load[index] < capacity:
                    self._free += 1
                    if not load[index]:
                        emptied = [index] if emptied is None else [*emptied, index]
                ahead = self._ahead[index]
                if ahead:  # it has moved on to its oldest lookahead
                    ahead.popleft()
        if self._pending:
            await self._dispatch_pending()
        for idle in emptied or ():
            if not load[idle]:  # nothing given to it: it takes a lookahead back
                await self._reclaim_for(idle)

    async def _returned(self, key: AckHandle, outcomes: tuple[Outcome, ...]) -> None:
        """A worker finished a piece of work: free its slot, pass the outcomes back."""
        index = self._unassign(key)
        if index is not None:
            self._release(index)
            ahead = self._ahead[index]
            if ahead:  # it has moved on to its oldest lookahead
                ahead.popleft()
        self._outbox.extend(outcomes)
        self._hints = [] if index is None else [index]
        await self._dispatch_pending()
        if index is not None and self._load[index] == 0:
            await self._reclaim_for(index)

    def _unassign(self, key: AckHandle) -> int | None:
        """Forget the work keyed by ``key``; return the worker that held it (if any)."""
        if self._batches:
            self._batches.pop(key, None)
        return self._assigned.pop(key, None)

    def _release(self, index: int) -> None:
        """One piece of work left worker ``index`` (done, handed back or retracted)."""
        self._load[index] -= 1
        self._given -= 1
        if self._load[index] < self._capacity:
            self._free += 1

    def _retract(self, index: int) -> Delivery | Batch | None:
        """Take back worker ``index``'s newest lookahead if it has not started it."""
        ahead = self._ahead[index]
        while ahead:
            held = ahead.pop()
            if self._workers[index].retract(held):
                self._unassign(_key(held))
                self._release(index)
                return held
        return None

    def _choose(self) -> int | None:
        if not self._free:
            return None
        load, capacity = self._load, self._capacity
        if self._pick is PoolStrategy.ROUND_ROBIN:
            count = len(load)
            for step in range(count):
                index = (self._next + step) % count
                if load[index] < capacity:
                    self._next = index + 1
                    return index
            return None
        free = [i for i, n in enumerate(load) if n < capacity]
        if not free:
            return None
        if self._pick is PoolStrategy.RANDOM:
            return random.choice(free)
        return min(free, key=load.__getitem__)

    async def _send_outcomes(self, force: bool = False) -> None:
        """Send collected outcomes upstream once no more messages wait (or 64 wait)."""
        outbox = self._outbox
        if not outbox or (self.mailbox_depth and len(outbox) < 64 and not force):
            return
        self._outbox = []
        if self._up is None:  # a path, or a function giving it (the outcome route)
            path = self._upstream_path
            self._up = self.find(path if isinstance(path, str) else path())
        await self._up.tell(one_or_batch(outbox))

    async def _place(self, work: Delivery | Batch) -> bool:
        """Give ``work`` to a free worker, or as a lookahead to a busy one, in turn."""
        index = self._room(work)
        if index is None:
            return False
        if not self._book(index, work):  # its mailbox is full: wait for room
            await self._workers[index].tell(work)
        return True

    def _room(self, work: Delivery | Batch) -> int | None:
        """The worker to take ``work``: a free one, or a busy one with lookahead room."""
        index = self._choose() if self._free else None
        if index is None:  # every worker is busy
            if self._given >= self._limit:  # and holds all the lookaheads it may
                return None
            hints, load, top = self._hints, self._load, self._capacity + LOOKAHEAD
            while hints:
                index = hints.pop()
                if load[index] < top:
                    break
            else:
                index = self._next_with_room()
                if index is None:
                    return None
            self._ahead[index].append(work)
        return index

    def _next_with_room(self) -> int | None:
        """The next worker, in turn, that may take one more lookahead."""
        load, top, count = self._load, self._capacity + LOOKAHEAD, len(self._load)
        for step in range(count):
            index = (self._next_ahead + step) % count
            if load[index] < top:
                self._next_ahead = (index + 1) % count
                return index
        return None

    async def _reclaim_for(self, idle: int) -> None:
        """An idle worker takes back a lookahead that a busy one has not started."""
        ahead = self._ahead
        while any(ahead):
            held = self._retract(max(range(len(ahead)), key=lambda i: len(ahead[i])))
            if held is not None:
                await self._give(idle, held)
                return

    async def _give(self, index: int, work: Delivery | Batch) -> None:
        if not self._book(index, work):
            await self._workers[index].tell(work)

    def _book(self, index: int, work: Delivery | Batch) -> bool:
        """Count ``work`` as worker ``index``'s and send it if its mailbox has room.

        Returns False if the mailbox is full: the caller then waits to tell it.
        Sending without a coroutine matters here: this runs once per message.
        """
        load = self._load
        if load[index] < self._capacity:
            self._free -= 1
        load[index] += 1
        self._given += 1
        if type(work) is Delivery:
            self._assigned[work.handle] = index
        elif isinstance(work, Batch):
            key = work.deliveries[0].handle
            self._assigned[key] = index
            self._batches[key] = work
        try:
            self._workers[index].tell_nowait(work)
        except MailboxFull:
            return False
        return True

    async def _recycle(self, worker: ActorRef[Any]) -> None:
        """Replace a worker's instance with a fresh one, as planned maintenance.

        It gets no new work meanwhile; it is stopped (draining what it holds) and
        started again on the same reference. Not a crash: not counted against the
        restart intensity.
        """
        index = self._workers.index(worker)
        while (held := self._retract(index)) is not None:  # not for the old instance
            self._pending.appendleft(held)
        self._load[index] += self._capacity  # no new work while it is replaced
        self._free -= self._capacity
        try:
            recycled = await self.recycle_child(worker.name)
            self._recycled += 1
            if recycled:
                self.log.info("worker.recycled", worker=worker.path)
        finally:
            self._load[index] -= self._capacity
            self._free += self._capacity
        await self._dispatch_pending()

    async def _dispatch_pending(self) -> None:
        pending = self._pending
        while pending:
            if not self._free and self._given >= self._limit:  # no room anywhere
                return
            work = pending[0]
            index = self._room(work)
            if index is None:
                return
            if not self._book(index, work):  # its mailbox is full: wait for room
                await self._workers[index].tell(work)
            pending.popleft()

    def _return_pending(self) -> int:
        """Requeue deliveries no worker has started (shutdown, or a crash of the pool)."""
        for index in range(len(self._ahead)):  # unstarted lookaheads go back too
            while (held := self._retract(index)) is not None:
                self._pending.append(held)
        returned = 0
        while self._pending:
            work = self._pending.popleft()
            for delivery in work.deliveries if isinstance(work, Batch) else (work,):
                if not delivery.handle.settled:
                    delivery.handle.requeue()
                    returned += 1
        return returned

    async def on_crash(self, message: Any, error: Exception) -> None:
        """Return the work in hand no worker got (`on_stop` requeues what waits)."""
        kind = type(message)
        if kind is Deliveries or kind is Delivery or kind is Batch:
            work = message.items if kind is Deliveries else (message,)
            queued = set(map(id, self._pending))
            self._pending.extend(
                w for w in work if _key(w) not in self._assigned and id(w) not in queued
            )

    async def on_stop(self, exit: Exit) -> None:
        """Pass on collected outcomes, return what no worker started, stop the workers.

        Then return what the workers were running when they stopped: when the pool
        alone stops (it crashed and restarts), nobody else would settle it, and it
        would hold its credit for good. (When the whole pipeline stops, the consumer
        has returned it already: its handle is stale, nothing to do.)
        """
        with contextlib.suppress(ActorError):
            await self._send_outcomes(force=True)
        self._return_pending()
        await super().on_stop(exit)
        batches = self._batches
        for key in self._assigned:
            batch = batches.get(key)
            for handle in (key,) if batch is None else (d.handle for d in batch.deliveries):
                if not handle.settled and not handle.stale:
                    handle.requeue()
        self._assigned.clear()
        batches.clear()


def _key(work: Delivery | Batch) -> AckHandle:
    """The handle that identifies a piece of work in the pool's bookkeeping."""
    return work.deliveries[0].handle if isinstance(work, Batch) else work.handle
