"""What a job store remembers of periodic jobs: each one's declaration and last tick.

A capability of a store, like `CancelSignals`: the memory and Redis stores have it
(through the mixins below, so their own modules stay about records). Schedulers
write the declarations they run (``foxactors jobs cron`` reads them, with no access
to the code) and move each job's last tick forwards after enqueueing it; a scheduler
that starts reads the last tick to tell which ticks went by while none ran.
"""

from __future__ import annotations

import builtins
import json
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from ._errors import JobRecordError

if TYPE_CHECKING:
    from . import _redis_scripts as scripts
    from ._redis_link import RedisLink


@attrs.frozen
class PeriodicEntry:
    """One periodic job as a store knows it.

    Attributes:
        name: The periodic job's name (unique per store).
        expression: Its cron expression, as declared.
        timezone: The IANA zone the expression is read in.
        task: The task it enqueues.
        queue: The queue its jobs go to.
        missed: Its policy for ticks missed while no scheduler ran (``skip`` or
            ``run_once``).
        last_tick: The last tick enqueued (Unix seconds), or None before the first.
    """

    name: str
    expression: str
    timezone: str
    task: str
    queue: str
    missed: str
    last_tick: float | None = None

    def declaration(self) -> str:
        """The entry without its last tick, as JSON (how the Redis store keeps it)."""
        data = attrs.asdict(self)
        del data["last_tick"]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def read(cls, text: str | bytes, last_tick: float | None) -> PeriodicEntry:
        """An entry from its `declaration` and last tick.

        Raises:
            JobRecordError: The stored declaration cannot be read.
        """
        try:
            data = json.loads(text)
            return cls(**data, last_tick=last_tick)
        except (TypeError, ValueError) as exc:
            raise JobRecordError(
                f"a periodic job's stored declaration cannot be read: {exc}"
            ) from None


@runtime_checkable
class PeriodicLedger(Protocol):
    """A store that remembers periodic jobs (needed by `JobQueue.periodic` schedulers)."""

    async def periodic_declare(self, entries: builtins.list[PeriodicEntry]) -> None:
        """Record these declarations (by name), keeping each one's last tick."""

    async def periodic_last(self, name: str) -> float | None:
        """The last tick enqueued of the periodic job ``name``, or None."""

    async def periodic_advance(self, name: str, tick: float) -> bool:
        """Remember ``tick`` as the last one, if it is later; return whether it was."""

    async def periodic_entries(self) -> builtins.list[PeriodicEntry]:
        """Every declared periodic job with its last tick, by name."""


class MemoryPeriodicLedger:
    """`PeriodicLedger` in this process's memory (mixed into `MemoryJobStore`)."""

    _periodic: dict[str, PeriodicEntry]

    def _periodic_table(self) -> dict[str, PeriodicEntry]:
        try:
            return self._periodic
        except AttributeError:
            self._periodic = {}
            return self._periodic

    async def periodic_declare(self, entries: builtins.list[PeriodicEntry]) -> None:
        """Record these declarations, keeping each one's last tick."""
        table = self._periodic_table()
        for entry in entries:
            known = table.get(entry.name)
            last = known.last_tick if known is not None else None
            table[entry.name] = attrs.evolve(entry, last_tick=last)

    async def periodic_last(self, name: str) -> float | None:
        """The last tick enqueued of ``name``, or None."""
        known = self._periodic_table().get(name)
        return known.last_tick if known is not None else None

    async def periodic_advance(self, name: str, tick: float) -> bool:
        """Remember ``tick`` as the last one, if it is later."""
        table = self._periodic_table()
        known = table.get(name)
        if known is None:
            return False  # advanced only after a declaration: a scheduler declares first
        if known.last_tick is not None and known.last_tick >= tick:
            return False
        table[name] = attrs.evolve(known, last_tick=tick)
        return True

    async def periodic_entries(self) -> builtins.list[PeriodicEntry]:
        """Every declared periodic job, by name."""
        table = self._periodic_table()
        return [table[name] for name in sorted(table)]


class RedisPeriodicLedger:
    """`PeriodicLedger` in Redis (mixed into `RedisJobStore`).

    Two hashes: ``prefix:periodic`` (name -> declaration, JSON) and
    ``prefix:periodic:last`` (name -> last tick), the latter moved only forwards, by
    a script.
    """

    _link: RedisLink

    def _key(self, *parts: str) -> str:
        raise NotImplementedError  # the store's

    async def _call(self, script: scripts.Script, *args: Any) -> Any:
        raise NotImplementedError  # the store's

    async def periodic_declare(self, entries: builtins.list[PeriodicEntry]) -> None:
        """Record these declarations (one HSET), keeping each one's last tick."""
        if entries:
            flat = [part for entry in entries for part in (entry.name, entry.declaration())]
            with self._link.translate("declaring periodic jobs"):
                await self._link.command("HSET", self._key("periodic"), *flat)

    async def periodic_last(self, name: str) -> float | None:
        """The last tick enqueued of ``name``, or None (one HGET)."""
        with self._link.translate("reading a periodic job's last tick"):
            found = await self._link.command("HGET", self._key("periodic", "last"), name)
        return float(found) if found is not None else None

    async def periodic_advance(self, name: str, tick: float) -> bool:
        """Remember ``tick`` as the last one, if it is later (one script)."""
        from . import _redis_scripts as scripts  # noqa: PLC0415 - loaded with the store

        return int(await self._call(scripts.PERIODIC_ADVANCE, name, repr(float(tick)))) == 1

    async def periodic_entries(self) -> builtins.list[PeriodicEntry]:
        """Every declared periodic job with its last tick, by name (two HGETALLs)."""
        declared = await self._link.hgetall(self._key("periodic"), "reading periodic jobs")
        lasts = await self._link.hgetall(self._key("periodic", "last"), "reading periodic jobs")
        ticks = {_text(k): float(v) for k, v in lasts.items()}
        entries = [PeriodicEntry.read(v, ticks.get(_text(k))) for k, v in declared.items()]
        return sorted(entries, key=lambda entry: entry.name)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
