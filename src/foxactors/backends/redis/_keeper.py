"""The jobs that keep a consumer's stream: leases, reclaims, the delayed-set scheduler.

In a `WorkerApp`, each job runs in a `StreamKeeper` actor beside the consumer; a
source opened on its own runs them itself.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from foxactors._actor import Actor
from foxactors._errors import BackendError
from foxactors.backends._messages import GetSource

if TYPE_CHECKING:
    from ._source import RedisSource


async def keep_leases(source: RedisSource) -> None:
    """Renew the source's leases for ever, every ``claim_min_idle / 4``."""
    while True:
        await asyncio.sleep(source.leases.renew_every)
        await source.renew()


async def reclaim_forever(source: RedisSource) -> None:
    """Claim dead consumers' entries in bounded batches; forget dead consumers."""
    every = source.leases.reclaim_every
    while True:
        more = await source.reclaim()
        if not more:
            await source.forget_dead_consumers()
        await asyncio.sleep(min(every, 0.05) if more else every)


async def move_due_forever(source: RedisSource) -> None:
    """Move due delayed entries into the stream, looking at least every poll interval."""
    backend = source.backend
    while True:
        _, wait = await backend.move_due(source.client, source.queue)
        poll = backend.poll_interval
        await asyncio.sleep(poll if wait is None else min(poll, wait))


JOBS = (keep_leases, reclaim_forever, move_due_forever)
"""Every job a stream needs."""


class StreamKeeper(Actor[Any]):
    """Runs one maintenance job (leases, reclaims, the scheduler) for the consumer.

    It asks its sibling ``consumer`` for the current source; when the job fails (the
    connection is lost), it crashes and its rest_for_one supervisor restarts it.
    """

    def __init__(self, job: Callable[[RedisSource], Awaitable[None]]) -> None:
        self._job = job

    async def on_start(self) -> None:
        """Find the consumer's source and run the job on it."""
        from ._source import RedisSource  # noqa: PLC0415 - the source runs these jobs too

        source = await self.find("../consumer").ask(GetSource(), timeout=30)
        if not isinstance(source, RedisSource):
            raise BackendError(f"the consumer answered {source!r}, not a Redis source")
        self.start_task(functools.partial(self._job, source))

    async def receive(self, message: Any) -> Any:
        """Nothing to answer: the job runs in the background."""
        return None
