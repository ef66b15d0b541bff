"""The memory backend's queues: ready entries by priority, delayed ones in a heap."""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import deque
from typing import TYPE_CHECKING

import anyio
import attrs

from foxactors._message import MessageProperties, effective_priority

from ._deadletter import DeadLetter

if TYPE_CHECKING:
    from ._memory_fair import FairReady

Tag = tuple[int, int]  # (consumer generation, delivery number)


@attrs.define
class Entry:
    id: str
    body: bytes
    properties: MessageProperties
    published_at: float  # wall clock (Unix seconds), what the message reports
    enqueued_at: float  # the event loop's clock: what expiration counts from
    deliveries: int = 0


class Ready:
    """Ready entries: first in, first out within a priority, higher priorities first.

    A message without a priority is at `Priority.NORMAL`, as on every backend. One
    deque per priority present, so that taking the next entry costs O(1) in the
    common case of one priority (a heap paid O(log n) per entry).
    """

    __slots__ = ("_lanes", "_order", "_top", "count")

    def __init__(self) -> None:
        self._lanes: dict[int, deque[Entry]] = {}
        self._order: list[int] = []  # priorities present, ascending (the last is next)
        self._top: deque[Entry] | None = None  # the lane of the highest, next to pop
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def push(self, entry: Entry, front: bool) -> None:
        priority = effective_priority(entry.properties.priority)
        lane = self._lanes.get(priority)
        if lane is None:
            lane = self._lanes[priority] = deque()
            bisect.insort(self._order, priority)
            self._top = self._lanes[self._order[-1]]
        if front:
            lane.appendleft(entry)
        else:
            lane.append(entry)
        self.count += 1

    def pop(self) -> Entry:
        lane = self._top
        if lane is None:
            raise IndexError("pop from an empty Ready")
        entry = lane.popleft()
        if not lane:
            del self._lanes[self._order.pop()]
            self._top = self._lanes[self._order[-1]] if self._order else None
        self.count -= 1
        return entry


class Queue:
    """One queue: ready entries by priority, a heap of delayed ones."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ready = Ready()
        self.fair: FairReady | None = None  # set when the queue is declared fair
        self.delayed: list[tuple[float, int, Entry]] = []  # (due, seq, entry)
        self.in_flight: dict[Tag, Entry] = {}
        self.dead: list[DeadLetter] = []
        self._seq = itertools.count()
        self._arrived: anyio.Event | None = None  # consumers waiting for entries
        self._idle: anyio.Event | None = None  # join() waiting for nothing to be left

    def push(self, entry: Entry, *, front: bool = False) -> None:
        self.ready.push(entry, front)
        self.arrived()

    def push_delayed(self, entry: Entry, due: float) -> None:
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
