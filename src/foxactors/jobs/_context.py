"""`JobContext`: what a running task knows about its job, and how it reports progress."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import anyio.from_thread
import structlog

from foxactors._errors import ConfigurationError
from foxactors._logging import get_logger

if TYPE_CHECKING:
    from ._record import JobRecord
    from ._store import JobStore


class JobContext:
    """Given to a task as its first argument (a parameter named ``ctx`` or annotated so).

    Attributes:
        job_id: The job's id.
        task: The task's name.
        queue: The queue it runs from.
        attempt: This attempt, 1-based.
        max_attempts: Attempts allowed before the job goes dead.
        tenant: Whose job it is, or None.
    """

    def __init__(self, record: JobRecord, store: JobStore) -> None:
        self.job_id = record.id
        self.task = record.task
        self.queue = record.queue
        self.attempt = record.attempt
        self.max_attempts = record.max_attempts
        self.tenant = record.tenant
        self._store = store
        self._cancel_requested = False

    @functools.cached_property
    def log(self) -> structlog.typing.FilteringBoundLogger:
        """A structlog logger bound to the job (id, task, attempt, tenant)."""
        bound: structlog.typing.FilteringBoundLogger = get_logger("foxactors.jobs").bind(
            job_id=self.job_id, task=self.task, attempt=self.attempt, tenant=self.tenant
        )
        return bound

    @property
    def cancel_requested(self) -> bool:
        """True once a cancel was recorded: stop soon; whatever is returned is dropped.

        An async task is also cancelled at its next ``await``; a sync task (on a worker
        thread) can only learn it here.
        """
        return self._cancel_requested

    def _cancelled(self) -> None:
        self._cancel_requested = True

    async def progress(self, percent: float, message: str | None = None) -> None:
        """Record progress (0 to 100) and an optional message on the job's record.

        Raises:
            ConfigurationError: ``percent`` is not a number from 0 to 100.
        """
        percent = _percent(percent)
        if await self._store.progress(self.job_id, self.attempt, percent, message):
            self._cancel_requested = True


class SyncJobContext(JobContext):
    """The context of a plain ``def`` task, which runs on a worker thread.

    Its `progress` blocks the thread until the record is written.
    """

    def progress(self, percent: float, message: str | None = None) -> None:  # type: ignore[override]
        """Record progress (0 to 100) from the task's thread; see `JobContext.progress`."""
        anyio.from_thread.run(JobContext.progress, self, percent, message)


def _percent(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= 100
    ):
        raise ConfigurationError(f"progress must be a number from 0 to 100, got {value!r}")
    return float(value)
