"""`TurnBatcher` (Redis publishes and job store commands, anyio only) with a fake send.

Runs on asyncio and trio. Which caller comes first in a turn is up to the scheduler
(trio may run a turn's tasks in either order), so the tests record the order in which
the callers submitted and check the batches against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foxactors._batch import TurnBatcher
from foxactors.testing import anyio_backend_options

pytestmark = pytest.mark.anyio


class Lost(Exception):
    """The lost error of these tests' batchers."""


class FakeSend:
    """Records each batch; answers each item with ``item * 10`` (a negative: an error)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = anyio.Event()
        self.hold = False
        self.fail: Exception | None = None

    async def __call__(self, items: list[int]) -> Sequence[int | Exception]:
        self.batches.append(list(items))
        if self.hold:
            await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


class Callers:
    """Submits items from tasks; records who submitted in which order, and the outcomes."""

    def __init__(self, send: FakeSend) -> None:
        self.turns: TurnBatcher[int, int] = TurnBatcher(send, lost=Lost, timeout=30)
        self.order: list[int] = []
        self.outcomes: dict[int, Any] = {}
        self.scopes: dict[int, anyio.CancelScope] = {}

    async def submit(self, item: int) -> None:
        with self.scopes.setdefault(item, anyio.CancelScope()):
            self.order.append(item)  # the batcher queues it before its first await
            try:
                self.outcomes[item] = await self.turns.submit(item)
            except Exception as exc:
                self.outcomes[item] = f"{type(exc).__name__}: {exc}"


async def test_a_turns_submits_are_sent_together_in_call_order() -> None:
    send = FakeSend()
    callers = Callers(send)
    async with anyio.create_task_group() as tg:
        for i in (3, 1, -2, 7):
            tg.start_soon(callers.submit, i)
    assert send.batches == [callers.order]
    assert callers.outcomes == {3: 30, 1: 10, -2: "ValueError: bad -2", 7: 70}
    assert await callers.turns.submit(5) == 50  # alone: a batch of its own
    assert send.batches[-1] == [5]
    assert callers.turns.sent == 2


async def test_one_callers_submits_keep_their_order() -> None:
    send = FakeSend()
    turns: TurnBatcher[int, int] = TurnBatcher(send, lost=Lost, timeout=30)
    assert [await turns.submit(i) for i in range(5)] == [0, 10, 20, 30, 40]
    assert send.batches == [[0], [1], [2], [3], [4]]


async def test_a_failed_send_fails_every_caller_of_the_batch() -> None:
    send = FakeSend()
    send.fail = ConnectionError("gone")
    callers = Callers(send)
    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(callers.submit, i)
    assert send.batches == [callers.order]
    assert callers.outcomes == dict.fromkeys(range(4), "ConnectionError: gone")


async def test_a_sender_cancelled_before_sending_hands_the_batch_on() -> None:
    send = FakeSend()
    callers = Callers(send)

    async def second() -> None:
        callers.scopes.setdefault(0, anyio.CancelScope()).cancel()
        await callers.submit(1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(callers.submit, 0)  # first (on asyncio): the sender, cancelled
        tg.start_soon(second)  # in its one yield; 1 sends instead
    assert callers.outcomes == {1: 10}  # 0's caller was cancelled: no answer for it
    # 1 sent the batch. On trio, which shuffles the tasks it runs, 0 may start
    # second and join the batch before its cancel lands: then it goes out too (the
    # send had begun), though its caller never learns of it.
    assert send.batches in ([[1]], [[1, 0]])


async def test_a_sender_cancelled_mid_send_still_answers_the_others() -> None:
    send = FakeSend()
    send.hold = True
    callers = Callers(send)
    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(callers.submit, i)
        await anyio.wait_all_tasks_blocked()
        assert send.batches == [callers.order]
        sender = callers.order[0]
        callers.scopes[sender].cancel()
        await anyio.wait_all_tasks_blocked()
        send.release.set()
    # The send went on, shielded: everyone gets the reply (the sender too: its
    # cancellation comes at its next checkpoint, after its scope ended here).
    assert callers.outcomes == {i: i * 10 for i in range(3)}
    assert send.batches == [callers.order]


async def test_a_send_past_the_timeout_fails_every_caller_with_timeout_error() -> None:
    send = FakeSend()
    send.hold = True  # never released: a server gone silent
    callers = Callers(send)
    callers.turns = TurnBatcher(send, lost=Lost, timeout=5)
    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(callers.submit, i)
        await anyio.wait_all_tasks_blocked()
        callers.scopes[callers.order[0]].cancel()  # the sender: shielded, within timeout
    assert anyio.current_time() - start == pytest.approx(5, abs=0.01)  # virtual time
    late = "TimeoutError: the batch's send took more than 5 s"
    assert [callers.outcomes.get(i) for i in callers.order[1:]] == [late, late]
    assert send.batches == [callers.order]
    send.hold = False
    assert await callers.turns.submit(4) == 40  # usable after


async def test_close_answers_a_pending_batch_and_stops_its_send() -> None:
    send = FakeSend()
    send.hold = True  # never released: a server gone silent
    callers = Callers(send)
    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(callers.submit, i)
        await anyio.wait_all_tasks_blocked()
        assert send.batches == [callers.order]
        callers.turns.close()
    assert callers.outcomes == dict.fromkeys(range(3), "Lost: closed before it was answered")
    send.hold = False
    assert await callers.turns.submit(4) == 40  # usable again after a close


async def test_close_answers_a_batch_before_its_send() -> None:
    send = FakeSend()
    callers = Callers(send)
    async with anyio.create_task_group() as tg:
        tg.start_soon(callers.submit, 0)
        tg.start_soon(callers.submit, 1)
        while len(callers.order) < 2:
            await anyio.lowlevel.checkpoint()
        early = not send.batches  # both queued, the sender in its yield (unless it ran)
        if early:
            callers.turns.close()
    if early:
        assert callers.outcomes == dict.fromkeys((0, 1), "Lost: closed before it was answered")
        assert send.batches == []
    else:
        assert callers.outcomes == {0: 0, 1: 10}


@pytest.mark.parametrize("backend_name", ["asyncio", "trio"])
@settings(max_examples=40, deadline=None)
@given(
    calls=st.lists(
        st.tuples(st.booleans(), st.integers(0, 3)), min_size=1, max_size=12
    ),  # (cancelled?, after how many yields)
)
def test_every_caller_gets_its_own_reply_and_each_item_goes_once_in_order(
    backend_name: str, calls: list[tuple[bool, int]]
) -> None:
    """Callers cancelled at any moment: the rest are answered, nothing is sent twice."""
    send = FakeSend()

    async def main() -> Callers:
        callers = Callers(send)
        async with anyio.create_task_group() as tg:
            for k in range(len(calls)):
                tg.start_soon(callers.submit, k)
            for step in range(4):
                for k, (cancel, when) in enumerate(calls):
                    if cancel and when == step:
                        callers.scopes.setdefault(k, anyio.CancelScope()).cancel()
                await anyio.lowlevel.checkpoint()
        return callers

    name, options = anyio_backend_options(backend_name)
    callers = anyio.run(main, backend=name, backend_options=options)
    kept = {k for k, (cancel, _) in enumerate(calls) if not cancel}
    assert kept <= set(callers.outcomes)
    assert all(callers.outcomes[k] == k * 10 for k in callers.outcomes)
    sent = [item for batch in send.batches for item in batch]
    assert set(callers.outcomes) <= set(sent)
    assert sent == [k for k in callers.order if k in set(sent)]  # once each, in call order
