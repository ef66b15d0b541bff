"""The job record: one per job, in the job store; its states; its stored form."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any

import attrs

from foxactors._codec import compact_json

from ._errors import JobRecordError

FORMAT = 1
"""The version of the stored form; a record of another version is refused clearly."""


class JobState(enum.Enum):
    r"""Where a job is in its life. Succeeded, dead and cancelled are final.

    ::

        scheduled --due--> pending --start--> running --return--> succeeded
                                  ^           |  |  \--raise, attempts left--> retrying
                                  |           |  \--raise, none left / Reject--> dead
                                  +--lease lost or stopped--+
        (not final) --cancel--> cancelled; running: when its handler ends
    """

    SCHEDULED = "scheduled"
    """Enqueued to run at a later time (``run_at`` / ``delay``)."""
    PENDING = "pending"
    """Waiting in its queue for a worker."""
    RUNNING = "running"
    """A worker runs it (attempt ``attempt``) and holds a lease until ``lease_until``."""
    RETRYING = "retrying"
    """An attempt failed; it runs again at ``next_run_at``."""
    SUCCEEDED = "succeeded"
    """Its handler returned; ``result`` holds what it returned."""
    DEAD = "dead"
    """Given up: attempts spent, rejected, or bad arguments; ``reason`` says which."""
    CANCELLED = "cancelled"
    """Cancelled before it finished; it has no result."""

    # Members are singletons and compare by identity: hash them so, in C (Enum's own
    # hash is Python code, and the stores look states up in sets on every transition).
    __hash__ = object.__hash__

    @property
    def final(self) -> bool:
        """True for succeeded, dead and cancelled: nothing changes it any more."""
        return self in FINAL


FINAL = frozenset({JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED})
LIVE = frozenset(JobState) - FINAL


@attrs.frozen
class ErrorInfo:
    """What an attempt raised: its type, message and a short traceback.

    Attributes:
        type: The exception's class name (``module.Class`` unless a builtin).
        message: ``str(exception)``, cut to 1,000 characters.
        traceback: The last frames, cut to 4,000 characters ("" if none).
    """

    type: str
    message: str
    traceback: str = ""


def require_format(ident: Any, version: Any) -> None:
    """Refuse a record of another format version than this foxactors reads.

    Raises:
        JobRecordError: Naming the record and both versions.
    """
    if version != FORMAT:
        raise JobRecordError(
            f"job record {ident!r} has format version {version!r}; this foxactors "
            f"reads version {FORMAT}"
        )


@attrs.frozen(kw_only=True, slots=False)
class JobRecord:
    """Everything known about one job. Times are wall-clock Unix seconds.

    Attributes:
        id: The job id.
        task: The task's name.
        queue: The queue it runs from.
        args: Its arguments, as validated and encoded at enqueue.
        state: Where it is in its life (`JobState`).
        tenant: Whose job it is (None: no tenant).
        priority: Its priority, 0 (low) to 9 (critical).
        attempt: Attempts started so far (0 until a worker starts it).
        max_attempts: Attempts allowed before it goes dead.
        key: Its idempotency key, if enqueued with one.
        enqueued_at: When it was enqueued.
        scheduled_at: When it is due, for a job enqueued to run later.
        started_at: When its latest attempt started.
        finished_at: When it reached a final state.
        lease_until: While running: when its worker's lease ends unless renewed.
        next_run_at: While retrying: when it runs again.
        progress: The handler's last reported progress, 0 to 100.
        progress_message: The message that came with it.
        result: What the handler returned (succeeded only).
        error: What the latest failed attempt raised.
        reason: Why it is dead or cancelled (one line).
        cancel_requested: A cancel was recorded; it wins over any completion.
        expires_at: When a finished record (and its key) is deleted.
        committed: Its enqueue finished (its delivery is with the broker).
    """

    id: str
    task: str
    queue: str
    args: Mapping[str, Any] = attrs.field(factory=dict)
    state: JobState = JobState.PENDING
    tenant: str | None = None
    priority: int = 3
    attempt: int = 0
    max_attempts: int = 1
    key: str | None = None
    enqueued_at: float = 0.0
    scheduled_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    lease_until: float | None = None
    next_run_at: float | None = None
    progress: float | None = None
    progress_message: str | None = None
    result: Any = None
    error: ErrorInfo | None = None
    reason: str | None = None
    cancel_requested: bool = False
    expires_at: float | None = None
    committed: bool = False

    def changed(self, **changes: Any) -> JobRecord:
        """A copy with ``changes``, as `attrs.evolve` makes it, several times faster.

        Every transition makes one: `attrs.evolve` costs about 7 µs a record of this
        size, a sixth of a job's whole cost on the memory backend. A copy of the
        instance dict costs under 1 µs. That is why the class keeps no slots (a
        slotted instance has no dict to copy); it costs about 120 bytes more per
        record, which a `MemoryJobStore` keeps for the records' retention.

        Raises:
            TypeError: A name in ``changes`` is not a field.
        """
        if not _FIELDS.issuperset(changes):
            unknown = sorted(set(changes) - _FIELDS)
            raise TypeError(f"JobRecord has no field {', '.join(unknown)}")
        new = object.__new__(JobRecord)
        fields = new.__dict__
        fields.update(self.__dict__)
        fields.update(changes)
        return new

    def shown_state(self, now: float) -> JobState:
        """The state as a reader should see it at ``now``: a due scheduled job is pending."""
        if self.state is JobState.SCHEDULED and (self.scheduled_at or 0.0) <= now:
            return JobState.PENDING
        return self.state

    def to_dict(self) -> dict[str, Any]:
        """The record as plain data (JSON-ready), with its format version."""
        data = attrs.asdict(self, recurse=False)
        data["state"] = self.state.value
        data["error"] = attrs.asdict(self.error) if self.error is not None else None
        data["args"] = dict(self.args)
        data["v"] = FORMAT
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRecord:
        """Read a record written by `to_dict`.

        Raises:
            JobRecordError: Another format version, or fields that do not fit.
        """
        if not isinstance(data, Mapping):
            raise JobRecordError(f"a job record must be a JSON object, got {type(data).__name__}")
        ident = data.get("id", "?")
        require_format(ident, data.get("v"))
        fields = dict(data)
        del fields["v"]
        try:
            if not _FIELDS.issuperset(fields):
                raise TypeError(f"unknown field {', '.join(sorted(fields.keys() - _FIELDS))}")
            if not _REQUIRED.issubset(fields):
                raise TypeError(f"no field {', '.join(sorted(_REQUIRED - fields.keys()))}")
            fields["state"] = JobState(fields["state"])
            error = fields.get("error")
            if error is not None:
                fields["error"] = ErrorInfo(**error)
        except (KeyError, TypeError, ValueError) as exc:
            raise JobRecordError(f"job record {ident!r} cannot be read: {exc}") from None
        # as `changed` does: the instance dict filled in one go, no __init__ (which
        # checks nothing more), for about half the time of cls(**fields)
        new = object.__new__(cls)
        values = new.__dict__
        values.update(_DEFAULTS)
        values.update(fields)
        if "args" not in fields:
            values["args"] = {}
        return new

    def to_json(self) -> bytes:
        """The stored form: compact UTF-8 JSON."""
        return compact_json(self.to_dict()).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> JobRecord:
        """Read the stored form.

        Raises:
            JobRecordError: Not JSON, or not a record this version reads.
        """
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise JobRecordError(f"a job record is not valid JSON: {exc}") from None
        return cls.from_dict(data)


_FIELDS = frozenset(field.name for field in attrs.fields(JobRecord))
_REQUIRED = frozenset(f.name for f in attrs.fields(JobRecord) if f.default is attrs.NOTHING)
_DEFAULTS = {
    f.name: f.default
    for f in attrs.fields(JobRecord)
    if f.default is not attrs.NOTHING and not isinstance(f.default, attrs.Factory)  # type: ignore[arg-type]
}
