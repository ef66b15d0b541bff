"""Periodic jobs: a task enqueued on a cron schedule, declared in code.

`Periodic` is one declaration, checked when it is made (`declare`); the scheduler
actor (`_scheduler.py`) runs them. Each tick's job has the idempotency key
`tick_key`: the periodic job's name and the tick's time in UTC, so any number of
schedulers enqueue it once.
"""

from __future__ import annotations

import datetime
import enum
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from foxactors._errors import ConfigurationError

from ._cron import CronSchedule
from ._periodic_ledger import PeriodicEntry

if TYPE_CHECKING:
    from ._client import EnqueueOptions, JobQueue
    from ._task import Task

NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


class MissedTicks(enum.Enum):
    """What a scheduler does with ticks that went by while no scheduler ran."""

    SKIP = "skip"
    """Enqueue none of them; go on from the next tick (Oban's Cron, arq's cron)."""
    RUN_ONCE = "run_once"
    """Enqueue the latest of them once, at start, then go on (Celery beat)."""


@attrs.frozen
class Periodic:
    """A periodic job: the task, its arguments and options, and its schedule.

    Attributes:
        name: Unique per `JobQueue`; part of every tick's idempotency key.
        schedule: The cron expression in its time zone.
        task: The task it enqueues.
        payload: The task's arguments, validated and encoded at declaration.
        options: The enqueue options of every tick's job (queue, priority, tenant,
            max_attempts; the key is the tick's).
        missed: The policy for ticks missed while no scheduler ran.
    """

    name: str
    schedule: CronSchedule
    task: Task[Any, Any]
    payload: dict[str, Any]
    options: EnqueueOptions
    missed: MissedTicks

    @property
    def queue(self) -> str:
        """The queue its jobs go to."""
        return self.options.queue or self.task.defaults.queue

    def entry(self) -> PeriodicEntry:
        """How a store remembers it (without its last tick)."""
        return PeriodicEntry(
            self.name,
            self.schedule.expression,
            self.schedule.timezone,
            self.task.name,
            self.queue,
            self.missed.value,
        )

    def tick_options(self, tick: float) -> EnqueueOptions:
        """The enqueue options of the job of ``tick``: its key names the tick."""
        return attrs.evolve(self.options, key=tick_key(self.name, tick))


def tick_key(name: str, tick: float) -> str:
    """The idempotency key of a periodic job's tick: ``periodic:<name>:<UTC time>``."""
    moment = datetime.datetime.fromtimestamp(tick, datetime.UTC)
    return f"periodic:{name}:{moment.isoformat(timespec='seconds').replace('+00:00', 'Z')}"


def declare(
    jobs: JobQueue,
    expression: str,
    task: Task[Any, Any] | str,
    *,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    tz: str,
    name: str | None,
    missed: MissedTicks | str,
    enqueue: Mapping[str, Any],
) -> Periodic:
    """Check and build a `Periodic` of ``jobs`` (see `JobQueue.periodic`).

    Raises:
        ConfigurationError: A bad expression, zone, name, policy or option.
        UnknownTask: ``task`` names no registered task.
        JobArgumentsError: The arguments do not fit the task.
    """
    from ._client import enqueue_options  # noqa: PLC0415 - _client imports this module

    schedule = CronSchedule.of(expression, tz)
    found = jobs._task(task)
    chosen = name if name is not None else found.name
    if not isinstance(chosen, str) or not NAME.fullmatch(chosen):
        raise ConfigurationError(
            f"a periodic job's name must be 1 to 128 letters, digits or '_.:-', got {chosen!r}"
        )
    try:
        policy = MissedTicks(missed)
    except ValueError:
        raise ConfigurationError(f"missed must be 'skip' or 'run_once', got {missed!r}") from None
    if isinstance(args, str | bytes) or not isinstance(args, Sequence):
        raise ConfigurationError(f"args must be a tuple or list of arguments, got {args!r}")
    payload = found.signature.encode(tuple(args), dict(kwargs or {}))
    options = enqueue_options(**enqueue)
    return Periodic(chosen, schedule, found, payload, options, policy)
