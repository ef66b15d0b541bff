"""A single waiter: one task waits until another sets it; cheaper than an ``anyio.Event``.

An ``anyio.Event`` finds its event loop library (sniffio) each time one is made, and
wraps that library's event; the waiters here are picked once (`waiter_class`) by
whoever makes many of them (a mailbox, a turn batcher) and cost one bare future
(asyncio) or a parked task (trio). Only one task may wait on one; `set` may come
before or after the wait, any number of times; a waiter cancelled while waiting
just stops waiting.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import sniffio

if TYPE_CHECKING:
    import trio


class AsyncioWaiter:
    """A single waiter on asyncio: one bare future (cheaper than an anyio.Event)."""

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    async def wait(self) -> None:
        await self._future


class TrioWaiter:
    """A single waiter on trio: park the task, reschedule it on set."""

    __slots__ = ("_done", "_task")

    def __init__(self) -> None:
        self._task: Any = None
        self._done = False

    def set(self) -> None:
        if self._done:
            return
        self._done = True
        if self._task is not None:
            trio.lowlevel.reschedule(self._task)
            self._task = None

    async def wait(self) -> None:
        if self._done:
            return
        self._task = trio.lowlevel.current_task()

        def abort(_raise_cancel: Any) -> Any:
            self._task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


def waiter_class() -> type[AsyncioWaiter | TrioWaiter]:
    """The waiter for the event loop library running now (asyncio's or trio's)."""
    if sniffio.current_async_library() == "trio":
        global trio
        import trio.lowlevel  # noqa: PLC0415

        return TrioWaiter
    return AsyncioWaiter
