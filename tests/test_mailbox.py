from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint

from foxactors import ActorStopped, MailboxFull
from foxactors._mailbox import Mailbox

pytestmark = pytest.mark.anyio


async def test_put_nowait_is_fifo_and_refuses_when_full() -> None:
    box: Mailbox[int] = Mailbox(2, "/t")
    box.put_nowait(1)
    box.put_nowait(2)
    with pytest.raises(MailboxFull, match="full"):
        box.put_nowait(3)
    assert list(box.items) == [1, 2]
    assert isinstance(MailboxFull("x"), anyio.WouldBlock)


async def test_blocked_senders_are_admitted_in_order() -> None:
    box: Mailbox[int] = Mailbox(1, "/t")
    box.put_nowait(0)
    async with anyio.create_task_group() as tg:
        for i in (1, 2, 3):
            tg.start_soon(box.put, i)
            await wait_all_tasks_blocked()
        assert box.statistics().blocked_senders == 3
        got: list[int] = []
        while len(got) < 4:
            got.append(box.items.popleft())
            if box.blocked:
                box.admit_blocked()
            await checkpoint()
    assert got == [0, 1, 2, 3]


async def test_cancelled_sender_does_not_deliver() -> None:
    box: Mailbox[int] = Mailbox(1, "/t")
    box.put_nowait(0)
    with anyio.move_on_after(1):
        await box.put(1)
    assert box.statistics().blocked_senders == 0
    assert list(box.items) == [0]


async def test_close_fails_blocked_senders_and_refuses_new_ones() -> None:
    box: Mailbox[int] = Mailbox(1, "/t")
    box.put_nowait(0)
    errors: list[BaseException] = []

    async def send() -> None:
        try:
            await box.put(1)
        except ActorStopped as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(send)
        await wait_all_tasks_blocked()
        box.close()
    assert len(errors) == 1
    assert "/t" in str(errors[0])
    with pytest.raises(ActorStopped):
        box.put_nowait(2)
    with pytest.raises(ActorStopped):
        await box.put(2)
    assert box.take_all() == [0]
    assert box.statistics().open is False


async def test_receiver_waits_for_user_or_system_message() -> None:
    box: Mailbox[int] = Mailbox(4, "/t")
    woke = anyio.Event()

    async def receiver() -> None:
        await box.wait()
        woke.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(receiver)
        await wait_all_tasks_blocked()
        assert not woke.is_set()
        box.put_system("stop")
    assert woke.is_set()


async def test_take_leading_takes_a_run_of_one_kind_in_order_and_admits_senders() -> None:
    box: Mailbox[object] = Mailbox(3, "/t")
    for item in (1, 2, "a"):
        box.put_nowait(item)
    async with anyio.create_task_group() as tg:
        tg.start_soon(box.put, 3)  # blocked: the mailbox is full
        await wait_all_tasks_blocked()
        assert box.take_leading(int) == [1, 2]  # stops at the first of another kind
        assert list(box.items) == ["a", 3]  # the blocked sender moved into the room
        assert box.statistics().blocked_senders == 0
        assert box.take_leading(int) == []  # "a" comes first
        box.items.popleft()
        box.put_system("stop")
        assert box.take_leading(int) == []  # a control message waits: it goes first
        box.system.clear()
        assert box.take_leading(int) == [3]
