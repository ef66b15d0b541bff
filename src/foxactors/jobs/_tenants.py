"""`TenantJobs`: a job queue seen by one tenant; it reads and changes only that tenant's jobs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from foxactors._errors import ConfigurationError
from foxactors.backends import check_tenant

from ._handle import JobHandle
from ._record import JobRecord, JobState
from ._store import Cancelled, JobPage
from ._task import BoundTask, Task

if TYPE_CHECKING:
    from ._client import JobQueue

P = ParamSpec("P")
R = TypeVar("R")


class TenantJobs:
    """One tenant's view of a `JobQueue` (from ``jobs.for_tenant("acme")``).

    Everything it enqueues is the tenant's; everything it reads or changes is looked
    up for the tenant only, so another tenant's job id answers `JobNotFound`, exactly
    as an id that never existed (no data, not even that it exists). Idempotency keys
    are the tenant's own: two tenants may use the same key for two jobs.

    Attributes:
        jobs: The job queue it is a view of.
        tenant: The tenant it is scoped to.
    """

    def __init__(self, jobs: JobQueue, tenant: str) -> None:
        self.jobs = jobs
        self.tenant = check_tenant(tenant)

    def _options(self, options: dict[str, Any]) -> dict[str, Any]:
        given = options.pop("tenant", self.tenant)
        if given != self.tenant:
            raise ConfigurationError(
                f"this view enqueues for tenant {self.tenant!r} only, got tenant={given!r}: "
                f"use jobs.for_tenant({given!r}) for that tenant's jobs"
            )
        return {**options, "tenant": self.tenant}

    def task(self, task: Task[P, R], **options: Any) -> BoundTask[P, R]:
        """``task`` bound to this tenant: ``acme.task(send_email).enqueue(...)``.

        ``options`` are those of `Task.options`, but the tenant is this view's.
        """
        return task.options(**self._options(options))

    async def enqueue(
        self,
        task: str | Task[Any, Any],
        arguments: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> JobHandle[Any]:
        """`JobQueue.enqueue` for this tenant."""
        return await self.jobs.enqueue(task, arguments, **self._options(options))

    def handle(self, job_id: str) -> JobHandle[Any]:
        """A handle of the tenant's job ``job_id`` (reads answer `JobNotFound` otherwise)."""
        return self.jobs.handle(job_id, tenant=self.tenant)

    async def get(self, job_id: str) -> JobRecord:
        """The record of the tenant's job ``job_id``.

        Raises:
            JobNotFound: No such job for this tenant.
        """
        return await self.jobs.get(job_id, tenant=self.tenant)

    async def result(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait for the tenant's job ``job_id`` to end; its result (see `JobHandle.result`)."""
        return await self.handle(job_id).result(timeout)

    async def list(
        self,
        *,
        queue: str | None = None,
        state: JobState | str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of the tenant's records, newest first."""
        return await self.jobs.list(
            queue=queue, state=state, tenant=self.tenant, limit=limit, cursor=cursor
        )

    async def counts(self, *, queue: str | None = None) -> Mapping[JobState, int]:
        """How many of the tenant's jobs are in each state."""
        return await self.jobs.counts(queue=queue, tenant=self.tenant)

    async def cancel(self, job_id: str) -> Cancelled:
        """Cancel the tenant's job ``job_id`` (`JobNotFound` if it is not the tenant's)."""
        return await self.jobs.cancel(job_id, tenant=self.tenant)

    async def retry(self, job_id: str) -> JobHandle[Any]:
        """Run the tenant's dead or cancelled job ``job_id`` again (see `JobQueue.retry`)."""
        return await self.jobs.retry(job_id, tenant=self.tenant)

    def __repr__(self) -> str:
        return f"<TenantJobs {self.tenant!r}>"
