"""The job state machine as pure functions: a record and an event in, a record out.

Every store applies these (the memory store directly, the Redis store as the same
table in Lua); `tests/test_job_store.py` holds both to them.
"""

from __future__ import annotations

from typing import Any

from ._errors import JobError
from ._record import FINAL, ErrorInfo, JobRecord, JobState
from ._store import CancelKind, StartKind


def _final(
    record: JobRecord, state: JobState, now: float, retention: float, **more: Any
) -> JobRecord:
    return record.changed(
        state=state,
        finished_at=now,
        expires_at=now + retention,
        lease_until=None,
        next_run_at=None,
        **more,
    )


def cancelled(record: JobRecord, now: float, retention: float) -> JobRecord:
    """The record cancelled at ``now``: no result, kept for ``retention``."""
    return _final(record, JobState.CANCELLED, now, retention, result=None, reason="cancelled")


def start(
    record: JobRecord, now: float, lease_until: float, retention: float
) -> tuple[JobRecord, StartKind]:
    """A delivery of the job reached a worker: its next attempt, counted by the record.

    Not by the broker: a broker counts every redelivery, also of a delivery that a
    stopping worker had only prefetched and gives back unrun, which is no attempt.
    Not while another attempt runs under a live lease: that worker may run on (cut
    off from its broker, which delivered the job again), and two attempts of one job
    do not run at once; a worker that died leaves its lease to run out. Nor before a
    retry is due: a copy of the delivery that comes back early waits for it.
    """
    if record.state is JobState.CANCELLED:
        return record, StartKind.CANCELLED
    if record.state in FINAL:
        return record, StartKind.FINISHED
    if record.state is JobState.RUNNING and (record.lease_until or 0.0) > now:
        # its attempt may run on: not two at once (a recorded cancel reaches that
        # worker, which ends the attempt itself)
        return record, StartKind.BUSY
    if record.cancel_requested:  # a running attempt's worker died after the cancel
        return cancelled(record, now, retention), StartKind.CANCELLED
    if record.state is JobState.RETRYING and (record.next_run_at or 0.0) > now:
        return record, StartKind.NOT_DUE  # a copy back early: the retry waits its time
    running = record.changed(
        state=JobState.RUNNING,
        attempt=record.attempt + 1,
        started_at=now,
        lease_until=lease_until,
        next_run_at=None,
        committed=True,
    )
    return running, StartKind.RUN


def _is_attempt(record: JobRecord, attempt: int) -> bool:
    return record.state is JobState.RUNNING and record.attempt == attempt


def heartbeat(record: JobRecord, attempt: int, lease_until: float) -> JobRecord:
    """Renew the lease of the running ``attempt`` (a stale attempt renews nothing)."""
    if _is_attempt(record, attempt):
        return record.changed(lease_until=lease_until)
    return record


def progress(record: JobRecord, attempt: int, percent: float, message: str | None) -> JobRecord:
    """Record progress of the running ``attempt``."""
    if _is_attempt(record, attempt):
        return record.changed(progress=percent, progress_message=message)
    return record


def _stale(record: JobRecord, attempt: int) -> bool:
    """True if ``attempt`` may not end the job: it is final, or a later attempt started."""
    return record.state in FINAL or record.attempt != attempt


def complete(
    record: JobRecord, attempt: int, now: float, result: Any, retention: float
) -> JobRecord:
    """The handler returned: succeeded, unless cancelled first, final, or stale."""
    if _stale(record, attempt):
        return record
    if record.cancel_requested:
        return cancelled(record, now, retention)
    return _final(
        record, JobState.SUCCEEDED, now, retention, result=result, progress=100.0, error=None
    )


def fail(
    record: JobRecord,
    attempt: int,
    now: float,
    *,
    error: ErrorInfo | None,
    retry_at: float | None,
    reason: str,
    retention: float,
) -> JobRecord:
    """An attempt failed: retrying, or dead; a recorded cancel wins; a stale one is ignored."""
    if _stale(record, attempt):
        return record
    if record.cancel_requested:
        return cancelled(record, now, retention)
    if retry_at is not None:
        return record.changed(
            state=JobState.RETRYING,
            next_run_at=retry_at,
            lease_until=None,
            error=error,
            reason=reason,
        )
    return _final(record, JobState.DEAD, now, retention, error=error, reason=reason)


def release(record: JobRecord, attempt: int, now: float, retention: float) -> JobRecord:
    """A running attempt stopped unfinished: pending again (cancelled, if asked)."""
    if _stale(record, attempt):
        return record
    if record.cancel_requested:
        return cancelled(record, now, retention)
    if record.state is JobState.RUNNING:
        return record.changed(state=JobState.PENDING, lease_until=None)
    return record


def cancel(record: JobRecord, now: float, retention: float) -> tuple[JobRecord, CancelKind]:
    """Record a cancel."""
    if record.state in FINAL:
        return record, CancelKind.FINISHED
    if record.state is JobState.RUNNING:
        return record.changed(cancel_requested=True), CancelKind.REQUESTED
    return cancelled(record.changed(cancel_requested=True), now, retention), CancelKind.CANCELLED


def retry(record: JobRecord, now: float) -> JobRecord:
    """A dead or cancelled job, back to pending with its attempts from zero.

    Raises:
        JobError: The job is not dead or cancelled.
    """
    if record.state not in (JobState.DEAD, JobState.CANCELLED):
        raise JobError(
            f"job {record.id!r} is {record.state.value}: only dead or cancelled jobs can be retried"
        )
    return record.changed(
        state=JobState.PENDING,
        attempt=0,
        enqueued_at=now,
        scheduled_at=None,
        started_at=None,
        finished_at=None,
        expires_at=None,
        lease_until=None,
        next_run_at=None,
        progress=None,
        progress_message=None,
        result=None,
        reason=None,
        cancel_requested=False,
        committed=False,
    )


def lease_expired(record: JobRecord, now: float, retention: float) -> JobRecord | None:
    """The record after its lease ran out at ``now``, or None if it has not."""
    if record.state is JobState.RUNNING and (record.lease_until or 0.0) < now:
        return release(record, record.attempt, now, retention)
    return None
