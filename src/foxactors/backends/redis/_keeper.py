"""The jobs that keep a consumer's stream: leases, reclaims, the delayed-set scheduler.

In a `WorkerApp`, each runs in a `SourceKeeper` actor beside the consumer (see
`RedisBackend.intake_actors`); a source opened on a client of its own runs them in
its own task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from ._source import RedisSource


async def keep_leases(source: RedisSource) -> None:
    """Renew the source's leases for ever, every ``claim_min_idle / 4``."""
    while True:
        await anyio.sleep(source.leases.renew_every)
        await source.renew()


async def reclaim_forever(source: RedisSource) -> None:
    """Claim dead consumers' entries in bounded batches; forget dead consumers."""
    every = source.leases.reclaim_every
    while True:
        more = await source.reclaim()
        if not more:
            await source.forget_dead_consumers()
        await anyio.sleep(min(every, 0.05) if more else every)


async def move_due_forever(source: RedisSource) -> None:
    """Move due delayed entries into the stream, looking at least every poll interval."""
    backend = source.backend
    while True:
        _, wait = await backend.move_due(source.client, source.queue)
        poll = backend.poll_interval
        await anyio.sleep(poll if wait is None else min(poll, wait))


JOBS = (keep_leases, reclaim_forever, move_due_forever)
"""Every job a stream needs, besides settling."""
