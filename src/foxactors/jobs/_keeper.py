"""`JobKeeper`: the actor that renews running jobs' leases, delivers cancels, and reaps.

One per job worker app. It knows the attempts running in its app (`RunningAttempts`,
filled by the runners); every ``min(lease / 3, cancel_poll)`` seconds it renews all of
their leases in one store call, which also says which of them have a cancel recorded;
with a store that signals cancels (`CancelSignals`), those arrive at once instead.
Every ``reap_interval`` it runs one `JobStore.reap` pass (atomic in the store, so
several keepers at once are safe).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from foxactors._actor import Actor

from ._store import CancelSignals

if TYPE_CHECKING:
    from foxactors._ack import AckHandle

    from ._client import JobQueue
    from ._context import JobContext


@attrs.define
class Attempt:
    """One attempt running in this app: how to reach it when its job is cancelled."""

    job_id: str
    attempt: int
    scope: anyio.CancelScope
    context: JobContext
    is_async: bool


class Held(enum.Enum):
    """What `RunningAttempts.hold` did for a delivery."""

    AT_ONCE = "at once"
    """Held, with no other delivery of its job in this app."""
    AFTER_SETTLED = "after settled"
    """Held after another delivery of its job, whose settlement reached the broker."""
    AFTER_LOST = "after lost"
    """Held after another delivery whose settlement did not (its consumer was gone):
    this one stands for it."""
    GONE = "gone"
    """Not held: its own consumer is gone (the broker has it again)."""


GONE_CHECK = 1.0
"""Seconds between looks at whether a delivery waiting for its job's other one is stale."""


class RunningAttempts:
    """The attempts running in one worker app, by job id; one delivery of a job at a time."""

    def __init__(self) -> None:
        self.by_id: dict[str, Attempt] = {}
        self._held: set[str] = set()  # jobs a delivery is being run for (`hold`)
        self._let_go: dict[str, anyio.Event] = {}  # set when such a job is let go
        self._settled: dict[str, bool] = {}  # for a waiter: did the one before settle?

    async def hold(self, job_id: str, handle: AckHandle) -> Held:
        """Wait until no other delivery of ``job_id`` is being run in this app; hold it.

        The broker can deliver a job again while its attempt still runs here: after
        the connection that held the delivery was lost (RabbitMQ requeues it; a Redis
        consumer that restarts under its name reads its own pending entries), or as
        a duplicate (a publish sent again after its reply was lost). Run at once, it
        would start the next attempt beside the running one. Held, it waits; then
        the record says what happened. Call `let_go` when done (unless `Held.GONE`).

        A delivery whose ``handle`` goes stale while it waits (its consumer is gone;
        looked at every `GONE_CHECK` seconds: nothing signals it) is not held: the
        broker has it again, and a worker slot must not wait on a job for nothing,
        nor a stopping app start an attempt for it.
        """
        waited = False
        while job_id in self._held:
            if handle.stale:
                self._settled.pop(job_id, None)
                return Held.GONE
            waited = True
            event = self._let_go.get(job_id)
            if event is None:
                event = self._let_go[job_id] = anyio.Event()
            with anyio.move_on_after(GONE_CHECK):
                await event.wait()
        settled = self._settled.pop(job_id, True)
        if waited and handle.stale:
            return Held.GONE
        self._held.add(job_id)
        if not waited:
            return Held.AT_ONCE
        return Held.AFTER_SETTLED if settled else Held.AFTER_LOST

    def let_go(self, job_id: str, handle: AckHandle) -> None:
        """The delivery that held ``job_id`` is done: a delivery waiting for it goes on.

        Whether its ``handle``'s settlement reached the broker (`AckHandle.applied`)
        is kept for that delivery (see `Held`).
        """
        self._held.discard(job_id)
        event = self._let_go.pop(job_id, None)
        if event is not None:
            self._settled[job_id] = handle.applied
            event.set()

    def add(self, attempt: Attempt) -> None:
        """An attempt started (its delivery holds the job: see `hold`)."""
        self.by_id[attempt.job_id] = attempt

    def remove(self, attempt: Attempt) -> None:
        """An attempt ended."""
        if self.by_id.get(attempt.job_id) is attempt:
            del self.by_id[attempt.job_id]

    def cancel(self, job_id: str) -> None:
        """A cancel was recorded: tell the attempt (an async one is cancelled at its await)."""
        attempt = self.by_id.get(job_id)
        if attempt is not None:
            attempt.context._cancelled()
            if attempt.is_async:
                attempt.scope.cancel()


class JobKeeper(Actor[Any]):
    """Renews leases, delivers cancels and reaps, for one job worker app."""

    def __init__(self, jobs: JobQueue, running: RunningAttempts) -> None:
        self._jobs = jobs
        self._running = running
        self._unsubscribe: Callable[[], None] | None = None

    async def on_start(self) -> None:
        """Listen for cancels if the store signals them; start renewing and reaping."""
        store = self._jobs.store
        if isinstance(store, CancelSignals):
            self._unsubscribe = store.on_cancel(self._running.cancel)
        self.start_task(self._renewals)
        self.start_task(self._reaps)

    async def on_stop(self, exit: Any) -> None:
        """Stop listening for cancels."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def _renewals(self) -> None:
        jobs, running = self._jobs, self._running
        every = min(jobs.lease / 3, jobs.cancel_poll)
        while True:
            await anyio.sleep(every)
            attempts = [(a.job_id, a.attempt) for a in running.by_id.values()]
            if not attempts:
                continue
            try:
                cancelled = await jobs.store.renew(attempts, jobs.clock() + jobs.lease)
            except Exception as exc:  # the store is down: the leases may run out; try again
                self.log.warning("jobs.renew_failed", error=f"{type(exc).__name__}: {exc}")
                continue
            for job_id in cancelled:
                running.cancel(job_id)

    async def _reaps(self) -> None:
        jobs = self._jobs
        while True:
            await anyio.sleep(jobs.reap_interval)
            try:
                reaped = await jobs.store.reap(jobs.clock(), abandon_after=jobs.abandon_after)
            except Exception as exc:  # the store is down: try again next time
                self.log.warning("jobs.reap_failed", error=f"{type(exc).__name__}: {exc}")
                continue
            if reaped.expired_leases or reaped.abandoned:
                self.log.info(
                    "jobs.reaped",
                    expired_leases=reaped.expired_leases,
                    abandoned=reaped.abandoned,
                    expired_records=reaped.expired_records,
                )

    async def receive(self, message: Any) -> None:
        """It takes no messages."""
