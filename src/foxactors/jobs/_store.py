"""The job store contract: atomic transitions of job records, declared once.

A store keeps one `JobRecord` per job and changes it only by the transitions below,
each atomic: two workers, a worker and a cancel, or N producers with one key race
safely. The pure functions in `_transitions` say what each transition does; the memory
store applies them under the event loop, the Redis store runs the same table in Lua.
The checklist is ``tests/test_job_store.py``, run over every store.

``tenant`` arguments scope a read or a change: None reads every tenant's jobs (an
operator); a tenant name sees only that tenant's jobs, and another tenant's job
answers `JobNotFound`.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from ._record import ErrorInfo, JobRecord, JobState


class StartKind(enum.Enum):
    """What a worker should do with a delivery of a job (the answer of `JobStore.start`)."""

    RUN = "run"
    """Run it: the record now says running, this attempt, leased."""
    CANCELLED = "cancelled"
    """Do not run it: it was cancelled (the record says so now). Settle the delivery."""
    FINISHED = "finished"
    """Do not run it: it already reached a final state (a duplicate delivery)."""
    MISSING = "missing"
    """No record: it expired, was deleted, or its enqueue never finished."""
    BUSY = "busy"
    """Do not run it yet: another delivery's attempt runs, and its lease has not run
    out (a worker cut off from its broker runs on while the broker delivers the job
    again). Bring it back when the lease would run out; nothing was counted."""
    NOT_DUE = "not_due"
    """Do not run it yet: it is retrying, and the retry is due later (a copy of its
    delivery came back early). Bring it back when it is due; nothing was counted."""


@attrs.frozen
class Started:
    """The answer of `JobStore.start`: what to do, and the record as it now is."""

    kind: StartKind
    record: JobRecord | None = None


class CancelKind(enum.Enum):
    """What a cancel did."""

    CANCELLED = "cancelled"
    """The job had not started (or was between attempts): it is cancelled and never runs."""
    REQUESTED = "requested"
    """The job is running: its handler is cancelled, and the job ends cancelled."""
    FINISHED = "finished"
    """The job had already finished: nothing changed."""


@attrs.frozen
class Cancelled:
    """The answer of `JobStore.cancel`: what it did, and the record as it now is."""

    kind: CancelKind
    record: JobRecord


@attrs.frozen
class JobPage:
    """One page of a listing, newest first; pass ``cursor`` back for the next page.

    Attributes:
        jobs: The records on this page.
        cursor: Where the next page starts, or None after the last page.
    """

    jobs: tuple[JobRecord, ...]
    cursor: str | None = None


@attrs.frozen
class JobOutcome:
    """How a job ended: what `JobHandle.result` reads (the answer of `OutcomeReader`).

    Attributes:
        state: SUCCEEDED, DEAD or CANCELLED.
        task: The job's task (whose decoder reads the result).
        result: What the handler returned, as stored (JSON data); None unless succeeded.
        record: The whole record of a dead job (its error says why); None otherwise.
    """

    state: JobState
    task: str
    result: Any = None
    record: JobRecord | None = None

    @classmethod
    def of(cls, record: JobRecord) -> JobOutcome:
        """The outcome a final ``record`` tells."""
        dead = record.state is JobState.DEAD
        return cls(record.state, record.task, record.result, record if dead else None)


@attrs.frozen
class Reaped:
    """What one pass of `JobStore.reap` did.

    Attributes:
        expired_leases: Running jobs whose worker stopped renewing: back to pending
            (the broker delivers them again), or cancelled if a cancel was recorded.
        expired_records: Finished records past their retention, deleted with their keys.
        abandoned: Enqueues that never finished (their producer died before publishing),
            deleted with their keys.
    """

    expired_leases: int = 0
    expired_records: int = 0
    abandoned: int = 0


@runtime_checkable
class JobStore(Protocol):
    """Where job records live. Every method is one atomic transition or one read.

    Attributes:
        retention: Seconds a finished record (result, error, key) is kept.
    """

    retention: float

    async def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        """Insert ``record`` (uncommitted), unless its key is taken.

        Returns ``(record, True)`` when inserted; ``(existing, False)`` when a job
        of the same tenant holds the same key and has not expired.
        """

    async def create_many(
        self, records: builtins.list[JobRecord]
    ) -> builtins.list[tuple[JobRecord, bool]]:
        """`create` for each record, in order (one round trip where the store allows)."""

    async def commit(self, job_ids: builtins.list[str]) -> None:
        """Mark enqueues finished: their deliveries are with the broker."""

    async def discard(self, job_ids: builtins.list[str]) -> None:
        """Delete uncommitted records and free their keys: their enqueue failed."""

    async def start(self, job_id: str, now: float, lease_until: float) -> Started:
        """A worker got a delivery of the job: lease its next attempt, if it may run.

        The attempt is the record's last one plus one (a run that began counts; a
        delivery given back unrun does not, whatever the broker counted). Not while
        another attempt runs under a live lease (`StartKind.BUSY`), nor before a
        retry is due (`StartKind.NOT_DUE`): a store that starts it anyway lets two
        attempts of one job run at once, or a retry run early.
        """

    async def heartbeat(self, job_id: str, attempt: int, lease_until: float) -> bool:
        """Renew the lease of a running attempt; return True if a cancel was recorded."""

    async def progress(
        self, job_id: str, attempt: int, percent: float, message: str | None
    ) -> bool:
        """Record a running attempt's progress; return True if a cancel was recorded."""

    async def complete(self, job_id: str, attempt: int, now: float, result: Any) -> JobState:
        """The handler returned ``result``: succeeded, unless a cancel was recorded first.

        Returns the final state: SUCCEEDED, or CANCELLED (no result kept), or the
        state it is in, unchanged, if it was final already or a later attempt started
        (this one is stale: its end must not overwrite the later one's).
        """

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
        """An attempt failed: retrying until ``retry_at``, or dead (``retry_at`` None).

        A recorded cancel wins (CANCELLED); a stale attempt changes nothing. Returns
        the state the job is now in.
        """

    async def release(self, job_id: str, attempt: int, now: float) -> JobState:
        """The attempt stopped unfinished (shutdown, crash): back to pending.

        A recorded cancel wins (CANCELLED); a stale attempt changes nothing. Returns
        the state the job is now in.
        """

    async def cancel(self, job_id: str, now: float, *, tenant: str | None = None) -> Cancelled:
        """Record a cancel: it wins over a completion not yet committed.

        Raises:
            JobNotFound: No such job (for this tenant).
        """

    async def retry(self, job_id: str, now: float, *, tenant: str | None = None) -> JobRecord:
        """Set a dead or cancelled job back to pending (uncommitted), attempts from zero.

        The caller publishes a new delivery, then commits it.

        Raises:
            JobNotFound: No such job (for this tenant).
            JobError: The job is not dead or cancelled (the message says its state).
        """

    async def get(self, job_id: str, *, tenant: str | None = None) -> JobRecord:
        """Return the job's record.

        Raises:
            JobNotFound: No such job (for this tenant).
            JobRecordError: The stored record cannot be read.
        """

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

    async def counts(
        self, *, queue: str | None = None, tenant: str | None = None
    ) -> Mapping[JobState, int]:
        """Return how many jobs are in each state (every state present, zeros too)."""

    async def wait(
        self, job_id: str, *, timeout: float | None, tenant: str | None = None
    ) -> JobRecord:
        """Wait until the job is final (without polling the store hard); return its record.

        Raises:
            JobNotFound: No such job (for this tenant).
            TimeoutError: Not final within ``timeout`` seconds.
        """

    async def renew(
        self, attempts: builtins.list[tuple[str, int]], lease_until: float
    ) -> builtins.list[str]:
        """Renew the leases of running attempts ``(job_id, attempt)`` in one step.

        Returns the ids among them whose job has a cancel recorded (their runners
        cancel them). An attempt that is no longer running renews nothing.
        """

    async def reap(self, now: float, *, abandon_after: float) -> Reaped:
        """Expire leases and old records; drop enqueues abandoned ``abandon_after`` ago."""

    async def close(self) -> None:
        """Release connections the store holds."""


@runtime_checkable
class CancelSignals(Protocol):
    """A capability: the store calls back as soon as a cancel is recorded.

    Without it, running attempts learn of a cancel when their leases are renewed
    (`JobStore.renew`, every ``cancel_poll`` seconds).
    """

    def on_cancel(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(job_id)`` when a cancel of a running job is recorded.

        Returns a function that stops the calls. The callback runs on the store's
        event loop and must not block.
        """


@runtime_checkable
class OutcomeReader(Protocol):
    """A capability: read how a job ended without reading its whole record.

    `JobHandle.result` uses it where the store has it (the memory and Redis stores
    do); with a store that has not, it reads the record (`JobStore.wait`).
    """

    async def outcome(
        self, job_id: str, *, timeout: float | None, tenant: str | None = None
    ) -> JobOutcome:
        """`JobStore.wait`, reading only what the end of a job says.

        Raises:
            JobNotFound: No such job (for this tenant).
            JobRecordError: The stored record cannot be read.
            TimeoutError: Not final within ``timeout`` seconds.
        """
