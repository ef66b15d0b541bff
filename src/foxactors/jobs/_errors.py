"""Errors of the job layer, and the two control-flow exceptions a task may raise."""

from __future__ import annotations

from typing import TYPE_CHECKING

from foxactors._errors import ConfigurationError, FoxactorsError
from foxactors._validate import require_seconds

if TYPE_CHECKING:
    from ._record import JobRecord


class JobError(FoxactorsError):
    """Branch for errors about one job (its record, its fate)."""


class JobNotFound(JobError, LookupError):
    """No job has this id (for this tenant): never enqueued, expired, or another tenant's.

    Records of finished jobs expire after the store's retention; read results before.
    """


class JobAlreadyExists(JobError):
    """An enqueue with ``unique=True`` found a live job with the same idempotency key.

    Attributes:
        job_id: The id of the job that holds the key (``jobs.handle(job_id)`` reads it).
    """

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobCancelled(JobError):
    """The job was cancelled: it has no result (raised by ``result()`` and by completion).

    A cancel recorded before a completion is committed wins: the job stays
    ``cancelled`` and whatever its handler returned is dropped.
    """


class JobFailed(JobError):
    """The job is dead: its attempts are spent, or it was rejected. ``result()`` raises it.

    Attributes:
        record: The job's record: ``reason`` says why, ``error`` what was raised last.
    """

    def __init__(self, message: str, record: JobRecord) -> None:
        super().__init__(message)
        self.record = record


class UnknownTask(JobError, ConfigurationError):
    """A task name that is not registered; the message lists the registered ones."""


class JobArgumentsError(JobError, ConfigurationError):
    """Arguments that do not match the task's signature; the message names each field.

    Raised at enqueue (nothing is enqueued). At the worker, the same check dead-letters
    the job with this message as its reason.
    """


class JobRecordError(JobError):
    """A stored record cannot be read: corrupt, or written by another format version.

    The job is left as it is; fix or delete the record (``foxactors jobs``), or run a
    version of foxactors that reads it.
    """


class JobStoreError(JobError):
    """The job store could not be reached or refused an operation (``__cause__`` says why).

    Nothing was changed by the operation that raised it, unless the message says so.
    """


class Retry(Exception):
    """Control flow: raise it from a task to run the job again after ``delay`` seconds.

    It counts an attempt: past the job's ``max_attempts`` the job goes dead instead.
    Not an error: it is not logged with a traceback.

    Attributes:
        delay: Seconds before the next attempt (None: the task's backoff decides).
        reason: Why, recorded on the job.

    Raises:
        ConfigurationError: ``delay`` is not seconds >= 0 (raised where the task
            makes it, so the attempt fails with that error, as any other).
    """

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = None if delay is None else require_seconds("Retry(delay=...)", delay)
        self.reason = reason


class Reject(Exception):
    """Control flow: raise it from a task to give the job up now, with ``reason``.

    The job goes dead at once (no further attempts), its delivery to the dead-letter
    queue with the same reason. For errors that retrying cannot fix: "no such domain".

    Attributes:
        reason: Why, one line; recorded on the job and on its dead letter.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
