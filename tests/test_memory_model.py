"""The memory backend against a model: random operations, the same queue at every step.

A state machine publishes (with a priority and a delay), receives up to the credit,
settles each way (ack, requeue, retry or defer with a delay, dead-letter), replays
dead letters, settles handles of a closed consumer, lets virtual time pass, and
closes the consumer and opens another. A plain model (a deque per priority, a heap of due times, the
unsettled deliveries) predicts each step: which messages a receive returns, in
which order, with which attempt. After each step the model's ready, delayed, in
flight and dead counts are the backend's `queue_statistics`, and its dead letters
the backend's. Checked on the way: first in, first out within a priority, a
delayed message never delivered before its time, the credit never exceeded.

One event loop (a blocking portal, in virtual time) serves every example; its clock
moves only when a rule lets time pass, so the model reads the very time the
backend reads.
"""

from __future__ import annotations

import functools
import heapq
import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import foxactors as fa
from foxactors.backends import MemoryBackend
from foxactors.testing import VirtualTimeEventLoop

QUEUE = "model"
NORMAL = int(fa.Priority.NORMAL)
T = TypeVar("T")

priorities = st.sampled_from([None, 1, NORMAL, 9])
delays = st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.5])
steps = st.sampled_from([0.25, 0.5, 1.0, 3.0])
prefetches = st.integers(1, 4)


class StillLoop(VirtualTimeEventLoop):
    """A virtual-time loop whose clock moves only by its jumps, never with real time.

    Between two rules real time passes; on this loop it does not count, so a
    due time read by the model is the one the backend compares against.
    """

    def time(self) -> float:
        """The sum of the jumps made so far."""
        return self._virtual_offset[0]


def portal_options(loop: str) -> dict[str, Any]:
    if loop == "asyncio":
        return {"loop_factory": StillLoop}
    from trio.testing import MockClock  # noqa: PLC0415 - its clock never runs by itself

    return {"clock": MockClock(autojump_threshold=0)}


async def receive_ready(source: Any, max_count: int) -> list[fa.Delivery]:
    """What ``receive`` hands out now: nothing if it would have to wait."""
    got: list[fa.Delivery] = []
    with anyio.move_on_after(0):
        got = await source.receive(max_count)
    return got


class MemoryModel(RuleBasedStateMachine):
    """The backend and its model, stepped together (the test sets ``portal``)."""

    portal: BlockingPortal

    def __init__(self) -> None:
        super().__init__()
        self.backend = MemoryBackend()
        self.numbers = itertools.count()  # payloads: the order of publishing
        self.seq = itertools.count()  # ties among equal due times: first delayed first
        self.lanes: dict[int, deque[str]] = {}  # priority -> ready ids, next first
        self.delayed: list[tuple[float, int, str]] = []
        self.dead: list[str] = []
        self.priority: dict[str, int] = {}
        self.number: dict[str, int] = {}
        self.deliveries: dict[str, int] = {}  # the attempt a message was last given
        self.not_before: dict[str, float] = {}  # due time of a delayed message
        self.fresh: set[str] = set()  # published without delay, never delivered
        self.unsettled: dict[Any, fa.Delivery] = {}  # tag -> delivery of this consumer
        self.stale: list[fa.Delivery] = []  # unsettled when their consumer closed
        self.prefetch = 2
        self.source = self.run(self.backend.open_source, QUEUE, prefetch=self.prefetch)

    def call(self, func: Callable[..., T], *args: Any) -> T:
        """Call a plain function in the loop (where `anyio.current_time` answers)."""
        return self.portal.call(lambda: func(*args))

    def run(self, func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run a coroutine function in the loop, to its end."""
        return self.portal.call(functools.partial(func, *args, **kwargs))

    def now(self) -> float:
        return self.call(anyio.current_time)

    # -- the model's queue ---------------------------------------------------------

    def push(self, message_id: str, *, front: bool = False) -> None:
        lane = self.lanes.setdefault(self.priority[message_id], deque())
        if front:
            lane.appendleft(message_id)
        else:
            lane.append(message_id)

    def push_delayed(self, message_id: str, due: float) -> None:
        heapq.heappush(self.delayed, (due, next(self.seq), message_id))
        self.not_before[message_id] = due

    def expect(self, credit: int, now: float) -> list[str]:
        while self.delayed and self.delayed[0][0] <= now:
            self.push(heapq.heappop(self.delayed)[2])
        out: list[str] = []
        while len(out) < credit and any(self.lanes.values()):
            top = max(p for p, lane in self.lanes.items() if lane)
            out.append(self.lanes[top].popleft())
        return out

    # -- rules ---------------------------------------------------------------------

    @rule(priority=priorities, delay=delays)
    def publish(self, priority: int | None, delay: float) -> None:
        n = next(self.numbers)
        properties = fa.MessageProperties(priority=priority)
        message_id = self.run(self.backend.publish, QUEUE, n, properties=properties, delay=delay)
        self.priority[message_id] = NORMAL if priority is None else priority
        self.number[message_id] = n
        self.deliveries[message_id] = 0
        if delay > 0:
            self.push_delayed(message_id, self.now() + delay)
        else:
            self.fresh.add(message_id)
            self.push(message_id)

    @rule(max_count=st.integers(1, 5))
    def receive(self, max_count: int) -> None:
        now = self.now()
        free = self.prefetch - len(self.unsettled)
        expected = self.expect(min(max_count, free), now) if free > 0 else []
        got = self.run(receive_ready, self.source, max_count)
        assert [d.message.id for d in got] == expected
        assert len(self.unsettled) + len(got) <= self.prefetch  # the credit holds
        last_fresh: dict[int, int] = {}
        for delivery in got:
            message = delivery.message
            assert now >= self.not_before.get(message.id, now), "delivered before its time"
            self.deliveries[message.id] += 1
            assert message.attempt == self.deliveries[message.id]
            if message.id in self.fresh:  # first in, first out within a priority
                self.fresh.discard(message.id)
                priority = self.priority[message.id]
                assert self.number[message.id] > last_fresh.get(priority, -1)
                last_fresh[priority] = self.number[message.id]
            self.unsettled[delivery.handle.tag] = delivery

    def pick(self, data: st.DataObject) -> fa.Delivery:
        tag = data.draw(st.sampled_from(sorted(self.unsettled)))
        return self.unsettled.pop(tag)

    @precondition(lambda self: self.unsettled)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        assert self.call(self.pick(data).handle.ack)

    @precondition(lambda self: self.unsettled)
    @rule(data=st.data())
    def requeue(self, data: st.DataObject) -> None:
        delivery = self.pick(data)
        assert self.call(delivery.handle.requeue)
        self.push(delivery.message.id, front=True)

    @precondition(lambda self: self.unsettled)
    @rule(data=st.data(), delay=delays)
    def retry(self, data: st.DataObject, delay: float) -> None:
        delivery = self.pick(data)
        assert self.call(delivery.handle.retry, delay)
        self.push_delayed(delivery.message.id, self.now() + delay)

    @precondition(lambda self: self.unsettled)
    @rule(data=st.data(), delay=delays)
    def defer(self, data: st.DataObject, delay: float) -> None:
        delivery = self.pick(data)
        assert self.call(delivery.handle.defer, delay)
        self.deliveries[delivery.message.id] -= 1  # not an attempt
        self.push_delayed(delivery.message.id, self.now() + delay)

    @precondition(lambda self: self.unsettled)
    @rule(data=st.data())
    def dead_letter(self, data: st.DataObject) -> None:
        delivery = self.pick(data)
        assert self.call(delivery.handle.dead_letter, "model says so")
        self.dead.append(delivery.message.id)

    @precondition(lambda self: self.dead)
    @rule(limit=st.one_of(st.none(), st.integers(0, 3)))
    def replay_dead_letters(self, limit: int | None) -> None:
        replayed, self.dead = self.dead[:limit], self.dead[len(self.dead[:limit]) :]
        replay = functools.partial(self.backend.replay_dead_letters, QUEUE, limit=limit)
        assert self.call(replay) == len(replayed)
        for message_id in replayed:  # to the back, its attempts start over
            self.deliveries[message_id] = 0
            self.not_before.pop(message_id, None)
            self.push(message_id)

    @precondition(lambda self: self.stale)
    @rule(data=st.data())
    def settle_stale(self, data: st.DataObject) -> None:
        delivery = self.stale.pop(data.draw(st.integers(0, len(self.stale) - 1)))
        assert not self.call(delivery.handle.ack)  # a logged no-op: it went back

    @rule(seconds=steps)
    def advance(self, seconds: float) -> None:
        before = self.now()
        self.run(anyio.sleep, seconds)
        assert self.now() == before + seconds

    @rule(prefetch=prefetches)
    def close_and_reopen(self, prefetch: int) -> None:
        self.run(self.source.close)
        # every unsettled delivery goes back to the front, in the order delivered
        for tag in sorted(self.unsettled, reverse=True):
            self.push(self.unsettled[tag].message.id, front=True)
        self.stale += self.unsettled.values()
        self.unsettled.clear()
        self.prefetch = prefetch
        self.source = self.run(self.backend.open_source, QUEUE, prefetch=prefetch)

    # -- invariants ----------------------------------------------------------------

    @invariant()
    def counts_agree(self) -> None:
        stats = self.backend.queue_statistics(QUEUE)
        ready = sum(len(lane) for lane in self.lanes.values())
        model = (ready, len(self.delayed), len(self.unsettled), len(self.dead))
        assert (stats.ready, stats.delayed, stats.in_flight, stats.dead) == model

    @invariant()
    def dead_letters_agree(self) -> None:
        letters = self.backend.dead_letters(QUEUE)
        assert [letter.id for letter in letters] == self.dead
        assert all(letter.reason == "model says so" for letter in letters)
        assert [letter.attempts for letter in letters] == [self.deliveries[i] for i in self.dead]

    @invariant()
    def credit_holds(self) -> None:
        assert self.source.unsettled == len(self.unsettled) <= self.prefetch

    def teardown(self) -> None:
        # handles left unsettled would report themselves dropped when collected
        self.run(self.source.close)


@pytest.fixture(params=["asyncio", "trio"])
def portal(request: pytest.FixtureRequest) -> Iterator[BlockingPortal]:
    with start_blocking_portal(request.param, portal_options(request.param)) as portal:
        yield portal


def test_the_memory_backend_matches_its_model(portal: BlockingPortal) -> None:
    machine = type("MemoryModelHere", (MemoryModel,), {"portal": portal})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=40, stateful_step_count=40, deadline=None, report_multiple_bugs=False
        ),
    )
