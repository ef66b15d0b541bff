"""`Listener`: one pub/sub connection for every waiter of a Redis job store.

A `result()` whose job is not final yet listens on the job's channel (``P:done:<id>``)
for the message its end publishes. Each waiter used to hold a pub/sub connection of
its own: awaiting the results of 2,000 jobs at once opened 2,000 connections, past a
common limit of 1,024 open files (and past a caller's client's pool of 100). Here
every waiter's channel is subscribed on one connection, and one reader task hands
each message to the waiters of its channel.

A waiter is subscribed once Redis has confirmed every SUBSCRIBE of its channel sent so
far (an earlier waiter's, unsubscribed since, could otherwise stand for it). Should
the connection fail, every waiter is woken (it reads its record, and from then on
reads it every `WAKE_CHECK` seconds: a message published meanwhile was lost anyway),
and the next waiter opens a new connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Any

import anyio

READ_WAIT = 1.0
"""Seconds the reader waits for a message before it looks whether anyone still listens."""


class Subscription:
    """One waiter's subscription: the messages of its channel, as wake-ups."""

    def __init__(self) -> None:
        self._woken = anyio.Event()

    def wake(self) -> None:
        """A message came (or the connection failed): `message` returns."""
        self._woken.set()

    async def message(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a message; True if one came."""
        with anyio.move_on_after(timeout):
            await self._woken.wait()
        woken = self._woken.is_set()
        if woken:
            self._woken = anyio.Event()
        return woken


class _Channel:
    """The waiters of one channel, and whether Redis confirmed its subscription."""

    __slots__ = ("confirmed", "waiters")

    def __init__(self) -> None:
        self.waiters: set[Subscription] = set()
        self.confirmed = anyio.Event()


class Listener:
    """Subscriptions of any number of waiters on one pub/sub connection of ``client``.

    Args:
        client: The store's redis-py asyncio client (its pool gives the connection).
        translate: The link's ``translate``: redis-py's errors as job errors.
    """

    def __init__(self, client: Any, translate: Callable[[str], AbstractContextManager[None]]):
        self._client = client
        self._translate = translate
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._channels: dict[str, _Channel] = {}
        self._unconfirmed: collections.Counter[str] = collections.Counter()
        self._opening = anyio.Lock()

    @contextlib.asynccontextmanager
    async def subscription(self, channel: str) -> AsyncIterator[Subscription]:
        """Subscribed to ``channel`` (confirmed by the server) for the block."""
        state = self._channels.get(channel)
        fresh = state is None
        if state is None:
            state = self._channels[channel] = _Channel()
        mine = Subscription()
        state.waiters.add(mine)
        try:
            if fresh:
                await self._subscribe(channel, state)
            await state.confirmed.wait()  # or woken by a failed connection
            yield mine
        finally:
            state.waiters.discard(mine)
            if not state.waiters and self._channels.get(channel) is state:
                del self._channels[channel]
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    if self._pubsub is not None:
                        await self._pubsub.unsubscribe(channel)

    async def _subscribe(self, channel: str, state: _Channel) -> None:
        """Send SUBSCRIBE for ``channel``; its confirmation comes to the reader."""
        try:
            with self._translate("subscribing"):
                pubsub = await self._open()
                self._unconfirmed[channel] += 1
                try:
                    await pubsub.subscribe(channel)
                except BaseException:
                    self._unconfirmed[channel] -= 1
                    raise
        except BaseException:
            state.confirmed.set()  # the channel's other waiters read their records
            raise

    async def _open(self) -> Any:
        """The pub/sub connection, opened (with its reader) if there is none."""
        async with self._opening:
            if self._pubsub is None:
                pubsub = self._client.pubsub()
                try:
                    await pubsub.connect()
                except BaseException:
                    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                        await pubsub.aclose()
                    raise
                self._pubsub = pubsub
                self._unconfirmed.clear()
                self._reader = asyncio.get_running_loop().create_task(self._read(pubsub))
            return self._pubsub

    async def _read(self, pubsub: Any) -> None:
        """Hand each message to its channel's waiters while anyone listens."""
        try:
            while self._channels:
                message = await pubsub.get_message(timeout=READ_WAIT)
                if message is not None:
                    self._dispatch(message)
        except Exception:  # the connection failed: every waiter reads its record
            if self._pubsub is pubsub:
                self._pubsub = self._reader = None
                self._let_go()
        else:
            if self._pubsub is pubsub:
                self._pubsub = self._reader = None
        with contextlib.suppress(Exception):
            await pubsub.aclose()

    def _let_go(self) -> None:
        """Wake every waiter, subscribed no longer; a later waiter subscribes anew."""
        channels, self._channels = self._channels, {}
        for state in channels.values():
            state.confirmed.set()
            for waiter in state.waiters:
                waiter.wake()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        name = message["channel"]
        name = name.decode() if isinstance(name, bytes) else name
        state = self._channels.get(name)
        if kind == "subscribe":  # redis-py's resubscribes after a reconnect confirm too
            self._unconfirmed[name] -= 1
            if self._unconfirmed[name] <= 0:
                del self._unconfirmed[name]
                if state is not None:
                    state.confirmed.set()
        elif kind == "message" and state is not None:
            for waiter in state.waiters:
                waiter.wake()

    async def close(self) -> None:
        """Stop the reader and close the connection; waiters read their records."""
        reader, pubsub = self._reader, self._pubsub
        self._reader = self._pubsub = None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        self._let_go()
