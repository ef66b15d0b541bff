"""`Inbox`: the ends of one producer's jobs, pushed by Redis as they happen (opt-in).

A producer that waits for its jobs' results (``RedisJobStore(push_results=True)``)
names a channel of its own in every record it creates (the hash field ``push``); the
script that ends such a job publishes the end there too: the job's id, state, task,
tenant, result (of a success) and expiry, the ends of one script call in one message
(``lua/common.lua``, ``push``). One
subscription per store, on the listener's connection, hears them all:

- A success is kept here until a `result()` takes it, so that read needs no round
  trip: `KEEP` ends or `KEEP_BYTES` of them at most (counted by their results' JSON),
  the oldest going first, and never served past the record's retention. Only a
  success is kept: a retry can revive a dead or cancelled job, and its record must
  say so; nor a result over 16 KiB, which the script leaves in the record (a large
  message on the shared connection could pass Redis's output limit for pub/sub
  clients, and Redis would close the connection).
- While the subscription is confirmed (`Inbox.live`), a waiter for one of these jobs
  listens here (`Inbox.watching`) rather than subscribing to the job's own channel:
  no SUBSCRIBE per job, and the end it hears carries the result.
- When the subscription's connection fails, the waiters here are woken as lost (they
  go back to their job's own channel, and read their record), and the inbox
  subscribes again: at once if it had been confirmed, else after `RETRY_WAIT`,
  doubling each time up to `RETRY_WAIT_MOST` (a SUBSCRIBE that an ACL refuses must
  not drop the shared connection every second; after an outage too, the inbox may
  come back up to that much later than the server: that costs only reads). The
  listener notices a connection gone silent by an idle PING left unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ._record import JobState
from ._redis_listener import Subscription

if TYPE_CHECKING:
    from ._redis_link import RedisLink

KEEP = 10_000
"""Successes kept for a later `result()` at most; the oldest goes first."""
KEEP_BYTES = 16 * 2**20
"""Bytes of kept successes (their messages) at most; the oldest goes first."""
OVERHEAD = 200
"""Bytes a kept success is counted beyond its result's JSON (its id, task, the entry)."""
RETRY_WAIT = 1.0
"""Seconds before subscribing again after a subscription that was not confirmed; it
doubles with each such attempt, up to `RETRY_WAIT_MOST`."""
RETRY_WAIT_MOST = 60.0
_SUCCEEDED = JobState.SUCCEEDED.value


def _number(value: object) -> bool:
    return type(value) in (int, float)


@attrs.define
class Pushed:
    """A job's success as its push said it.

    Its task, result (a JSON value) and tenant, when its record expires, and the
    bytes it is counted as.
    """

    task: str
    result: Any
    tenant: str | None
    expires_at: float
    size: int


class Inbox:
    """One store's channel for the ends of the jobs it created.

    Args:
        link: The store's link (its listener's connection carries the subscription).
        channel: The channel's name (``prefix:push:<random>``).
    """

    def __init__(self, link: RedisLink, channel: str) -> None:
        self.channel = channel
        self._link = link
        self._kept: dict[str, Pushed] = {}
        self._kept_bytes = 0
        self._waiters: dict[str, set[Subscription]] = {}
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._pause = anyio.sleep  # between subscriptions that were not confirmed
        self._generation = 0  # subscriptions confirmed so far
        self._forgotten = 0  # ends heard that the inbox cannot give back (see `mark`)

    @property
    def live(self) -> bool:
        """Subscribed and confirmed: every end published from now on comes here."""
        subscription = self._subscription
        return subscription is not None and subscription.live

    def mark(self) -> tuple[int, int] | None:
        """Where the inbox stands, for a job created from now on (None: not live).

        While `still` holds for such a mark, every end of that job has come here, and
        any that came is kept: a job `take` does not find has not ended, and a waiter
        needs no read of its record (only its wake-up).
        """
        return (self._generation, self._forgotten) if self.live else None

    def still(self, mark: tuple[int, int]) -> bool:
        """Live on the subscription of ``mark``, and nothing heard since was let go."""
        return self.live and (self._generation, self._forgotten) == mark

    def open(self) -> None:
        """Subscribe, in a task of the inbox's, unless that is done or under way.

        Called by each create: records name the channel before it is confirmed, and
        what ends meanwhile is read from the records.
        """
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        wait = RETRY_WAIT
        while not self._closed:
            confirmed = False
            try:
                async with self._link.subscription(self.channel, self._heard) as subscription:
                    confirmed = subscription.confirmed
                    if subscription.live:
                        self._subscription = subscription
                        self._generation += 1
                        while not subscription.dropped:  # woken only when it fails
                            await subscription.message(3600.0)
            finally:
                self._subscription = None
                for waiters in self._waiters.values():
                    for waiter in waiters:
                        waiter.let_go(lost=True)
            if confirmed:
                wait = RETRY_WAIT  # it worked: again at once
            else:  # refused (say by an ACL), or no server: not in a loop
                await self._pause(wait)
                wait = min(2 * wait, RETRY_WAIT_MOST)

    def _heard(self, data: bytes) -> None:
        """A message on the channel (the ends of one script call).

        Keeps each success that came with its result; wakes the waiters of each job
        named (one that cannot keep what it heard reads its record). What is not the
        ends of jobs is ignored: nothing here may fail the connection.
        """
        try:
            ends = json.loads(data)
        except (ValueError, RecursionError):
            self._forgotten += 1  # whatever it was, nothing of it is kept
            return
        if not isinstance(ends, list):
            self._forgotten += 1
            return
        now = time.time()
        for end in ends:
            if not (isinstance(end, list) and end and isinstance(end[0], str)):
                self._forgotten += 1
                continue
            job_id = end[0]
            if len(end) == 7:  # else an end this version does not read: its record tells
                _, state, task, tenant, result, expires_at, size = end
                if (
                    state == _SUCCEEDED
                    and type(size) is int
                    and size >= 0
                    and _number(expires_at)
                    and expires_at > now
                ):
                    self._keep(
                        job_id, Pushed(task, result, tenant, expires_at, size + OVERHEAD), now
                    )
                else:
                    self._forgotten += 1  # not kept: a waiter reads the record
            else:
                self._forgotten += 1
            for waiter in self._waiters.get(job_id, ()):
                waiter.wake()

    def _keep(self, job_id: str, pushed: Pushed, now: float) -> None:
        before = self._kept.pop(job_id, None)
        if before is not None:
            self._kept_bytes -= before.size
        self._kept[job_id] = pushed
        self._kept_bytes += pushed.size
        kept = self._kept
        while kept and (
            len(kept) > KEEP
            or self._kept_bytes > KEEP_BYTES
            or next(iter(kept.values())).expires_at <= now  # its record is gone
        ):
            self._kept_bytes -= kept.pop(next(iter(kept))).size
            self._forgotten += 1

    def take(self, job_id: str) -> Pushed | None:
        """The job's success, if it was pushed here and is kept; taken out of the inbox."""
        pushed = self._kept.pop(job_id, None)
        if pushed is None:
            return None
        self._kept_bytes -= pushed.size
        if pushed.expires_at <= time.time():
            self._forgotten += 1
            return None  # past the record's retention: the record says it is gone
        return pushed

    @contextlib.asynccontextmanager
    async def watching(self, job_id: str) -> AsyncIterator[Subscription]:
        """Woken when the job's end is pushed here, or lost when the inbox fails.

        Only for a job whose record names this channel, while the inbox is `live`.
        """
        waiter = Subscription()
        waiter.confirmed = True
        waiters = self._waiters.setdefault(job_id, set())
        waiters.add(waiter)
        try:
            yield waiter
        finally:
            waiters.discard(waiter)
            if not waiters and self._waiters.get(job_id) is waiters:
                del self._waiters[job_id]

    async def close(self) -> None:
        """Stop listening, for good; the waiters here go back to their jobs' channels."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait([task])
        self._kept.clear()
        self._kept_bytes = 0
        self._forgotten += 1
