"""Leases: how long a consumer may hold entries, and the scripts that renew and reclaim.

A consumer renews the leases of what it holds; a reclaimer takes over entries whose
consumer stopped renewing (it died, or was cut off) and forgets consumers long dead.
Each step is one Lua script, so two processes never both own an entry.
"""

from __future__ import annotations

from typing import Any

import attrs

from foxactors._validate import require_int, require_seconds

from . import _scripts as scripts


@attrs.frozen
class Leases:
    """How long a consumer may hold entries, and how dead consumers' entries come back.

    Attributes:
        claim_min_idle: Seconds an entry may go without its consumer renewing the
            lease before another consumer takes it over (default 60). Live consumers
            renew every ``claim_min_idle / 4``, so only a dead or cut-off consumer's
            entries are taken; a message is redelivered this long after its consumer
            died, at the latest ``1.5 * claim_min_idle``.
        claim_batch: Entries claimed at most per round (default 100), and never more
            than the consumer has credit for.
        forget_after: A consumer idle this long that holds no pending entries is
            removed from the group (default one hour).
    """

    claim_min_idle: float = 60.0
    claim_batch: int = 100
    forget_after: float = 3600.0

    def __attrs_post_init__(self) -> None:
        require_seconds("claim_min_idle", self.claim_min_idle, positive=True)
        require_seconds("forget_after", self.forget_after, positive=True)
        require_int("claim_batch", self.claim_batch, 1)

    @property
    def renew_every(self) -> float:
        """How often a consumer renews the leases of what it holds."""
        return self.claim_min_idle / 4

    @property
    def reclaim_every(self) -> float:
        """How often a reclaimer looks for entries of dead consumers."""
        return self.claim_min_idle / 2


async def renew(
    client: Any, stream: str, group: str, consumer: str, ids: list[bytes]
) -> tuple[list[bytes], list[bytes]]:
    """Reset the idle time of ``ids`` that ``consumer`` still owns.

    Returns the ids it no longer owns, and those whose data was trimmed while pending
    (which the renewal drops from the pending list: nothing is left to deliver).
    """
    lost, gone = await client.eval(scripts.RENEW, 1, stream, group, consumer, *ids)
    return list(lost), list(gone)


Claimed = tuple[bytes, list[tuple[bytes, int, list[bytes]]], list[bytes]]
"""What a reclaim returns: the next cursor, (id, delivery count, flat fields) of each
entry claimed, and the ids of entries trimmed while pending."""


async def reclaim(
    client: Any,
    stream: str,
    group: str,
    consumer: str,
    *,
    leases: Leases,
    cursor: bytes,
    count: int,
) -> Claimed:
    """Claim up to ``count`` entries idle past ``claim_min_idle``, from ``cursor`` on."""
    next_cursor, claimed, gone = await client.eval(
        scripts.RECLAIM,
        1,
        stream,
        group,
        consumer,
        int(leases.claim_min_idle * 1000),
        cursor,
        count,
    )
    return next_cursor, claimed, gone


async def forget(client: Any, stream: str, group: str, leases: Leases, keep: str) -> list[bytes]:
    """Remove consumers idle past ``forget_after`` holding nothing (but ``keep``)."""
    removed: list[bytes] = await client.eval(
        scripts.FORGET, 1, stream, group, int(leases.forget_after * 1000), keep
    )
    return removed
