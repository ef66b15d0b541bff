"""`Listener`: one pub/sub connection for every waiter of a Redis job store.

A `result()` whose job is not final yet listens on the job's channel (``P:done:<id>``)
for the message its end publishes. Each waiter used to hold a pub/sub connection of
its own: awaiting the results of 2,000 jobs at once opened 2,000 connections, past a
common limit of 1,024 open files (and past a caller's client's pool of 100). Here
every waiter's channel is subscribed on one connection, and one reader task reads
it, handing each message to the waiters of its channel.

The connection is a plain one made from the client's pool settings, outside the pool,
and never reconnects by itself (redis-py's `PubSub` reconnects inside whichever call
meets the failure, a SUBSCRIBE as well as the reader, and two tasks then read one
socket, or a closed one opens again). Waiters only write to it; the reader alone
reads it.

- The first waiter of a channel has its SUBSCRIBE sent by a task of the listener's
  (its channel's other waiters count on it, whatever becomes of the first), within
  `SUBSCRIBE_WAIT`. A waiter counts as subscribed once Redis has confirmed every
  SUBSCRIBE of its channel sent so far (a SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE of one
  channel answer in that order), and waits `CONFIRM_WAIT` at most for that; a
  SUBSCRIBE unanswered that long after it was sent means a connection gone silent,
  which is dropped.
- The last waiter of a channel to leave hands it to the reader, which sends the
  UNSUBSCRIBE: leaving never waits on the network.
- A SUBSCRIBE that Redis refuses (an error reply: replies come in the order the
  commands went) lets go only its channel's waiters; the connection stays.
- Any failure (a read, a write, a SUBSCRIBE that times out) drops the connection:
  every waiter is woken to read its record (a job that ended meanwhile is seen
  there), and the next waiter opens a new connection. A waiter that was subscribed
  (`Subscription.lost`) subscribes again at once; one whose SUBSCRIBE failed reads
  its record every few seconds instead. A waiter never fails for the listener's
  sake: its record's reads say whether the store is reachable.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

import anyio

from ._redis_form import text

READ_WAIT = 1.0
"""Seconds the reader waits for a message before it looks whether anyone still listens."""
SUBSCRIBE_WAIT = 10.0
"""Seconds a SUBSCRIBE (with the connection it may open) may take; then it is dropped."""
CONFIRM_WAIT = 5.0
"""Seconds a waiter waits for its channel's confirmation before it goes on without; a
SUBSCRIBE or an idle PING unanswered that long means the connection went silent."""


class _Sent(enum.Enum):
    """A command of the reader's own, in the order of what was sent (`Listener._sent`)."""

    PING = "ping"
    UNSUBSCRIBE = "unsubscribe"  # one per channel: each answers on its own


class Subscription:
    """One waiter's subscription: the messages of its channel, as wake-ups.

    Args:
        on_message: Given, each message's data goes to it instead of waking the waiter
            (a waiter that wants what a message says, not only that one came).
    """

    def __init__(self, on_message: Callable[[bytes], None] | None = None) -> None:
        self._woken = anyio.Event()
        self._on_message = on_message
        self.lost = False
        """Its connection failed after it was subscribed: subscribe again to hear on."""
        self.dropped = False
        """Its connection failed (or never came): no message will come."""
        self.confirmed = False
        """Redis confirmed the subscription before the block began."""

    @property
    def live(self) -> bool:
        """Confirmed, and its connection has not failed since: every message comes."""
        return self.confirmed and not self.dropped

    def heard(self, data: Any) -> None:
        """A message of its channel came."""
        if self._on_message is None:
            self.wake()
        else:
            self._on_message(data)

    def wake(self) -> None:
        """A message came (or the connection failed): `message` returns."""
        self._woken.set()

    def let_go(self, *, lost: bool) -> None:
        """No message will come (``lost``: after it was subscribed); `message` returns."""
        self.lost = lost
        self.dropped = True
        self.wake()

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

    def let_go(self) -> None:
        """No subscription to count on: every waiter reads its record."""
        heard = self.confirmed.is_set()  # subscribed, then the connection failed
        self.confirmed.set()
        for waiter in self.waiters:
            waiter.let_go(lost=heard)


class _Connection:
    """One pub/sub connection of the listener, and the task that reads it."""

    __slots__ = ("closed", "reader", "redis")

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.reader: asyncio.Task[None] | None = None
        self.closed = False

    def writable(self) -> bool:
        return not self.closed and bool(self.redis.is_connected)


class Listener:
    """Subscriptions of any number of waiters on one pub/sub connection.

    Args:
        client: The store's redis-py asyncio client: its pool's settings (address,
            credentials, TLS) make the connection.
        refusal: The error a refused command's reply raises (redis-py's
            ``ResponseError``: this module imports no redis-py of its own).
    """

    def __init__(self, client: Any, refusal: type[Exception]) -> None:
        self._client = client
        self._refusal = refusal
        self._connection: _Connection | None = None
        self._channels: dict[str, _Channel] = {}
        self._unconfirmed: collections.Counter[str] = collections.Counter()
        # What was sent and is not answered yet, in order (replies come in that order):
        # a SUBSCRIBE as its channel, the reader's PINGs and UNSUBSCRIBEs as `_Sent`.
        self._sent: collections.deque[str | _Sent] = collections.deque()
        self._leaving: set[str] = set()  # for the reader to unsubscribe
        self._opening = anyio.Lock()
        self._subscribing: set[asyncio.Task[None]] = set()
        self._closed = False

    @contextlib.asynccontextmanager
    async def subscription(
        self, channel: str, on_message: Callable[[bytes], None] | None = None
    ) -> AsyncIterator[Subscription]:
        """Subscribed to ``channel`` (confirmed by the server) for the block.

        Should subscribing fail, the block runs all the same, woken by nothing
        (`Subscription.live` says which): the waiter reads its record on its own
        schedule. ``on_message``: see `Subscription`.
        """
        state = self._channels.get(channel)
        fresh = state is None
        if state is None:
            state = self._channels[channel] = _Channel()
            self._leaving.discard(channel)
        mine = Subscription(on_message)
        state.waiters.add(mine)
        try:
            if fresh:  # in a task of its own: the channel's other waiters count on it
                task = asyncio.get_running_loop().create_task(self._subscribe(channel, state))
                self._subscribing.add(task)
                task.add_done_callback(self._subscribing.discard)
            with anyio.move_on_after(CONFIRM_WAIT):
                await state.confirmed.wait()  # or set when the connection is dropped
            mine.confirmed = state.confirmed.is_set() and not mine.dropped
            yield mine
        finally:
            state.waiters.discard(mine)
            if not state.waiters and self._channels.get(channel) is state:
                del self._channels[channel]
                self._leaving.add(channel)

    async def _subscribe(self, channel: str, state: _Channel) -> None:
        """Send SUBSCRIBE for ``channel``; its confirmation comes to the reader."""
        connection: _Connection | None = None
        sent = False
        with anyio.move_on_after(SUBSCRIBE_WAIT):
            try:
                connection = await self._open()
                if self._channels.get(channel) is not state:
                    return  # let go meanwhile (the connection was dropped): nothing to do
                if connection.writable():
                    self._unconfirmed[channel] += 1
                    self._sent.append(channel)  # its answer comes in this order
                    await connection.redis.send_command("SUBSCRIBE", channel, check_health=False)
                    sent = True
            except Exception:  # noqa: S110 - what failed is dropped below
                pass
        if sent:
            assert connection is not None
            await self._confirmed(connection, channel, state)
            return
        # Failed, or out of time (perhaps halfway through a command): not to be used.
        if connection is not None and connection is self._connection:
            await self._drop(connection)
        elif self._channels.get(channel) is state:
            del self._channels[channel]  # a later waiter of it tries anew
            state.let_go()

    async def _confirmed(self, connection: _Connection, channel: str, state: _Channel) -> None:
        """Wait for the confirmation of a SUBSCRIBE sent on ``connection``.

        Unanswered `CONFIRM_WAIT` after it was sent: the connection went silent (a
        path dropped without a reset), and is dropped as if it had failed.
        """
        with anyio.move_on_after(CONFIRM_WAIT):
            await state.confirmed.wait()
        if (
            not state.confirmed.is_set()
            and connection is self._connection
            and self._channels.get(channel) is state
        ):
            await self._drop(connection)

    async def _open(self) -> _Connection:
        """The pub/sub connection, opened (with its reader) if there is none."""
        async with self._opening:
            if self._closed:
                raise ConnectionError("the job store is closed")
            if self._connection is None:
                redis = self._client.connection_pool.make_connection()
                try:
                    await redis.connect()
                except BaseException:
                    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                        await redis.disconnect()
                    raise
                connection = _Connection(redis)
                connection.reader = asyncio.get_running_loop().create_task(self._read(connection))
                self._connection = connection
            return self._connection

    async def _read(self, connection: _Connection) -> None:
        """Hand each message to its channel's waiters while anyone listens.

        Idle for `READ_WAIT`, it sends a PING; a PING left unanswered `CONFIRM_WAIT`
        means the connection went silent (a path dropped without a reset), and it is
        dropped: waiters that need no SUBSCRIBE of their own (`Inbox`) count on that.
        """
        redis = connection.redis
        pinged: float | None = None  # when the PING not answered yet went out
        try:
            while self._channels and not connection.closed:
                if self._leaving:
                    leaving, self._leaving = self._leaving, set()
                    await self._send(connection, _Sent.UNSUBSCRIBE, leaving)
                try:
                    reply = await redis.read_response(timeout=READ_WAIT, push_request=True)
                except self._refusal as exc:  # a SUBSCRIBE refused: the others go on
                    reply = exc
                if reply is None:
                    pinged = await self._idle(connection, pinged)
                    continue
                pinged = None  # it speaks
                if isinstance(reply, Exception):
                    self._refused(reply)
                else:
                    self._dispatch(reply)
        except Exception:  # the connection failed: every waiter reads its record
            if connection is self._connection:
                await self._drop(connection)
        else:
            if connection is self._connection:  # nobody listens: closed until someone does
                self._forget_connection()
        finally:  # done, failed or cancelled (dropped): the connection is closed
            connection.closed = True
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await redis.disconnect(nowait=True)

    async def _send(
        self, connection: _Connection, command: _Sent, channels: Collection[str] = ()
    ) -> None:
        """Send the reader's PING or UNSUBSCRIBE: one answer to wait for per channel."""
        if not connection.writable():
            raise ConnectionError("the pub/sub connection is closed")
        self._sent.extend([command] * max(1, len(channels)))
        await connection.redis.send_command(command.value.upper(), *channels, check_health=False)

    async def _idle(self, connection: _Connection, pinged: float | None) -> float | None:
        """Nothing came for `READ_WAIT`: send a PING, or find the last one unanswered.

        Returns when the PING not answered yet went out.

        Raises:
            ConnectionError: A PING was left unanswered `CONFIRM_WAIT` (gone silent).
        """
        now = asyncio.get_running_loop().time()
        if pinged is None:
            await self._send(connection, _Sent.PING)
            return now
        if now - pinged > CONFIRM_WAIT:
            raise ConnectionError("the pub/sub connection went silent")
        return pinged

    def _refused(self, error: Exception) -> None:
        """An error reply: Redis refused the oldest command not answered yet.

        A SUBSCRIBE (an ACL that does not allow its channel, say): its channel's
        waiters are let go (they read their records); the connection and every other
        subscription on it stay. A PING: an answer all the same (the connection
        speaks). An UNSUBSCRIBE, or an error nothing explains: the connection is
        dropped (what it is subscribed to is no longer known).
        """
        if not self._sent:
            raise ConnectionError(f"an error reply to nothing sent: {error}")
        sent = self._sent.popleft()
        if sent is _Sent.PING:
            return
        if sent is _Sent.UNSUBSCRIBE:
            raise ConnectionError(f"UNSUBSCRIBE refused: {error}")
        self._unconfirmed[sent] -= 1
        if self._unconfirmed[sent] <= 0:
            del self._unconfirmed[sent]
        state = self._channels.pop(sent, None)
        if state is not None:
            state.let_go()

    def _answered(self, sent: str | _Sent) -> None:
        """``sent`` was answered: off the head of what waits for an answer."""
        if self._sent and self._sent[0] == sent:
            self._sent.popleft()

    def _dispatch(self, reply: Any) -> None:
        if isinstance(reply, bytes | str):  # RESP3's PONG
            if text(reply).lower() == "pong":
                self._answered(_Sent.PING)
            return
        if not isinstance(reply, list) or len(reply) < 2:
            return  # not a pub/sub reply
        kind = text(reply[0])
        if kind == "pong":
            self._answered(_Sent.PING)
            return
        if len(reply) < 3:
            return
        name = text(reply[1])
        state = self._channels.get(name)
        if kind == "unsubscribe":
            self._answered(_Sent.UNSUBSCRIBE)
        elif kind == "subscribe":
            self._answered(name)
            self._unconfirmed[name] -= 1
            if self._unconfirmed[name] <= 0:
                del self._unconfirmed[name]
                if state is not None:
                    state.confirmed.set()
        elif kind == "message" and state is not None:
            for waiter in list(state.waiters):
                waiter.heard(reply[2])

    def _forget_connection(self) -> None:
        """No current connection, nor anything sent on it to wait for or leave."""
        self._connection = None
        self._unconfirmed.clear()
        self._sent.clear()
        self._leaving.clear()

    async def _drop(self, connection: _Connection) -> None:
        """Drop ``connection`` (the current one): every waiter reads its record.

        Its reader is stopped and the connection closed; a later waiter opens a new one.
        """
        connection.closed = True
        if connection is self._connection:  # (a newer one's waiters are not this one's)
            self._forget_connection()
            channels, self._channels = self._channels, {}
            for state in channels.values():
                state.let_go()
        with anyio.CancelScope(shield=True):
            reader = connection.reader
            if reader is not None and reader is not asyncio.current_task():
                reader.cancel()  # one that never ran closes nothing: closed here
                await asyncio.wait([reader])
            with contextlib.suppress(Exception):
                await connection.redis.disconnect(nowait=True)

    async def close(self) -> None:
        """Stop the reader and close the connection; waiters read their records.

        For good: a later waiter reads its record every few seconds instead.
        """
        self._closed = True
        with anyio.CancelScope(shield=True):
            for task in list(self._subscribing):
                task.cancel()
            if self._subscribing:
                await asyncio.wait(list(self._subscribing))
            async with self._opening:  # an open under way is done (or failed) first
                if self._connection is not None:
                    await self._drop(self._connection)
            channels, self._channels = self._channels, {}  # waiting for an open, say
            for state in channels.values():
                state.let_go()
