"""`JobHandle`: what an enqueue returns; read the job's status and result, or cancel it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from ._errors import JobCancelled, JobFailed
from ._record import JobRecord, JobState
from ._store import JobOutcome

if TYPE_CHECKING:
    from ._client import JobQueue
    from ._store import Cancelled, OutcomeReader

R = TypeVar("R")


class JobHandle(Generic[R]):
    """One job: its id, and the ways to read and change it.

    Attributes:
        id: The job id (for ``foxactors jobs status ID`` too).
        created: False when an idempotency key returned a job enqueued before.
        tenant: The tenant this handle reads as (None: any).
    """

    def __init__(
        self,
        jobs: JobQueue,
        job_id: str,
        *,
        created: bool = True,
        tenant: str | None = None,
        decode: Any = None,
    ) -> None:
        self.jobs = jobs
        self.id = job_id
        self.created = created
        self.tenant = tenant
        self._decode = decode

    async def status(self) -> JobRecord:
        """The job's record now: state, attempts, progress, result, error, times.

        Raises:
            JobNotFound: It expired (past the store's retention) or never existed.
        """
        return await self.jobs.get(self.id, tenant=self.tenant)

    async def result(self, timeout: float | None = None) -> R:
        """Wait until the job is final and return its result.

        The store tells waiters when a job ends (no polling in a loop).

        Raises:
            JobFailed: The job is dead; ``error.record`` says why.
            JobCancelled: The job was cancelled.
            TimeoutError: Not final within ``timeout`` seconds.
            JobNotFound: It expired or never existed.
        """
        store = self.jobs.store
        if self.jobs.reads_outcomes:  # checked once, by the queue
            reader = cast("OutcomeReader", store)
            ended = await reader.outcome(self.id, timeout=timeout, tenant=self.tenant)
        else:  # a store without the capability: its whole record
            ended = JobOutcome.of(await store.wait(self.id, timeout=timeout, tenant=self.tenant))
        if ended.state is JobState.SUCCEEDED:
            decode = self._decode or self.jobs.decoder(ended.task)
            return decode(ended.result) if decode else ended.result  # type: ignore[no-any-return]
        if ended.state is JobState.CANCELLED:
            raise JobCancelled(f"job {self.id!r} was cancelled; it has no result")
        assert ended.record is not None  # a dead job's outcome carries its record
        raise JobFailed(f"job {self.id!r} is dead: {ended.record.reason}", ended.record)

    async def cancel(self) -> Cancelled:
        """Cancel the job: before it runs, it never will; running, it is cancelled.

        Returns what the cancel did (`CancelKind`): a finished job is left as it is.
        """
        return await self.jobs.cancel(self.id, tenant=self.tenant)

    def __repr__(self) -> str:
        return f"<JobHandle {self.id!r}{'' if self.created else ' (existing)'}>"
