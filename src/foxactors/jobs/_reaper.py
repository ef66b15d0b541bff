"""`JobReaper`: the actor that expires leases, old records and abandoned enqueues."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from foxactors._actor import Actor

if TYPE_CHECKING:
    from ._client import JobQueue


class JobReaper(Actor[Any]):
    """Every ``reap_interval``, one `JobStore.reap` pass; a failing pass is logged, not fatal.

    Each worker app runs one; passes are atomic in the store, so several at once are
    safe. A job whose worker died reads pending again at most ``lease +
    reap_interval`` after its last renewal (the broker delivers it again).
    """

    def __init__(self, jobs: JobQueue) -> None:
        self._jobs = jobs

    async def on_start(self) -> None:
        """Start the passes, owned by this actor."""
        self.start_task(self._passes)

    async def _passes(self) -> None:
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
