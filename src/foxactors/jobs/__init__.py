"""Jobs: typed tasks enqueued from anywhere, with records, results, progress and cancel.

Built on the pipeline and the backends (the pipeline knows nothing of jobs). Needs the
``jobs`` extra (pydantic, which validates task arguments): ``pip install foxactors[jobs]``.
"""

from __future__ import annotations

from ._backoff import Exponential as Exponential
from ._backoff import Linear as Linear
from ._client import JOB_ID_HEADER as JOB_ID_HEADER
from ._client import TENANT_HEADER as TENANT_HEADER
from ._client import JobQueue as JobQueue
from ._context import JobContext as JobContext
from ._context import SyncJobContext as SyncJobContext
from ._cron import CronSchedule as CronSchedule
from ._depth import QueueDepth as QueueDepth
from ._errors import JobAlreadyExists as JobAlreadyExists
from ._errors import JobArgumentsError as JobArgumentsError
from ._errors import JobCancelled as JobCancelled
from ._errors import JobError as JobError
from ._errors import JobFailed as JobFailed
from ._errors import JobNotFound as JobNotFound
from ._errors import JobRecordError as JobRecordError
from ._errors import JobStoreError as JobStoreError
from ._errors import Reject as Reject
from ._errors import Retry as Retry
from ._errors import UnknownTask as UnknownTask
from ._handle import JobHandle as JobHandle
from ._memory_store import MemoryJobStore as MemoryJobStore
from ._periodic import MissedTicks as MissedTicks
from ._periodic import Periodic as Periodic
from ._periodic_ledger import PeriodicEntry as PeriodicEntry
from ._periodic_ledger import PeriodicLedger as PeriodicLedger
from ._record import ErrorInfo as ErrorInfo
from ._record import JobRecord as JobRecord
from ._record import JobState as JobState
from ._redis_store import RedisJobStore as RedisJobStore
from ._scheduler import PeriodicScheduler as PeriodicScheduler
from ._scheduler import PeriodicStatistics as PeriodicStatistics
from ._store import CancelKind as CancelKind
from ._store import Cancelled as Cancelled
from ._store import CancelSignals as CancelSignals
from ._store import JobOutcome as JobOutcome
from ._store import JobPage as JobPage
from ._store import JobStore as JobStore
from ._store import OutcomeReader as OutcomeReader
from ._store import Reaped as Reaped
from ._store import Started as Started
from ._store import StartKind as StartKind
from ._sync import SyncJobHandle as SyncJobHandle
from ._sync import SyncJobQueue as SyncJobQueue
from ._task import BoundTask as BoundTask
from ._task import Task as Task
from ._task import TaskOptions as TaskOptions
from ._tenants import TenantJobs as TenantJobs
