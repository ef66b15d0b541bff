"""`JobQueue`: tasks registered on a backend and a job store; enqueue, read, cancel, retry."""

from __future__ import annotations

import datetime
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

import anyio
import attrs

from foxactors._codec import JsonCodec
from foxactors._errors import ConfigurationError
from foxactors._ids import new_id
from foxactors._message import MessageProperties, priority_value
from foxactors._validate import require_int, require_seconds
from foxactors.backends import Backend, BatchPublisher, FairQueues, FairShares, check_tenant

from ._backoff import Backoff, Exponential
from ._context import JobContext, SyncJobContext
from ._depth import QueueDepth
from ._errors import JobAlreadyExists, UnknownTask
from ._handle import JobHandle
from ._memory_store import MemoryJobStore
from ._one_step import OneStep
from ._periodic import MissedTicks, Periodic, declare
from ._record import JobRecord, JobState
from ._store import Cancelled, JobPage, JobStore, OutcomeReader
from ._task import Task, task_options

if TYPE_CHECKING:
    from foxactors._spec import ChildSpec
    from foxactors.pipeline import WorkerApp

    from ._tenants import TenantJobs

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

JOB_ID_HEADER = "x-job-id"
"""The header that carries a job's id on its delivery."""
TENANT_HEADER = "x-tenant"
"""The header that carries a job's tenant, when it has one."""
PUBLISH_TIMEOUT = 60.0
"""Seconds `enqueue_many` gives its batch of publishes, a cancel notwithstanding."""


@attrs.frozen
class EnqueueOptions:
    """Options of one enqueue, checked (see `Task.options`)."""

    due: datetime.datetime | float | None = None  # a datetime, or seconds from now
    priority: int | None = None
    key: str | None = None
    unique: bool = False
    tenant: str | None = None
    max_attempts: int | None = None
    queue: str | None = None


def enqueue_options(
    *,
    delay: float | None = None,
    run_at: Any = None,
    priority: object = None,
    key: str | None = None,
    unique: bool = False,
    tenant: str | None = None,
    max_attempts: int | None = None,
    queue: str | None = None,
) -> EnqueueOptions:
    """Check per-enqueue options; each bad value is named in its error."""
    due: datetime.datetime | float | None = None
    if delay is not None and run_at is not None:
        raise ConfigurationError("give delay or run_at, not both")
    if delay is not None:
        due = require_seconds("delay", delay)
    if run_at is not None:
        if not isinstance(run_at, datetime.datetime) or run_at.utcoffset() is None:
            raise ConfigurationError(
                f"run_at must be an aware datetime (with a time zone, e.g. "
                f"datetime.now(UTC) + timedelta(hours=1)), got {run_at!r}"
            )
        due = run_at
    if key is not None and (not isinstance(key, str) or not key or len(key) > 256):
        raise ConfigurationError(f"key must be a string of 1 to 256 characters, got {key!r}")
    if unique and key is None:
        raise ConfigurationError("unique=True needs a key")
    if tenant is not None:
        check_tenant(tenant)
    if max_attempts is not None:
        require_int("max_attempts", max_attempts, 1)
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise ConfigurationError(f"queue must be a non-empty string, got {queue!r}")
    return EnqueueOptions(
        due,
        None if priority is None else priority_value(priority),
        key,
        unique,
        tenant,
        max_attempts,
        queue,
    )


_NO_OPTIONS = EnqueueOptions()


class TaskClass(Protocol[P, R_co]):
    """A class declaring a task: ``async def run(self, ctx, ...)`` types it, not ``__init__``."""

    @property
    def run(self) -> Callable[Concatenate[JobContext, P], Awaitable[R_co]]:
        """The task's work."""


class SyncTaskClass(Protocol[P, R_co]):
    """A class declaring a plain ``def`` task: ``def run(self, ctx, ...)``."""

    @property
    def run(self) -> Callable[Concatenate[SyncJobContext, P], R_co]:
        """The task's work."""


class TaskDecorator(Protocol):
    """What ``@jobs.task(...)`` with options returns: it types the task by its function."""

    @overload
    def __call__(self, func: type[TaskClass[P, R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, func: type[SyncTaskClass[P, R]], /) -> Task[P, R]: ...
    @overload
    def __call__(
        self, func: Callable[Concatenate[JobContext, P], Awaitable[R]], /
    ) -> Task[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, func: Callable[Concatenate[JobContext, P], R], /) -> Task[P, R]: ...
    @overload
    def __call__(self, func: Callable[Concatenate[SyncJobContext, P], R], /) -> Task[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R], /) -> Task[P, R]: ...
    def __call__(self, func: Any, /) -> Task[Any, Any]:
        """Declare ``func`` as a task with the options given."""


class JobQueue:
    """Tasks on a backend, with their records in a job store.

    Example:
        ```python
        jobs = JobQueue(MemoryBackend())              # records in a MemoryJobStore

        @jobs.task(queue="emails", max_attempts=5)
        async def send_email(ctx: JobContext, to: str) -> str: ...

        handle = await send_email.enqueue("ada@example.com")
        app = jobs.worker("emails")                   # a WorkerApp running its tasks
        ```

    Args:
        backend: Where deliveries go (memory, RabbitMQ, Redis).
        store: Where records go (default: a `MemoryJobStore`, for one process).
        queue: The default queue of tasks that name none (default ``"jobs"``).
        lease: Seconds a worker holds a running job without renewing (renewed every
            third of it); a job whose worker died is pending again after at most
            ``lease`` plus one ``reap_interval``.
        reap_interval: Seconds between reaper passes in each worker.
        cancel_poll: Seconds at most before a running job learns of its cancel, with
            a store that does not signal cancels (the memory store does, at once).
        abandon_after: An enqueue that did not finish (its producer died between the
            record and the publish) is deleted after this long, with its key.
        max_result_size: Largest result in bytes of JSON; a larger one fails the job.
        clock: Wall-clock seconds for the records (default ``time.time``).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        store: JobStore | None = None,
        queue: str = "jobs",
        lease: float = 30.0,
        reap_interval: float = 10.0,
        cancel_poll: float = 1.0,
        abandon_after: float = 300.0,
        max_result_size: int = 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(backend, Backend):
            raise ConfigurationError(f"backend must be a foxactors backend, got {backend!r}")
        self.backend = backend
        self.store: JobStore = store if store is not None else MemoryJobStore()
        if not isinstance(self.store, JobStore):
            raise ConfigurationError(f"store must be a job store, got {store!r}")
        self.reads_outcomes = isinstance(self.store, OutcomeReader)
        """Whether `JobHandle.result` reads only a job's end (`OutcomeReader`)."""
        self.default_queue = queue
        self.lease = require_seconds("lease", lease, positive=True)
        self.reap_interval = require_seconds("reap_interval", reap_interval, positive=True)
        self.cancel_poll = require_seconds("cancel_poll", cancel_poll, positive=True)
        self.abandon_after = require_seconds("abandon_after", abandon_after, positive=True)
        self.results = JsonCodec(max_size=max_result_size)
        self.clock = clock
        self._tasks: dict[str, Task[Any, Any]] = {}
        self._periodic: dict[str, Periodic] = {}

    # -- declaring ------------------------------------------------------------------

    @overload
    def task(self, func: type[TaskClass[P, R]], /) -> Task[P, R]: ...
    @overload
    def task(self, func: type[SyncTaskClass[P, R]], /) -> Task[P, R]: ...
    @overload
    def task(self, func: Callable[Concatenate[JobContext, P], Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def task(self, func: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def task(self, func: Callable[Concatenate[JobContext, P], R], /) -> Task[P, R]: ...
    @overload
    def task(self, func: Callable[Concatenate[SyncJobContext, P], R], /) -> Task[P, R]: ...
    @overload
    def task(self, func: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: object = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        retry_on: object = None,
        backoff: Backoff | None = None,
    ) -> TaskDecorator: ...

    def task(
        self,
        func: Any = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: object = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        retry_on: object = None,
        backoff: Backoff | None = None,
    ) -> Any:
        """Declare a task: ``@jobs.task`` or ``@jobs.task(queue=..., ...)`` over a function.

        The function is ``async def`` or plain ``def`` (run on a worker thread, with
        a `SyncJobContext`); its first parameter, if named ``ctx`` or annotated
        `JobContext`, gets the job's context; the others are its arguments, typed by
        their annotations. A class works too: its attributes ``name``, ``queue``,
        ``priority``, ``max_attempts``, ``timeout``, ``retry_on``, ``backoff`` are
        its defaults and its ``run`` method is the function (one instance, made now).

        Args:
            func: The function (or class) when used as ``@jobs.task`` without options.
            name: The job type (default: the function's or class's name).
            queue: Its queue (default: the queue given to `JobQueue`).
            priority: 0-9 or a level name (default normal).
            max_attempts: Attempts before a job goes dead (default 3).
            timeout: Seconds per attempt (default none).
            retry_on: Exception classes that are retried (default: any `Exception`);
                others go dead at once, with their error as the reason.
            backoff: Seconds before the next attempt after attempt ``n`` failed
                (default `Exponential`: 1 s doubling to 300 s, +10% jitter).

        Raises:
            ConfigurationError: A bad option, a name already taken, or a function
                whose parameters cannot be typed.
        """
        given = {
            "name": name,
            "queue": queue,
            "priority": priority,
            "max_attempts": max_attempts,
            "timeout": timeout,
            "retry_on": retry_on,
            "backoff": backoff,
        }

        def declare(target: Any) -> Task[Any, Any]:
            return self._declare(target, given)

        return declare if func is None else declare(func)

    def _declare(self, target: Any, given: Mapping[str, Any]) -> Task[Any, Any]:
        defaults: dict[str, Any] = {
            "name": getattr(target, "__name__", None),
            "queue": self.default_queue,
            "priority": 3,
            "max_attempts": 3,
            "timeout": None,
            "retry_on": (Exception,),
            "backoff": Exponential(),
        }
        func = target
        if inspect.isclass(target):
            for option in defaults:
                if option in vars(target) or hasattr(target, option):
                    defaults[option] = getattr(target, option)
            try:
                func = target().run  # type: ignore[attr-defined]
            except Exception as exc:
                raise ConfigurationError(
                    f"task class {target.__name__} must be made with no arguments and define "
                    f"run(self, ctx, ...): {exc}"
                ) from None
        elif not callable(target):
            raise ConfigurationError(f"a task must be a function or a class, got {target!r}")
        chosen = {k: v for k, v in given.items() if v is not None}
        options = task_options(**{**defaults, **chosen})
        if options.name in self._tasks:
            raise ConfigurationError(
                f"a task named {options.name!r} is already registered; pass name="
            )
        task: Task[Any, Any] = Task(func, options, self)
        self._tasks[options.name] = task
        return task

    @property
    def tasks(self) -> Mapping[str, Task[Any, Any]]:
        """The registered tasks, by name."""
        return dict(self._tasks)

    def _task(self, name: str | Task[Any, Any]) -> Task[Any, Any]:
        if isinstance(name, Task):
            return name
        task = self._tasks.get(name)
        if task is None:
            known = ", ".join(sorted(self._tasks)) or "none"
            raise UnknownTask(f"no task named {name!r} is registered (registered: {known})")
        return task

    @overload
    def periodic(
        self,
        expression: str,
        task: Task[Any, Any] | str,
        /,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        tz: str = "UTC",
        name: str | None = None,
        missed: MissedTicks | str = MissedTicks.SKIP,
        **options: Any,
    ) -> Periodic: ...
    @overload
    def periodic(
        self,
        expression: str,
        task: None = None,
        /,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        tz: str = "UTC",
        name: str | None = None,
        missed: MissedTicks | str = MissedTicks.SKIP,
        **options: Any,
    ) -> Callable[[Task[P, R]], Task[P, R]]: ...

    def periodic(
        self,
        expression: str,
        task: Task[Any, Any] | str | None = None,
        /,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        tz: str = "UTC",
        name: str | None = None,
        missed: MissedTicks | str = MissedTicks.SKIP,
        **options: Any,
    ) -> Any:
        """Enqueue ``task`` on a cron schedule: ``jobs.periodic("*/5 * * * *", task)``.

        Or over a task, as a decorator: ``@jobs.periodic("0 3 * * *", tz=...)`` above
        ``@jobs.task``. Job worker apps run the periodic jobs (`worker`), or a tree of
        yours does (`scheduler`); each tick is enqueued once however many run.

        Args:
            expression: Five cron fields (minute hour day-of-month month day-of-week),
                six with seconds first, or ``@hourly``, ``@daily``, ``@weekly``,
                ``@monthly``, ``@yearly``.
            task: The task, or its name.
            args: Positional arguments of every tick's job.
            kwargs: Keyword arguments of every tick's job.
            tz: The IANA zone the expression's wall times are read in (default UTC).
            name: Unique per queue, in every tick's idempotency key (default: the
                task's name).
            missed: Ticks that went by while no scheduler ran: ``"skip"`` them
                (default), or ``"run_once"``: enqueue the latest once, at start.
            options: Enqueue options of every tick's job: ``queue``, ``priority``,
                ``tenant``, ``max_attempts``.

        Raises:
            ConfigurationError: An invalid expression or zone, a name taken, a bad
                policy or option (said at declaration, with the fix).
            JobArgumentsError: The arguments do not fit the task.
        """
        for option in options:
            if option not in ("queue", "priority", "tenant", "max_attempts"):
                raise ConfigurationError(
                    f"a periodic job takes queue, priority, tenant and max_attempts as "
                    f"options, got {option!r} (its key is each tick's own)"
                )

        def add(target: Task[Any, Any] | str) -> Periodic:
            periodic = declare(
                self, expression, target, args=args, kwargs=kwargs, tz=tz, name=name,
                missed=missed, enqueue=options,
            )  # fmt: skip
            if periodic.name in self._periodic:
                raise ConfigurationError(
                    f"a periodic job named {periodic.name!r} is already declared; pass name="
                )
            self._periodic[periodic.name] = periodic
            return periodic

        if task is not None:
            return add(task)

        def decorate(target: Task[P, R]) -> Task[P, R]:
            add(target)
            return target

        return decorate

    @property
    def periodic_jobs(self) -> Mapping[str, Periodic]:
        """The declared periodic jobs, by name."""
        return dict(self._periodic)

    def scheduler(self, name: str = "jobs-scheduler") -> ChildSpec:
        """A child spec of the actor that enqueues the periodic jobs, for a tree of yours.

        Job worker apps include it already (`worker`); use this for a process that
        only schedules, or with ``worker(..., periodic=False)``.

        Raises:
            ConfigurationError: No periodic job is declared, or the store does not
                remember periodic jobs.
        """
        from foxactors._spec import ChildSpec  # noqa: PLC0415

        from ._scheduler import PeriodicScheduler, ledger_of  # noqa: PLC0415

        if not self._periodic:
            raise ConfigurationError("no periodic job is declared: use jobs.periodic() first")
        ledger_of(self)
        return ChildSpec(name, lambda: PeriodicScheduler(self))

    # -- enqueueing -----------------------------------------------------------------

    async def enqueue(
        self,
        task: str | Task[Any, Any],
        arguments: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> JobHandle[Any]:
        """Enqueue a job of the task named ``task`` with keyword ``arguments``.

        ``options`` are those of `Task.options` (delay, run_at, priority, key,
        unique, tenant, max_attempts, queue).

        Raises:
            UnknownTask: No task has that name; the message lists the registered ones.
            JobArgumentsError: The arguments do not fit; nothing was enqueued.
        """
        found = self._task(task)
        payload = found.signature.encode((), dict(arguments or {}))
        return await self.enqueue_encoded(found, payload, enqueue_options(**options))

    def _record(
        self, task: Task[Any, Any], payload: dict[str, Any], options: EnqueueOptions, now: float
    ) -> tuple[JobRecord, float]:
        defaults = task.defaults
        due = options.due
        if isinstance(due, datetime.datetime):
            delay = max(0.0, due.timestamp() - now)
        else:
            delay = due or 0.0
        record = JobRecord(
            id=new_id(),
            task=task.name,
            queue=options.queue or defaults.queue,
            args=payload,
            state=JobState.SCHEDULED if delay > 0 else JobState.PENDING,
            tenant=options.tenant,
            priority=defaults.priority if options.priority is None else options.priority,
            max_attempts=options.max_attempts or defaults.max_attempts,
            key=options.key,
            enqueued_at=now,
            scheduled_at=now + delay if delay > 0 else None,
        )
        return record, delay

    async def _publish(self, record: JobRecord, delay: float) -> None:
        await self.backend.publish(
            record.queue, dict(record.args), properties=_properties_of(record), delay=delay
        )

    async def enqueue_encoded(
        self, task: Task[Any, R], payload: dict[str, Any], options: EnqueueOptions | None
    ) -> JobHandle[R]:
        """Enqueue validated arguments: record (with its key), publish, commit.

        A failed publish deletes the record and frees its key before the error goes on.
        """
        options = options or _NO_OPTIONS
        record, delay = self._record(task, payload, options, self.clock())
        one_step = self._one_step_for(record.queue, delay)
        if one_step is not None:
            (answer,) = await one_step.create([record], [_properties_of(record)])
            if isinstance(answer, Exception):
                raise answer
            stored, created = answer
        else:
            stored, created = await self.store.create(record)
            if created:
                await self._publish_or_discard([(record, delay)])
                await self.store.commit([record.id])
        return self._handle(task, stored, created, options)

    def _handle(
        self, task: Task[Any, R], stored: JobRecord, created: bool, options: EnqueueOptions
    ) -> JobHandle[R]:
        """The handle of a job just created, or of the one holding its key."""
        if not created:
            return self._existing(task, stored, options)
        return JobHandle(self, stored.id, tenant=stored.tenant, decode=task.signature.decode_result)

    @functools.cached_property
    def _one_step(self) -> OneStep | None:
        """How this queue creates records with their deliveries in one step, if it can."""
        return OneStep.of(self.backend, self.store)

    def _one_step_for(self, queue: str, delay: float) -> OneStep | None:
        """`_one_step`, for a delivery to ``queue`` after ``delay`` that it can write."""
        one_step = self._one_step if delay == 0 else None
        return one_step if one_step is not None and one_step.takes(queue) else None

    async def enqueue_many_encoded(
        self,
        task: Task[Any, R],
        payloads: list[dict[str, Any]],
        options: EnqueueOptions | None,
    ) -> list[JobHandle[R]]:
        """Enqueue many: one store round trip to create, publishes, one to commit."""
        options = options or _NO_OPTIONS
        if options.key is not None and len(payloads) > 1:
            raise ConfigurationError("an idempotency key names one job: enqueue them one by one")
        now = self.clock()
        planned = [self._record(task, payload, options, now) for payload in payloads]
        records = [record for record, _ in planned]
        one_step = self._one_step_for(records[0].queue, planned[0][1]) if planned else None
        if one_step is not None:
            answers = await one_step.create(records, [_properties_of(r) for r in records])
            failed = [answer for answer in answers if isinstance(answer, Exception)]
            if failed:  # as `_publish_together`: the others are enqueued, the first error
                raise failed[0]
            handles: list[JobHandle[R]] = []
            for answer in answers:
                assert not isinstance(answer, Exception)
                handles.append(self._handle(task, answer[0], answer[1], options))
            return handles
        results = await self.store.create_many(records)
        fresh = [plan for plan, (_, created) in zip(planned, results, strict=True) if created]
        await self._publish_or_discard(fresh)
        await self.store.commit([record.id for record, _ in fresh])
        return [self._handle(task, stored, created, options) for stored, created in results]

    def _existing(
        self, task: Task[Any, R], stored: JobRecord, options: EnqueueOptions
    ) -> JobHandle[R]:
        if options.unique:
            raise JobAlreadyExists(
                f"job {stored.id!r} ({stored.state.value}) already holds key {stored.key!r}",
                stored.id,
            )
        return JobHandle(
            self,
            stored.id,
            created=False,
            tenant=stored.tenant,
            decode=task.signature.decode_result,
        )

    async def _publish_or_discard(self, planned: list[tuple[JobRecord, float]]) -> None:
        backend = self.backend
        if (
            len(planned) > 1
            and isinstance(backend, BatchPublisher)
            and len({(record.queue, delay) for record, delay in planned}) == 1
        ):
            await self._publish_together(backend, planned)
            return
        done = 0
        try:
            for record, delay in planned:
                await self._publish(record, delay)
                done += 1
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.store.commit([record.id for record, _ in planned[:done]])
                await self.store.discard([record.id for record, _ in planned[done:]])
            raise

    async def _publish_together(
        self, backend: BatchPublisher, planned: list[tuple[JobRecord, float]]
    ) -> None:
        """`enqueue_many`'s publishes in one go (a backend that can), in order.

        Shielded from a cancel (within `PUBLISH_TIMEOUT`) and settled in the store
        before the cancel goes on: the jobs that went out are committed, the others
        lose their records and keys, and the first error is raised (all of them fail
        if the broker could not be reached).
        """
        first, delay = planned[0]
        messages = [(dict(record.args), _properties_of(record)) for record, _ in planned]
        with anyio.CancelScope(shield=True):
            try:
                with anyio.fail_after(PUBLISH_TIMEOUT):
                    answers = await backend.publish_many(first.queue, messages, delay=delay)
            except Exception as exc:  # none known to have gone out
                answers = [exc] * len(planned)
            outcomes = zip(planned, answers, strict=True)
            lost = [(r.id, a) for (r, _), a in outcomes if not isinstance(a, str)]
            gone = {job_id for job_id, _ in lost}
            sent = [r.id for r, _ in planned if r.id not in gone]
            if sent:
                await self.store.commit(sent)
            if gone:
                await self.store.discard(list(gone))
        if lost:
            raise lost[0][1]

    # -- tenants --------------------------------------------------------------------

    def for_tenant(self, tenant: str) -> TenantJobs:
        """This queue as ``tenant`` sees it: its enqueues, reads and changes are the tenant's.

        Raises:
            ConfigurationError: ``tenant`` is not a valid tenant name.
        """
        from ._tenants import TenantJobs  # noqa: PLC0415 - the view imports this module

        return TenantJobs(self, tenant)

    def share_fairly(
        self,
        queue: str | None = None,
        *,
        weights: Mapping[str, int] | None = None,
        default_weight: int = 1,
        limit: int | None = None,
        limits: Mapping[str, int | None] | None = None,
    ) -> FairShares:
        """Make ``queue`` fair across tenants (see docs/tenants.md); opt-in, per queue.

        Declare it the same way in producers and workers. Without it a queue is first
        in, first out, as before.

        Raises:
            ConfigurationError: A weight below 1, a bad limit or tenant name, or a
                backend without fair queues.
        """
        shares = FairShares(
            weights=weights or {}, default_weight=default_weight, limit=limit, limits=limits or {}
        )
        if not isinstance(self.backend, FairQueues):
            raise ConfigurationError(
                f"the {self.backend.name} backend has no fair queues (see docs/tenants.md)"
            )
        self.backend.share_fairly(queue or self.default_queue, shares)
        return shares

    # -- reading and changing -------------------------------------------------------

    def handle(self, job_id: str, *, tenant: str | None = None) -> JobHandle[Any]:
        """A handle for a job by id; its result is converted by the job's task if known."""
        return JobHandle(self, job_id, tenant=tenant)

    def decoder(self, task_name: str) -> Callable[[Any], Any] | None:
        """How results of the task named ``task_name`` are read back (None: as stored)."""
        task = self._tasks.get(task_name)
        return task.signature.decode_result if task is not None else None

    async def get(self, job_id: str, *, tenant: str | None = None) -> JobRecord:
        """The job's record; a due scheduled job reads as pending.

        Raises:
            JobNotFound: No such job (for this tenant).
        """
        record = await self.store.get(job_id, tenant=tenant)
        shown = record.shown_state(self.clock())
        return record if shown is record.state else record.changed(state=shown)

    async def list(
        self,
        *,
        queue: str | None = None,
        state: JobState | str | None = None,
        tenant: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of records, newest first (pass ``page.cursor`` for the next)."""
        require_int("limit", limit, 1)
        if isinstance(state, str):
            try:
                state = JobState(state)
            except ValueError:
                known = ", ".join(s.value for s in JobState)
                raise ConfigurationError(f"state must be one of {known}, got {state!r}") from None
        return await self.store.list(
            queue=queue, state=state, tenant=tenant, limit=limit, cursor=cursor
        )

    async def counts(
        self, *, queue: str | None = None, tenant: str | None = None
    ) -> Mapping[JobState, int]:
        """How many jobs are in each state."""
        return await self.store.counts(queue=queue, tenant=tenant)

    async def depth(
        self, queue: str | None = None, *, tenant: str | None = None, broker: bool = True
    ) -> QueueDepth:
        """How deep ``queue`` is (default: the default queue): jobs by state, messages.

        The store's counts of ``tenant``'s jobs (None: every tenant's) and, unless
        ``broker`` is False, the backend's counts of the queue's messages (every
        tenant's). See `QueueDepth`.

        Raises:
            BackendError: The broker cannot be reached.
        """
        queue = self.default_queue if queue is None else queue
        jobs = await self.store.counts(queue=queue, tenant=tenant)
        stats = await self.backend.queue_depth(queue) if broker else None
        return QueueDepth(queue, tenant, jobs, stats)

    async def cancel(self, job_id: str, *, tenant: str | None = None) -> Cancelled:
        """Cancel a job; see `JobHandle.cancel`."""
        return await self.store.cancel(job_id, self.clock(), tenant=tenant)

    async def retry(self, job_id: str, *, tenant: str | None = None) -> JobHandle[Any]:
        """Run a dead or cancelled job again, from its first attempt.

        Raises:
            JobNotFound: No such job (for this tenant).
            JobError: It is not dead or cancelled.
        """
        now = self.clock()
        record = await self.store.retry(job_id, now, tenant=tenant)
        try:
            await self._publish(record, 0.0)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                reason = f"retry could not be enqueued: {type(exc).__name__}: {exc}"
                await self.store.fail(job_id, 0, now, None, retry_at=None, reason=reason)
            raise
        await self.store.commit([job_id])
        task = self._tasks.get(record.task)
        decode = task.signature.decode_result if task else None
        return JobHandle(self, job_id, tenant=tenant, decode=decode)

    # -- running --------------------------------------------------------------------

    def worker(
        self,
        queue: str | None = None,
        *,
        name: str | None = None,
        concurrency: int = 8,
        prefetch: int | None = None,
        periodic: bool = True,
        tenants: Collection[str] | None = None,
    ) -> WorkerApp:
        """A `WorkerApp` that runs jobs from ``queue``, with a `JobKeeper` beside it.

        It runs every registered task (a job goes to its task's queue unless an
        enqueue chose another one).

        Chain more options on it as on any `WorkerApp`, then `build()` or
        ``foxactors run`` it. Retries are the tasks' own (the app has no retry
        stage); ``prefetch`` defaults to twice the concurrency, so a job of a
        higher priority waits behind few others already fetched. With periodic jobs
        declared, it runs their scheduler too (``periodic=False``: not this app).

        With ``tenants``, the app is dedicated to those tenants: it only ever
        receives their jobs (the queue must be fair, see `share_fairly`).

        Raises:
            ConfigurationError: No task is registered, or a bad option.
        """
        from foxactors.pipeline import WorkerApp  # noqa: PLC0415 - keep import cost low

        from ._keeper import JobKeeper, RunningAttempts  # noqa: PLC0415
        from ._runner import JobRunner, ThreadLimit  # noqa: PLC0415

        queue = queue or self.default_queue
        if not isinstance(queue, str) or not queue:
            raise ConfigurationError(f"queue must be a non-empty string, got {queue!r}")
        if not self._tasks:
            raise ConfigurationError("no task is registered: declare tasks with @jobs.task first")
        require_int("concurrency", concurrency, 1)
        backend = self.backend
        if tenants is not None:
            if not isinstance(backend, FairQueues):
                raise ConfigurationError(
                    f"the {backend.name} backend cannot dedicate workers to tenants "
                    f"(see docs/tenants.md)"
                )
            if backend.fair_shares(queue) is None:
                raise ConfigurationError(
                    f"queue {queue!r} is not fair, so its tenants' jobs are not kept apart: "
                    f"call jobs.share_fairly({queue!r}) before dedicating a worker to tenants"
                )
            backend = backend.for_tenants(tenants)
        threads = ThreadLimit(concurrency)  # plain `def` tasks: one thread per worker at most
        running = RunningAttempts()
        app = (
            WorkerApp(name or f"jobs-{queue}")
            .without_retry()
            .with_concurrency_limit(concurrency)
            .with_prefetch(prefetch or 2 * concurrency)
            .with_backend(backend, queue)
            .with_actor("jobs-keeper", lambda: JobKeeper(self, running))
        )
        if periodic and self._periodic:
            from ._scheduler import PeriodicScheduler, ledger_of  # noqa: PLC0415

            ledger_of(self)
            app = app.with_actor("jobs-scheduler", lambda: PeriodicScheduler(self))
        for task in self._tasks.values():  # any task's job may be sent to any queue
            app = app.register(
                task.name, JobRunner(self, task, threads, running).run, manual_ack=True
            )
        return app

    async def close(self) -> None:
        """Close the store (the backend is the caller's to close)."""
        await self.store.close()


def _properties_of(record: JobRecord) -> MessageProperties:
    """The message properties of a job's delivery: its id, task, priority, tenant."""
    headers = {JOB_ID_HEADER: record.id}
    if record.tenant is not None:
        headers[TENANT_HEADER] = record.tenant
    return MessageProperties(
        message_type=record.task,
        priority=record.priority,
        correlation_id=record.id,
        headers=headers,
    )
