"""`MemoryJobStore`: job records in this process, for the memory backend and tests."""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from foxactors._errors import ConfigurationError
from foxactors._validate import require_seconds

from . import _transitions as t
from ._errors import JobNotFound
from ._periodic_ledger import MemoryPeriodicLedger
from ._record import FINAL, ErrorInfo, JobRecord, JobState
from ._store import CancelKind, Cancelled, JobOutcome, JobPage, Reaped, Started, StartKind

DEFAULT_RETENTION = 24 * 3600.0
"""Finished records are kept a day unless told otherwise."""


class MemoryJobStore(MemoryPeriodicLedger):
    """Job records in a dict, changed only by the pure transitions (atomic: no awaits).

    For one process: the memory backend, embedded use and tests. It lives on one event
    loop; from other threads, call into that loop (see the jobs guide).

    Attributes:
        retention: Seconds a finished record (result, error, key) is kept.
    """

    def __init__(self, *, retention: float = DEFAULT_RETENTION) -> None:
        self.retention = require_seconds("retention", retention)
        self._records: dict[str, JobRecord] = {}
        self._order: dict[str, int] = {}  # id -> insertion number, for newest-first pages
        self._keys: dict[tuple[str, str], str] = {}  # (tenant or "", key) -> job id
        self._finished: dict[str, anyio.Event] = {}  # waiters of result()
        self._cancel_callbacks: builtins.list[Callable[[str], None]] = []
        self._numbers = itertools.count()

    # -- reads ----------------------------------------------------------------------

    def _find(self, job_id: str, tenant: str | None) -> JobRecord:
        record = self._records.get(job_id)
        if record is None or (tenant is not None and record.tenant != tenant):
            raise JobNotFound(f"no job {job_id!r}" + (f" for tenant {tenant!r}" if tenant else ""))
        return record

    async def get(self, job_id: str, *, tenant: str | None = None) -> JobRecord:
        """Return the job's record (`JobNotFound` if none, for this tenant)."""
        return self._find(job_id, tenant)

    async def list(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        tenant: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        """Return up to ``limit`` records, newest first, filtered by what is given."""
        if limit < 1:
            raise ConfigurationError(f"limit must be an int >= 1, got {limit!r}")
        below = int(cursor) if cursor is not None else None
        found: builtins.list[JobRecord] = []
        for job_id in reversed(self._records):
            number = self._order[job_id]
            if below is not None and number >= below:
                continue
            record = self._records[job_id]
            if (
                (queue is None or record.queue == queue)
                and (state is None or record.state is state)
                and (tenant is None or record.tenant == tenant)
            ):
                if len(found) == limit:
                    return JobPage(tuple(found), str(self._order[found[-1].id]))
                found.append(record)
        return JobPage(tuple(found), None)

    async def counts(
        self, *, queue: str | None = None, tenant: str | None = None
    ) -> Mapping[JobState, int]:
        """Return how many jobs are in each state."""
        counts = dict.fromkeys(JobState, 0)
        for record in self._records.values():
            if (queue is None or record.queue == queue) and (
                tenant is None or record.tenant == tenant
            ):
                counts[record.state] += 1
        return counts

    async def wait(
        self, job_id: str, *, timeout: float | None, tenant: str | None = None
    ) -> JobRecord:
        """Wait until the job is final; return its record."""
        record = self._find(job_id, tenant)
        if record.state in FINAL:
            return record
        event = self._finished.get(job_id)
        if event is None:
            event = self._finished[job_id] = anyio.Event()
        with anyio.fail_after(timeout):
            await event.wait()
        return self._find(job_id, tenant)

    async def outcome(
        self, job_id: str, *, timeout: float | None, tenant: str | None = None
    ) -> JobOutcome:
        """`wait`, as an `JobOutcome` (the record is at hand: nothing to save)."""
        return JobOutcome.of(await self.wait(job_id, timeout=timeout, tenant=tenant))

    # -- changes (each one synchronous between awaits: atomic on the loop) ----------

    def _put(self, record: JobRecord) -> JobRecord:
        old = self._records.get(record.id)
        self._records[record.id] = record
        if record.cancel_requested and not (old is not None and old.cancel_requested):
            for callback in self._cancel_callbacks:
                callback(record.id)
        if record.state in FINAL and not (old is not None and old.state in FINAL):
            event = self._finished.pop(record.id, None)
            if event is not None:
                event.set()
        return record

    def _delete(self, record: JobRecord) -> None:
        del self._records[record.id]
        del self._order[record.id]
        if record.key is not None:
            slot = (record.tenant or "", record.key)
            if self._keys.get(slot) == record.id:
                del self._keys[slot]

    def _create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        known = self._records.get(record.id)
        if known is not None:  # a retried call: it answers as the first one did
            return known, True
        if record.key is not None:
            slot = (record.tenant or "", record.key)
            holder = self._keys.get(slot)
            if holder is not None:
                return self._records[holder], False
            self._keys[slot] = record.id
        self._order[record.id] = next(self._numbers)
        return self._put(record), True

    async def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        """Insert ``record``, unless a live job of its tenant holds its key."""
        return self._create(record)

    async def create_many(
        self, records: builtins.list[JobRecord]
    ) -> builtins.list[tuple[JobRecord, bool]]:
        """`create` for each record, in order."""
        return [self._create(record) for record in records]

    async def commit(self, job_ids: builtins.list[str]) -> None:
        """Mark enqueues finished."""
        for job_id in job_ids:
            record = self._records.get(job_id)
            if record is not None and not record.committed:
                self._put(record.changed(committed=True))

    async def discard(self, job_ids: builtins.list[str]) -> None:
        """Delete uncommitted records and free their keys."""
        for job_id in job_ids:
            record = self._records.get(job_id)
            if record is not None and not record.committed:
                self._delete(record)

    async def start(self, job_id: str, now: float, lease_until: float) -> Started:
        """Lease the job's next attempt if it may run."""
        record = self._records.get(job_id)
        if record is None:
            return Started(StartKind.MISSING)
        record, kind = t.start(record, now, lease_until, self.retention)
        return Started(kind, self._put(record))

    async def renew(
        self, attempts: builtins.list[tuple[str, int]], lease_until: float
    ) -> builtins.list[str]:
        """Renew the leases of running attempts; return the ids with a cancel recorded."""
        cancelled = []
        for job_id, attempt in attempts:
            record = self._records.get(job_id)
            if (
                record is not None
                and self._put(t.heartbeat(record, attempt, lease_until)).cancel_requested
            ):
                cancelled.append(job_id)
        return cancelled

    def on_cancel(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(job_id)`` as soon as a cancel of a running job is recorded."""
        self._cancel_callbacks.append(callback)
        return lambda: self._cancel_callbacks.remove(callback)

    async def heartbeat(self, job_id: str, attempt: int, lease_until: float) -> bool:
        """Renew the lease; return True if a cancel was recorded."""
        record = self._records.get(job_id)
        if record is None:
            return False
        return self._put(t.heartbeat(record, attempt, lease_until)).cancel_requested

    async def progress(
        self, job_id: str, attempt: int, percent: float, message: str | None
    ) -> bool:
        """Record progress; return True if a cancel was recorded."""
        record = self._records.get(job_id)
        if record is None:
            return False
        return self._put(t.progress(record, attempt, percent, message)).cancel_requested

    def _change(self, job_id: str, record: JobRecord | None) -> JobState:
        if record is None:
            raise JobNotFound(f"no job {job_id!r}")
        return self._put(record).state

    async def complete(self, job_id: str, attempt: int, now: float, result: Any) -> JobState:
        """Succeeded, unless a cancel was recorded first; return the final state."""
        record = self._records.get(job_id)
        return self._change(
            job_id, record and t.complete(record, attempt, now, result, self.retention)
        )

    async def fail(
        self,
        job_id: str,
        attempt: int,
        now: float,
        error: ErrorInfo | None,
        *,
        retry_at: float | None,
        reason: str,
    ) -> JobState:
        """Retrying or dead; a recorded cancel wins."""
        record = self._records.get(job_id)
        changed = record and t.fail(
            record,
            attempt,
            now,
            error=error,
            retry_at=retry_at,
            reason=reason,
            retention=self.retention,
        )
        return self._change(job_id, changed)

    async def release(self, job_id: str, attempt: int, now: float) -> JobState:
        """Back to pending (or cancelled, if asked)."""
        record = self._records.get(job_id)
        return self._change(job_id, record and t.release(record, attempt, now, self.retention))

    async def cancel(self, job_id: str, now: float, *, tenant: str | None = None) -> Cancelled:
        """Record a cancel."""
        record, kind = t.cancel(self._find(job_id, tenant), now, self.retention)
        if kind is not CancelKind.FINISHED:
            self._put(record)
        return Cancelled(kind, record)

    async def retry(self, job_id: str, now: float, *, tenant: str | None = None) -> JobRecord:
        """Dead or cancelled back to pending (uncommitted)."""
        return self._put(t.retry(self._find(job_id, tenant), now))

    async def reap(self, now: float, *, abandon_after: float) -> Reaped:
        """Expire leases, delete expired records and abandoned enqueues."""
        leases = records = abandoned = 0
        for record in builtins.list(self._records.values()):
            released = t.lease_expired(record, now, self.retention)
            if released is not None:
                self._put(released)
                leases += 1
            elif record.state in FINAL and (record.expires_at or 0.0) <= now:
                self._delete(record)
                records += 1
            elif not record.committed and record.enqueued_at + abandon_after <= now:
                self._delete(record)
                abandoned += 1
        return Reaped(leases, records, abandoned)

    async def close(self) -> None:
        """Nothing to release."""
