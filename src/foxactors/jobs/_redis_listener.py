"""`Listener`: one pub/sub connection for every waiter of a Redis job store.

A `result()` whose job is not final yet listens on the job's channel (``P:done:<id>``)
for the message its end publishes. Each waiter used to hold a pub/sub connection of
its own: awaiting the results of 2,000 jobs at once opened 2,000 connections, past a
common limit of 1,024 open files (and past a caller's client's pool of 100). Here
every waiter's channel is subscribed on one connection, and one reader task hands
each message to the waiters of its channel.

- The first waiter of a channel sends its SUBSCRIBE, shielded from a cancel (its
  channel's other waiters count on it) and within `SUBSCRIBE_WAIT`; a waiter counts
  as subscribed once Redis has confirmed every SUBSCRIBE of its channel sent so far
  (a SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE of one channel answer in that order).
- A waiter waits `CONFIRM_WAIT` at most for that confirmation, then goes on as if
  subscribed: it reads its record, and reads it again every few seconds anyway.
- The last waiter of a channel to leave hands it to the reader, which sends the
  UNSUBSCRIBE: leaving never waits on the network.
- redis-py reconnects a dropped connection and subscribes its channels again, once
  each: the confirmations still counted from before are forgotten then. A connection
  that fails for good (or a SUBSCRIBE that fails) is closed: every waiter is woken to
  read its record, and the next waiter opens a new connection.
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
SUBSCRIBE_WAIT = 10.0
"""Seconds a SUBSCRIBE (with the connection it may open) may take before it fails."""
CONFIRM_WAIT = 5.0
"""Seconds a waiter waits for its channel's confirmation before it goes on without."""


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


def _name(channel: bytes | str) -> str:
    return channel.decode() if isinstance(channel, bytes) else channel


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
        self._leaving: set[str] = set()  # for the reader to unsubscribe
        self._opening = anyio.Lock()

    @contextlib.asynccontextmanager
    async def subscription(self, channel: str) -> AsyncIterator[Subscription]:
        """Subscribed to ``channel`` (confirmed by the server) for the block.

        Raises:
            JobStoreError: The SUBSCRIBE failed (the channel's other waiters read
                their records instead).
        """
        state = self._channels.get(channel)
        fresh = state is None
        if state is None:
            state = self._channels[channel] = _Channel()
            self._leaving.discard(channel)
        mine = Subscription()
        state.waiters.add(mine)
        try:
            if fresh:
                await self._subscribe(channel)
            with anyio.move_on_after(CONFIRM_WAIT):
                await state.confirmed.wait()  # or set when the connection is let go
            yield mine
        finally:
            state.waiters.discard(mine)
            if not state.waiters and self._channels.get(channel) is state:
                del self._channels[channel]
                self._leaving.add(channel)

    async def _subscribe(self, channel: str) -> None:
        """Send SUBSCRIBE for ``channel``; its confirmation comes to the reader."""
        try:
            with (
                self._translate("subscribing"),  # a TimeoutError too: an OSError
                anyio.CancelScope(shield=True),
                anyio.fail_after(SUBSCRIBE_WAIT),
            ):
                pubsub = await self._open()
                self._unconfirmed[channel] += 1
                await pubsub.subscribe(channel)
        except BaseException:  # a connection in a state unknown: closed, waiters let go
            await self._shut(*self._forget())
            raise

    async def _open(self) -> Any:
        """The pub/sub connection, opened (with its reader) if there is none."""
        async with self._opening:
            if self._pubsub is None:
                pubsub = self._client.pubsub()
                try:
                    await pubsub.connect()
                except BaseException:
                    await self._shut(pubsub, None)
                    raise
                pubsub.connection.register_connect_callback(self._reconnected)
                self._pubsub = pubsub
                self._reader = asyncio.get_running_loop().create_task(self._read(pubsub))
            return self._pubsub

    async def _reconnected(self, connection: Any) -> None:
        """redis-py connected again and subscribed every channel anew, once each.

        The replies to what was sent before are lost with the old connection: each
        channel now awaits one confirmation. (Called after redis-py's own callback.)
        """
        if self._pubsub is not None and self._pubsub.connection is connection:
            self._unconfirmed = collections.Counter(map(_name, self._pubsub.channels))

    async def _read(self, pubsub: Any) -> None:
        """Hand each message to its channel's waiters while anyone listens."""
        try:
            while self._channels:
                if self._leaving:
                    leaving, self._leaving = self._leaving, set()
                    await pubsub.unsubscribe(*leaving)
                message = await pubsub.get_message(timeout=READ_WAIT)
                if message is not None:
                    self._dispatch(message)
        except Exception:  # the connection failed: every waiter reads its record
            if self._pubsub is pubsub:
                self._forget()
        else:
            if self._pubsub is pubsub:
                self._pubsub = self._reader = None
                self._unconfirmed.clear()
                self._leaving.clear()
        await self._shut(pubsub, None)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, name = message["type"], _name(message["channel"])
        state = self._channels.get(name)
        if kind == "subscribe":
            self._unconfirmed[name] -= 1
            if self._unconfirmed[name] <= 0:
                del self._unconfirmed[name]
                if state is not None:
                    state.confirmed.set()
        elif kind == "message" and state is not None:
            for waiter in state.waiters:
                waiter.wake()

    def _forget(self) -> tuple[Any, asyncio.Task[None] | None]:
        """Stop using the connection; wake every waiter (a later one subscribes anew)."""
        pubsub, reader = self._pubsub, self._reader
        self._pubsub = self._reader = None
        self._unconfirmed.clear()
        self._leaving.clear()
        channels, self._channels = self._channels, {}
        for state in channels.values():
            state.confirmed.set()
            for waiter in state.waiters:
                waiter.wake()
        return pubsub, reader

    async def _shut(self, pubsub: Any, reader: asyncio.Task[None] | None) -> None:
        """Stop ``reader`` and close ``pubsub`` (either may be None), shielded."""
        with anyio.CancelScope(shield=True):
            if reader is not None and reader is not asyncio.current_task():
                reader.cancel()
                await asyncio.wait([reader])
            if pubsub is not None:
                if pubsub.connection is not None:
                    pubsub.connection.deregister_connect_callback(self._reconnected)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def close(self) -> None:
        """Stop the reader and close the connection; waiters read their records."""
        await self._shut(*self._forget())
