"""`PeriodicScheduler`: the actor that enqueues periodic jobs on their ticks.

One task per periodic job, in the actor's task group. Each sleeps until its next
tick (on the loop's clock, so virtual time drives it in tests), then enqueues the
tick's job with the tick's idempotency key and moves the store's last tick forwards.
Every scheduler of the same store does the same: the key makes one job of a tick,
and the last tick, read before enqueueing, keeps a late scheduler from enqueueing a
tick again after the first one's job (and key) expired.

At start, and whenever it falls behind (a store outage), the ticks between the last
one enqueued and now are *missed*: the job's policy enqueues none, or the latest once.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from foxactors._actor import Actor
from foxactors._errors import ConfigurationError

from ._periodic import MissedTicks, Periodic, tick_key
from ._periodic_ledger import PeriodicLedger

if TYPE_CHECKING:
    from ._client import JobQueue

RETRY_FIRST = 0.5
"""Seconds before a failed store call or enqueue is tried again (doubling)."""
RETRY_MOST = 30.0
"""Seconds between tries at most."""
SHORTEST_SLEEP = 0.001
"""Seconds: a wait for a tick sleeps at least this long (float times never stall)."""


@attrs.frozen
class PeriodicStatistics:
    """What a scheduler knows of one periodic job.

    Attributes:
        name: The periodic job.
        next_tick: The tick it waits for (Unix seconds), None before it planned one.
        enqueued: Ticks this scheduler enqueued (a tick another scheduler enqueued
            first is not counted).
    """

    name: str
    next_tick: float | None
    enqueued: int


def ledger_of(jobs: JobQueue) -> PeriodicLedger:
    """The store of ``jobs`` as a `PeriodicLedger`.

    Raises:
        ConfigurationError: The store does not remember periodic jobs.
    """
    store = jobs.store
    if not isinstance(store, PeriodicLedger):
        raise ConfigurationError(
            f"periodic jobs need a store that remembers their ticks (MemoryJobStore, "
            f"RedisJobStore), got {store!r}"
        )
    return store


class PeriodicScheduler(Actor[Any]):
    """Enqueues the periodic jobs of a `JobQueue` on their ticks, once per tick."""

    def __init__(self, jobs: JobQueue) -> None:
        self._jobs = jobs
        self._ledger = ledger_of(jobs)
        self._next: dict[str, float | None] = {}
        self._enqueued: dict[str, int] = {}

    async def on_start(self) -> None:
        """Start one task per periodic job (none of them waits for the store here)."""
        for periodic in self._jobs.periodic_jobs.values():
            self._next[periodic.name] = None
            self._enqueued[periodic.name] = 0
            self.start_task(functools.partial(self._run, periodic))

    def statistics(self) -> tuple[PeriodicStatistics, ...]:
        """Each periodic job's next tick and how many ticks this scheduler enqueued."""
        return tuple(
            PeriodicStatistics(name, self._next[name], self._enqueued[name]) for name in self._next
        )

    async def receive(self, message: Any) -> None:
        """It takes no messages."""

    async def _retrying(self, doing: str, name: str, call: Any) -> Any:
        delay = RETRY_FIRST
        while True:
            try:
                return await call()
            except Exception as exc:  # the store or broker is down: try again
                self.log.warning(
                    "jobs.periodic_failed",
                    periodic=name,
                    doing=doing,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in=delay,
                )
            await anyio.sleep(delay)
            delay = min(delay * 2, RETRY_MOST)

    async def _run(self, periodic: Periodic) -> None:
        name, schedule = periodic.name, periodic.schedule
        await self._retrying(
            "declaring", name, lambda: self._ledger.periodic_declare([periodic.entry()])
        )
        last = await self._retrying("reading", name, lambda: self._ledger.periodic_last(name))
        anchor = self._jobs.clock() if last is None else last
        while True:
            now = self._jobs.clock()
            if schedule.next_after(anchor) <= now:  # ticks went by with no scheduler
                anchor = await self._catch_up(periodic, anchor, now)
            tick = schedule.next_after(anchor)
            self._next[name] = tick
            # The wall clock may move apart from the loop's: sleep again until it is time.
            while (wait := tick - self._jobs.clock()) > 0:  # noqa: ASYNC110 - a deadline
                await anyio.sleep(max(wait, SHORTEST_SLEEP))
            await self._fire(periodic, tick)
            anchor = tick

    async def _catch_up(self, periodic: Periodic, since: float, now: float) -> float:
        schedule = periodic.schedule
        first, latest = schedule.next_after(since), schedule.previous(now)
        self.log.info(
            "jobs.periodic_missed",
            periodic=periodic.name,
            first=tick_key(periodic.name, first),
            latest=tick_key(periodic.name, latest),
            policy=periodic.missed.value,
        )
        if periodic.missed is MissedTicks.RUN_ONCE:
            await self._fire(periodic, latest)
        return latest

    async def _fire(self, periodic: Periodic, tick: float) -> None:
        name = periodic.name
        last = await self._retrying("reading", name, lambda: self._ledger.periodic_last(name))
        if last is not None and last >= tick:
            return  # another scheduler enqueued it (its job may be gone, and its key)
        options = periodic.tick_options(tick)
        handle = await self._retrying(
            "enqueueing",
            name,
            lambda: self._jobs.enqueue_encoded(periodic.task, dict(periodic.payload), options),
        )
        await self._retrying("recording", name, lambda: self._ledger.periodic_advance(name, tick))
        if handle.created:
            self._enqueued[name] += 1
            self.log.info("jobs.periodic_enqueued", periodic=name, key=options.key, job=handle.id)
