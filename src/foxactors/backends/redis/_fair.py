"""Fair queues on Redis: a list per tenant, a ring of active tenants, one script a step.

A fair queue ``s`` keeps what waits in lists, one per tenant (``s:fair:q:<tenant>``),
not in the stream. A consumer's read runs one script (``fair_pull.lua``) that moves
up to its free credit from the tenants' lists into the stream by deficit round robin
over a list of active tenants (``s:fair:ring``, rotated in place: no scan, O(1) per
entry whatever the number of tenants), and an XREADGROUP that reads them, in one
MULTI. From the stream on, an entry is an ordinary one: pending with its consumer,
renewed, reclaimed when its consumer dies. A requeue goes back to the front of the
tenant's list and a retry, when due, to its back. Publishers wake waiting consumers
through a small stream (``s:fair:wake``).

Slots: where some tenant has a concurrency limit, or for a dedicated consumer's
choice, each entry moved counts against its tenant (``s:fair:out``) and carries the
field ``x-slot``; settling it frees the slot in the same script that acknowledges or
copies it. Without limits nothing is counted, and an ack is a plain XACK.

The weights and limits are in a hash (``s:fair:conf``), written by every process that
declared the queue fair when it first publishes to or consumes it: declare it alike
everywhere. Priorities order entries within a tenant's list only by their arrival
(first in, first out); see docs/tenants.md.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import attrs
from redis.exceptions import NoScriptError

from foxactors.backends._fair import NO_TENANT, TENANT_HEADER, FairShares

from . import _scripts as scripts


def _script(name: str, *shared: str) -> str:
    parts = ("fair_common", *shared, name)
    return "\n".join(scripts.load(part) for part in parts)


PUSH = _script("fair_push")
PUSH_MANY = _script("fair_push_many")
PULL = _script("fair_pull")
ACK = _script("fair_ack")
SETTLE = _script("fair_settle", "settle_entry")
MOVE_DUE = _script("fair_move_due")
RELEASE = _script("fair_release")
REPLAY = _script("fair_replay", "replay_entry")
RECOUNT = _script("fair_recount")
MOVE_BATCH = 1000
ACK_CHUNK = 1000


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


PUSH_MANY_SHA = _sha(PUSH_MANY)
PULL_SHA, ACK_SHA, SETTLE_SHA = _sha(PULL), _sha(ACK), _sha(SETTLE)
PUSH_SHA, MOVE_DUE_SHA, RELEASE_SHA = _sha(PUSH), _sha(MOVE_DUE), _sha(RELEASE)
REPLAY_SHA, RECOUNT_SHA = _sha(REPLAY), _sha(RECOUNT)


async def _run(client: Any, script: str, sha: str, *args: Any) -> Any:
    """EVALSHA ``script``; EVAL it (which loads it) if the server does not have it."""
    try:
        return await client.evalsha(sha, *args)
    except NoScriptError:
        return await client.eval(script, *args)


async def load_scripts(client: Any) -> None:
    """Load the scripts a consumer runs by EVALSHA (no script text sent with each run).

    A consumer loads them when it starts; a server that lost them (restarted,
    SCRIPT FLUSH) answers NOSCRIPT, which fails the consumer, and its restart loads
    them again.
    """
    for script in (PULL, ACK, SETTLE):
        await client.script_load(script)


@attrs.frozen
class FairKeys:
    """The keys of one fair queue (see the module's docstring)."""

    ring: str
    turn: str
    out: str
    conf: str
    wake: str
    lists: str  # the prefix of the tenants' lists

    @classmethod
    def of(cls, stream: str) -> FairKeys:
        """The keys of the fair queue of ``stream``."""
        base = f"{stream}:fair:"
        return cls(
            base + "ring", base + "turn", base + "out", base + "conf", base + "wake", base + "q:"
        )

    @property
    def five(self) -> tuple[str, str, str, str, str]:
        """The keys every fair script takes first."""
        return (self.ring, self.turn, self.out, self.conf, self.wake)

    def list_of(self, tenant: str) -> str:
        """The list of ``tenant``'s waiting entries."""
        return self.lists + tenant


def limited(shares: FairShares) -> bool:
    """Whether some tenant has a concurrency limit."""
    return shares.limit is not None or any(n is not None for n in shares.limits.values())


def conf_fields(shares: FairShares) -> dict[str, str]:
    """The conf hash of ``shares``: default weight, weights, limit, limits ('' none).

    ``same`` says that no tenant has a weight or limit of its own: the scripts then
    skip looking for them; ``track`` that some tenant has a limit: its slots are counted.
    """
    fields = {
        "dw": str(shares.default_weight),
        "l": "" if shares.limit is None else str(shares.limit),
    }
    if not shares.weights and not shares.limits:
        fields["same"] = "1"
    if limited(shares):
        fields["track"] = "1"
    for tenant, weight in shares.weights.items():
        fields[f"w:{tenant}"] = str(weight)
    for tenant, limit in shares.limits.items():
        fields[f"l:{tenant}"] = "" if limit is None else str(limit)
    return fields


async def write_conf(client: Any, keys: FairKeys, shares: FairShares) -> None:
    """Replace the queue's conf hash with ``shares``, in one transaction."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.delete(keys.conf)
        pipe.hset(keys.conf, mapping=conf_fields(shares))
        await pipe.execute()


def tenant_in(fields: Mapping[str, Any]) -> str:
    """The tenant of an entry with ``fields`` (`NO_TENANT` without one)."""
    tenant = fields.get(TENANT_HEADER)
    if isinstance(tenant, bytes):
        return tenant.decode()
    return tenant if isinstance(tenant, str) else NO_TENANT


async def push(client: Any, keys: FairKeys, fields: Mapping[str, Any]) -> None:
    """Add an entry with ``fields`` to the back of its tenant's list."""
    tenant = tenant_in(fields)
    flat = itertools.chain.from_iterable(fields.items())
    await _run(client, PUSH, PUSH_SHA, 5, *keys.five, keys.lists, tenant, "0", *flat)


async def push_many(
    client: Any, keys: FairKeys, entries: Iterable[Mapping[str, Any]], *, batch: int = 1000
) -> int:
    """Add entries (their fields) to the backs of their tenants' lists, in order.

    One script per ``batch`` entries, pipelined: a backlog of 100,000 entries costs a
    hundred script runs, not 100,000 round trips. Returns how many were added.
    """
    added = 0
    async with client.pipeline(transaction=False) as pipe:
        chunk: list[Any] = []
        queued = 0
        for fields in entries:
            chunk.extend((tenant_in(fields), len(fields)))
            chunk.extend(itertools.chain.from_iterable(fields.items()))
            queued += 1
            if queued == batch:
                pipe.evalsha(PUSH_MANY_SHA, 5, *keys.five, keys.lists, *chunk)
                chunk, queued = [], 0
        if queued:
            pipe.evalsha(PUSH_MANY_SHA, 5, *keys.five, keys.lists, *chunk)
        if len(pipe):
            await client.script_load(PUSH_MANY)
            added = sum(int(n) for n in await pipe.execute())
    return added


def pull_commands(
    keys: FairKeys,
    stream: str,
    *,
    count: int,
    group: str,
    consumer: str,
    tenants: Collection[str] | None,
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The script that moves up to ``count`` entries by turns into ``stream``, and the read.

    Run them in one MULTI (nothing else may read between them: a dedicated consumer
    would take what another moved). The script's reply: how many it moved, and the
    wake stream's last id; the read's, the entries.
    """
    move = ("EVALSHA", PULL_SHA, 6, *keys.five, stream, keys.lists, count, *sorted(tenants or ()))
    read = ("XREADGROUP", "GROUP", group, consumer, "COUNT", count, "STREAMS", stream, ">")
    return move, read


async def pull(client: Any, keys: FairKeys, stream: str, **options: Any) -> tuple[Any, bytes]:
    """Run `pull_commands` (same options): (the XREADGROUP reply, the wake stream's last id)."""
    await client.script_load(PULL)
    async with client.pipeline(transaction=True) as pipe:
        for command in pull_commands(keys, stream, **options):
            pipe.execute_command(*command)
        (_, last), read = await pipe.execute()
    return read, last


UNKNOWN = ":"
"""The tenant `settle_command` is given for an entry whose slot its reader does not know of."""


def ack_command(
    keys: FairKeys, stream: str, group: str, ids_by_tenant: Mapping[str, Sequence[bytes]]
) -> tuple[Any, ...]:
    """The EVAL that acknowledges entries holding slots and frees their tenants' slots.

    ``ids_by_tenant``: the entry ids of each tenant (one XACK each).
    """
    args: list[Any] = []
    for tenant, ids in ids_by_tenant.items():
        for first in range(0, len(ids), ACK_CHUNK):  # Lua unpacks a few thousand at most
            chunk = ids[first : first + ACK_CHUNK]
            args.extend((tenant, len(chunk), *chunk))
    return ("EVALSHA", ACK_SHA, 6, *keys.five, stream, keys.lists, group, *args)


def settle_command(
    keys: FairKeys,
    stream: str,
    delayed: str,
    dead: str,
    *,
    group: str,
    consumer: str,
    entry_id: bytes,
    mode: str,
    delay: float,
    give_back: int,
    token: str,
    tenant: str,
    extra: tuple[Any, ...],
) -> tuple[Any, ...]:
    """The EVAL that copies an entry (requeue, retry, dead letter) and frees its slot.

    ``tenant``: the tenant whose slot the entry holds, as its reader knew it (`UNKNOWN`
    if none or it did not know): an entry trimmed while pending has no fields left to
    tell.
    """
    return (
        *("EVALSHA", SETTLE_SHA, 8, *keys.five, stream, delayed, dead, keys.lists, group, consumer),
        *(entry_id, mode, math.ceil(delay * 1000), give_back, token, tenant, *extra),
    )


async def replay(
    client: Any, keys: FairKeys, dead: str, letter_id: bytes, drop: Sequence[str]
) -> int:
    """Move dead letter ``letter_id`` to the back of its tenant's list; 1, or 0 if gone."""
    args = (keys.lists, letter_id, *drop)
    return int(await _run(client, REPLAY, REPLAY_SHA, 6, *keys.five, dead, *args))


async def recount(client: Any, keys: FairKeys, stream: str, group: str) -> int:
    """Count every tenant's slots again from the group's pending entries; how many are held."""
    return int(await _run(client, RECOUNT, RECOUNT_SHA, 6, *keys.five, stream, keys.lists, group))


async def release(client: Any, keys: FairKeys, counts: Mapping[str, int]) -> int:
    """Free ``counts`` slots of each tenant: its entries left the stream while pending."""
    args = [item for tenant, n in counts.items() for item in (tenant, n)]
    return int(await _run(client, RELEASE, RELEASE_SHA, 5, *keys.five, keys.lists, *args))


async def move_due(client: Any, keys: FairKeys, delayed: str) -> tuple[int, float | None]:
    """Move due entries of ``delayed`` to their tenants' lists: (how many, seconds to next)."""
    moved, wait = await _run(
        client, MOVE_DUE, MOVE_DUE_SHA, 6, *keys.five, delayed, keys.lists, MOVE_BATCH
    )
    return int(moved), (None if int(wait) < 0 else int(wait) / 1000)
