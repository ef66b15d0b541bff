"""`simulate_jobs`: run a `JobQueue`'s worker under a fault schedule, then check the jobs.

The queue is the user's own, made on the simulator's memory backend; its store is
watched (which jobs the workload created, in order), its tasks' functions wrapped
(counted faults strike the nth call, and each start is noted), and `CancelJob`
faults cancel jobs through `JobQueue.cancel`. After the run, the delivery
invariants of `simulate` hold, and the job invariants: states, cancels, attempts,
and records that agree with what became of the deliveries.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from foxactors._errors import ConfigurationError
from foxactors._message import Delivery
from foxactors._system import ActorSystem
from foxactors.backends import DeadLetter, MemoryBackend
from foxactors.pipeline import WorkerApp

from ._faults import CancelJob, Fault, FaultSchedule, TimedFault
from ._simulate import (
    _ACK,
    _DEAD,
    SimulationFailed,
    _app_under_faults,
    _BadSchedule,
    _FaultyBackend,
    _Run,
    _task_count,
    as_schedule,
    check_deliveries,
    check_invariants,
    check_tasks,
    run_in_virtual_time,
    run_system,
)

if TYPE_CHECKING:
    from foxactors.jobs import CancelKind, JobQueue, JobRecord

_DELIVERY: contextvars.ContextVar[str] = contextvars.ContextVar("foxactors_simulated_delivery")


@attrs.frozen
class JobSimulationResult:
    """What became of a simulated run's jobs; user invariants get one.

    Attributes:
        schedule: The faults applied.
        job_ids: The ids of the jobs the workload created, in order (`CancelJob`'s
            ``job`` indexes this).
        records: Each job's record at the end, by id.
        starts: ``(job id, attempt)`` of each call of a task's function, in order.
        cancels: What each `CancelJob` answered, ``(job id, kind)``, in order.
        acked: Job ids whose delivery was acked, in order.
        dead_letters: The queue's dead letters, oldest first.
        remaining: Deliveries still queued (ready or delayed) at the end.
        events: What happened, one line each, with its virtual time.
        elapsed: Virtual seconds the run took.
    """

    schedule: FaultSchedule
    job_ids: tuple[str, ...]
    records: Mapping[str, JobRecord]
    starts: tuple[tuple[str, int], ...]
    cancels: tuple[tuple[str, CancelKind], ...]
    acked: tuple[str, ...]
    dead_letters: tuple[DeadLetter, ...]
    remaining: int
    events: tuple[str, ...]
    elapsed: float

    def record(self, job: int) -> JobRecord:
        """The end record of job number ``job`` (0: the first enqueued)."""
        return self.records[self.job_ids[job]]


JobInvariant = Callable[[JobSimulationResult], object]


class _JobRun(_Run):
    """A run whose handlers are job runners: faults strike the tasks' functions."""

    def __init__(self, schedule: FaultSchedule, prefetch: int) -> None:
        super().__init__(schedule, prefetch, None)
        self.jobs: JobQueue | None = None
        self.job_ids: list[str] = []
        self.job_of: dict[str, str] = {}  # message id -> job id
        self.log: list[tuple[str, str, int]] = []  # ("start" | "cancel", job id, attempt)
        self.cancels: list[tuple[str, CancelKind]] = []

    def name(self, message_id: str) -> str:
        """``job #n`` (n: its place in the workload's enqueues): the same in every replay."""
        job_id = self.job_of.get(message_id, message_id)
        return self.job_name(job_id)

    def job_name(self, job_id: str) -> str:
        try:
            return f"job #{self.job_ids.index(job_id)}"
        except ValueError:
            return job_id

    def wrap(self, option: Any) -> Any:
        """The job runner's route, noting which delivery it runs (for the task wrapper)."""
        handler = option.handler
        from foxactors.jobs import JOB_ID_HEADER  # noqa: PLC0415 - the jobs extra

        async def watched(delivery: Delivery) -> Any:
            message = delivery.message
            job_id = message.headers.get(JOB_ID_HEADER)
            if isinstance(job_id, str):
                self.job_of[message.id] = job_id
            token = _DELIVERY.set(message.id)
            try:
                return await handler(delivery)
            finally:
                _DELIVERY.reset(token)

        return attrs.evolve(option, handler=watched)

    def wrap_task(self, task: Any) -> None:
        """Replace the task's ``call`` (on the instance): count, note, apply faults."""
        call = task.call

        async def faulty(ctx: Any, arguments: Any, limiter: Any) -> Any:
            self.log.append(("start", ctx.job_id, ctx.attempt))
            if ctx.attempt > ctx.max_attempts:
                self.violations.append(
                    f"{self.job_name(ctx.job_id)} started at attempt {ctx.attempt}, above its "
                    f"max_attempts={ctx.max_attempts}"
                )
            message_id = _DELIVERY.get(ctx.job_id)
            return await self.faulty(message_id, lambda: call(ctx, arguments, limiter))

        task.call = faulty

    def watch_store(self, jobs: JobQueue) -> None:
        """Note the jobs the workload creates, in order (methods replaced on the store)."""
        store: Any = jobs.store
        create, create_many = store.create, store.create_many

        async def created(record: Any) -> Any:
            stored, new = await create(record)
            if new:
                self.job_ids.append(stored.id)
            return stored, new

        async def created_many(records: Any) -> Any:
            results = await create_many(records)
            self.job_ids.extend(stored.id for stored, new in results if new)
            return results

        store.create, store.create_many = created, created_many

    async def strike(self, fault: TimedFault, system: ActorSystem) -> bool:
        if not isinstance(fault, CancelJob):
            return await super().strike(fault, system)
        assert self.jobs is not None
        job_id = self.job_ids[fault.job]
        from foxactors.jobs import CancelKind  # noqa: PLC0415 - the jobs extra

        cancelled = await self.jobs.cancel(job_id)
        if cancelled.kind is not CancelKind.FINISHED:
            self.log.append(("cancel", job_id, 0))
        self.cancels.append((job_id, cancelled.kind))
        said = {
            CancelKind.CANCELLED: "is cancelled",
            CancelKind.REQUESTED: "is running: its cancel is requested",
            CancelKind.FINISHED: f"had finished ({cancelled.record.state.value}): no cancel",
        }[cancelled.kind]
        self.note(f"{self.job_name(job_id)} {said}: {fault!r}")
        return False


def _wall_clock() -> Callable[[], float]:
    """Unix seconds that follow the event loop's virtual clock."""
    offset = time.time() - anyio.current_time()
    return lambda: offset + anyio.current_time()


def simulate_jobs(
    jobs_factory: Callable[[MemoryBackend], JobQueue],
    workload: Callable[[JobQueue], Awaitable[object]],
    schedule: FaultSchedule | Iterable[Fault] = (),
    *,
    worker: Callable[[JobQueue], WorkerApp] | None = None,
    invariants: Iterable[JobInvariant] = (),
    loop: str = "asyncio",
    seed: int = 0,
    horizon: float = 600.0,
) -> JobSimulationResult:
    """Run a `JobQueue`'s worker on the jobs ``workload`` enqueues, under ``schedule``.

    ``jobs_factory(backend)`` makes the queue and declares its tasks on the
    simulator's memory backend (a new one each run); the simulator sets its clock
    to one that follows virtual time. ``await workload(jobs)`` enqueues the jobs
    before the worker starts. The worker (``worker(jobs)``, by default
    ``jobs.worker()``) then runs in virtual time until its queue is idle and every
    timed fault struck (or a `StopSystem`, or ``horizon``), and stops gracefully.

    Counted faults strike the nth call of a task's function; `CancelJob(job, at)`
    cancels the job-th job the workload created. Then, besides the delivery
    invariants of `simulate`, the job invariants are checked: every job is final
    (succeeded, dead, cancelled) or waits (pending, scheduled, retrying), none
    running; no function started after its job's cancel was recorded; a cancel
    that found the job live ends it cancelled; a cancelled job has no result; no
    attempt beyond ``max_attempts`` (a job started again past it is dead, saying
    so); and each record agrees with the broker: a waiting job's delivery is still
    queued, a succeeded job's was acked, a dead job's was dead-lettered (each may
    be queued again), and only dead jobs have dead letters. Then
    each of ``invariants``, called with the `JobSimulationResult`.

    Args:
        jobs_factory: Makes the queue on the given backend, with its tasks.
        workload: Enqueues the jobs (any way: tasks, options, keys, delays).
        schedule: The faults (see `fault_schedules` with ``jobs=n``).
        worker: Makes the worker app (default ``jobs.worker()``).
        invariants: The user's checks; raising (an assert) fails the run.
        loop: ``"asyncio"`` or ``"trio"``.
        seed: Seeds ``random`` for the run: same seed, same run.
        horizon: Virtual seconds after which the run stops regardless.

    Raises:
        SimulationFailed: An invariant broke; the message holds the schedule as
            code that replays the run, and what happened.
        ConfigurationError: A `CrashActor` names no actor, a `CancelJob` names a
            job the workload did not create, or the factory made no `JobQueue`.
    """
    from foxactors.jobs import JobQueue  # noqa: PLC0415 - the jobs extra

    schedule = as_schedule(schedule)
    outcome: dict[str, Any] = {}
    run: _JobRun | None = None

    async def main() -> None:
        nonlocal run
        before = _task_count()
        run = _JobRun(schedule, 0)
        backend = _FaultyBackend(run)
        jobs = jobs_factory(backend)
        if not isinstance(jobs, JobQueue) or jobs.backend is not backend:
            raise ConfigurationError(
                f"jobs_factory must return a JobQueue on the backend it is given, got {jobs!r}"
            )
        jobs.clock = _wall_clock()
        run.jobs = jobs
        run.watch_store(jobs)
        for task in jobs.tasks.values():
            run.wrap_task(task)
        await workload(jobs)
        _check_jobs_named(schedule, run.job_ids)
        app = jobs.worker() if worker is None else worker(jobs)
        if not isinstance(app, WorkerApp) or app.options.queue is None:
            raise ConfigurationError(f"worker must return jobs.worker(...), got {app!r}")
        queue = outcome["queue"] = app.options.queue
        run.prefetch = app.options.prefetch
        stats = backend.queue_statistics(queue)
        outcome["published"] = stats.ready + stats.delayed
        spec = _app_under_faults(app, run).build()
        outcome["backend"] = backend
        outcome["elapsed"] = await run_system(run, backend, spec, queue, horizon)
        outcome["records"] = {job_id: await jobs.store.get(job_id) for job_id in run.job_ids}
        await check_tasks(run, before)

    run_in_virtual_time(main, loop, seed)
    assert run is not None
    backend: MemoryBackend = outcome["backend"]
    queue: str = outcome["queue"]
    problems, remaining = check_deliveries(run, backend, queue, outcome["published"])
    result = JobSimulationResult(
        schedule,
        tuple(run.job_ids),
        outcome["records"],
        tuple((job_id, attempt) for what, job_id, attempt in run.log if what == "start"),
        tuple(run.cancels),
        tuple(run.job_of.get(i, i) for i, d in run.applied if d is _ACK),
        tuple(backend.dead_letters(queue)),
        remaining,
        tuple(run.events),
        outcome["elapsed"],
    )
    problems += _check_jobs(run, result)
    if problems:
        raise SimulationFailed("; ".join(dict.fromkeys(problems)), run.schedule, run.events)
    check_invariants(run, result, invariants)
    return result


def _check_jobs_named(schedule: FaultSchedule, job_ids: Sequence[str]) -> None:
    for fault in schedule.faults:
        if isinstance(fault, CancelJob) and fault.job >= len(job_ids):
            raise _BadSchedule(
                f"{fault!r} names no job: the workload created {len(job_ids)} "
                f"(jobs 0 to {len(job_ids) - 1})"
            )


def _check_jobs(run: _JobRun, result: JobSimulationResult) -> list[str]:
    from foxactors.jobs import CancelKind, JobState  # noqa: PLC0415

    name = run.job_name
    problems: list[str] = []
    cancelled_at: set[str] = set()
    for what, job_id, attempt in run.log:
        if what == "cancel":
            cancelled_at.add(job_id)
        elif job_id in cancelled_at:
            problems.append(f"{name(job_id)} started (attempt {attempt}) after its cancel")
    for job_id, kind in result.cancels:
        if kind is not CancelKind.FINISHED and result.records[job_id].state is not (
            JobState.CANCELLED
        ):
            state = result.records[job_id].state.value
            problems.append(f"{name(job_id)}'s cancel found it live ({kind.value}), yet {state}")
    return problems + _check_records(run, result)


def _check_records(run: _JobRun, result: JobSimulationResult) -> list[str]:
    """Each record's state, attempts and result, and their agreement with the deliveries."""
    from foxactors.jobs import JOB_ID_HEADER, JobState  # noqa: PLC0415

    problems: list[str] = []
    name = run.job_name
    acked = set(result.acked)
    lettered = {letter.properties.headers.get(JOB_ID_HEADER) for letter in result.dead_letters}
    # one message a job: what was neither acked nor dead-lettered is still queued
    # (check_deliveries holds the counts to it: nothing in flight, nothing lost)
    settled = acked | {run.job_of.get(i, i) for i, d in run.applied if d is _DEAD}
    waiting = {JobState.PENDING, JobState.SCHEDULED, JobState.RETRYING}
    for job_id, record in result.records.items():
        state, job = record.state, name(job_id)
        if state is JobState.RUNNING:
            problems.append(f"{job} still reads running after the stop")
        if state is JobState.CANCELLED and record.result is not None:
            problems.append(f"{job} is cancelled, yet has a result: {record.result!r}")
        if record.attempt > record.max_attempts and not (
            state is JobState.DEAD and "over max_attempts" in (record.reason or "")
        ):
            problems.append(
                f"{job} reached attempt {record.attempt} of {record.max_attempts}, yet "
                f"{state.value}: {record.reason}"
            )
        queued = job_id not in settled
        if state in waiting and not queued:
            problems.append(f"{job} is {state.value}, but no delivery of it is queued")
        if state is JobState.SUCCEEDED and job_id not in acked and not queued:
            problems.append(f"{job} succeeded, but its delivery was never acked")
        if state is JobState.DEAD and not (job_id in lettered or queued):
            problems.append(f"{job} is dead, but its delivery was not dead-lettered")
        if job_id in lettered and state is not JobState.DEAD:
            problems.append(f"{job} was dead-lettered, yet {state.value}")
    return problems
