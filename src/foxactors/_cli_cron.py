"""``foxactors jobs cron``: the periodic jobs a job store knows, with last and next runs.

Schedulers write the declarations they run into the store, so the command needs no
access to the code: a periodic job shows once a scheduler that declares it started.
Next runs are worked out here from each expression and zone (the ``jobs`` extra's
cron arithmetic), from the wall clock now.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from .jobs import JobQueue

clock = time.time
"""The wall clock the next runs are counted from (tests set it)."""

HELP = "periodic jobs: expression, zone, task, last and next run"


async def cron(jobs: JobQueue, args: argparse.Namespace) -> int:
    """Print each periodic job the store knows: a table, or ``--json``."""
    from ._cli_jobs import _print_json, _print_table  # noqa: PLC0415 - shared output
    from .jobs import CronSchedule, PeriodicLedger  # noqa: PLC0415 - needs the jobs extra

    store = jobs.store
    if not isinstance(store, PeriodicLedger):
        raise ConfigurationError(f"the job store {store!r} does not remember periodic jobs")
    now = clock()
    rows: list[dict[str, Any]] = []
    for entry in await store.periodic_entries():
        try:
            schedule = CronSchedule.of(entry.expression, entry.timezone)
            upcoming: str | None = _shown(schedule, schedule.next_after(now))
        except ConfigurationError as exc:  # declared by a newer version, say: show why
            schedule, upcoming = None, f"? ({exc})"
        last = entry.last_tick
        rows.append(
            {
                "name": entry.name,
                "expression": entry.expression,
                "timezone": entry.timezone,
                "task": entry.task,
                "queue": entry.queue,
                "missed": entry.missed,
                "last_run": None if last is None or schedule is None else _shown(schedule, last),
                "next_run": upcoming,
            }
        )
    if args.json:
        _print_json({"periodic": rows})
        return 0
    header = ["NAME", "EXPRESSION", "ZONE", "TASK", "QUEUE", "MISSED", "LAST RUN", "NEXT RUN"]
    keys = ["name", "expression", "timezone", "task", "queue", "missed", "last_run", "next_run"]
    _print_table(header, [[row[k] or "-" for k in keys] for row in rows])
    return 0


def _shown(schedule: Any, seconds: float) -> str:
    """A tick as wall time in its zone, with the offset (unambiguous on DST nights)."""
    return str(schedule.at(seconds).isoformat(timespec="seconds"))
