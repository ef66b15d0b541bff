"""`enqueued` and `assert_enqueued`: which jobs of a task wait to run (as Oban's helpers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from foxactors._errors import ConfigurationError

if TYPE_CHECKING:
    from foxactors.jobs import JobRecord, Task

_WAITING = ("pending", "scheduled", "retrying")  # enqueued, not run to an end yet


async def enqueued(task: Task[Any, Any], *, tenant: str | None = None) -> list[JobRecord]:
    """The jobs of ``task`` waiting to run (pending, scheduled, retrying), oldest first.

    Reads the task's job store, so it works with or without a worker running.
    ``tenant`` limits it to one tenant's jobs (None: every tenant's).
    """
    from foxactors.jobs import Task  # noqa: PLC0415 - the jobs extra is optional

    if not isinstance(task, Task):
        raise ConfigurationError(
            f"enqueued() takes a task (made by @jobs.task), got {type(task).__name__}: {task!r}"
        )
    found: list[JobRecord] = []
    for state in _WAITING:
        cursor = None
        while True:
            page = await task.jobs.list(state=state, tenant=tenant, limit=1000, cursor=cursor)
            found.extend(record for record in page.jobs if record.task == task.name)
            cursor = page.cursor
            if cursor is None:
                break
    return sorted(found, key=lambda record: (record.enqueued_at, record.id))


async def assert_enqueued(
    task: Task[Any, Any], *, tenant: str | None = None, **args: Any
) -> JobRecord:
    """Assert that a job of ``task`` waits to run with (at least) ``args``; return it.

    ``args`` are compared with the job's arguments as stored (JSON: a date reads as
    its ISO string); arguments not named are not compared.

    Raises:
        AssertionError: No such job; the message lists the jobs of ``task`` that
            do wait, with their arguments.
    """
    waiting = await enqueued(task, tenant=tenant)
    for record in waiting:
        if all(name in record.args and record.args[name] == value for name, value in args.items()):
            return record
    wanted = f"with args {args!r}" if args else "(any args)"
    if waiting:
        listed = "\n".join(f"  {dict(record.args)!r} ({record.state.value})" for record in waiting)
        seen = f"{len(waiting)} job(s) of it wait(s):\n{listed}"
    else:
        seen = "no job of it waits"
    raise AssertionError(f"expected a job of task {task.name!r} enqueued {wanted}; {seen}")
