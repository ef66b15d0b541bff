"""Properties of jobs over random workloads, worker crashes and cancels (memory, virtual time).

Each example enqueues jobs with random outcomes (succeed, raise and be retried, ask for
a retry, reject, run slowly, fail with an error that is not retried), some of them
under one idempotency key from concurrent producers, some delayed; then, at random
virtual times, starts workers, stops them gracefully, cancels them from outside,
kills them (a killed worker's store calls never arrive and its deliveries go back to
the queue, as when a process dies and its broker connection drops), cuts a live
worker off from the broker (its deliveries go back to the queue while its handlers
run on, renewing their leases) and cancels jobs. Whatever happens:

- a job's record, once final (succeeded, dead, cancelled), never changes again, and in
  the end every job is final (nothing was lost);
- no handler starts after its job's cancel was recorded, and a cancelled job has no
  result;
- one key, one job: every producer of a key gets the same job, exactly one created it;
- a handler runs at most ``max_attempts`` times, each time with a new attempt number;
- two attempts of one job never run at once, whichever workers run them;
- with every worker gone, once the lease has run out and a reap has passed, no record
  says running, and every job not final has its delivery waiting in the broker.

The same workloads also run under the simulator (`simulate_jobs`): one worker under
drawn fault schedules (crashed actors, lost acks and connections, redeliveries,
raising, slow and hung task calls, cancels), checked by the simulator's job
invariants and by the keys and outcomes above. What the simulator cannot inject
stays hand-made here: several workers at once, workers killed (their store calls
lost), stopped and cancelled from outside, and records that wait out a lease.

Runs on asyncio and trio, in virtual time: a slow job or a lease costs no real time.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from types import MappingProxyType
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskStatus
from hypothesis import event, given, settings
from hypothesis import strategies as st

import foxactors as fa
from foxactors.jobs import (
    CancelKind,
    JobCancelled,
    JobContext,
    JobFailed,
    JobHandle,
    JobQueue,
    JobRecord,
    JobState,
    JobStore,
    MemoryJobStore,
    Reaped,
    Reject,
    Retry,
)
from foxactors.testing import (
    CancelJob,
    CrashActor,
    CrashBeforeSettle,
    FaultSchedule,
    HangHandler,
    JobSimulationResult,
    LoseConnection,
    RaiseInHandler,
    Redeliver,
    SlowHandler,
    StopSystem,
    anyio_backend_options,
    fault_schedules,
    simulate_jobs,
)

from .helpers import KeptSources

QUEUE = "work"
LEASE = 5.0
REAP_INTERVAL = 2.0
FINAL = {JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED}

outcomes = st.one_of(
    st.just(("ok", 0)),
    st.tuples(st.just("raise"), st.integers(1, 3)),  # raises Flaky on its first k attempts
    st.tuples(st.just("retry"), st.integers(1, 3)),  # raises Retry on its first k attempts
    st.just(("reject", 0)),
    st.tuples(st.just("slow"), st.integers(1, 20)),  # sleeps k seconds, then returns
    st.just(("fatal", 0)),  # an error that is not retried: dead at once
)
job_specs = st.tuples(
    outcomes,
    st.integers(1, 3),  # max_attempts
    st.sampled_from([None, None, "k1", "k2"]),  # idempotency key
    st.sampled_from([0.0, 0.0, 3.0]),  # delay
    st.sampled_from([None, "acme"]),  # tenant: keys are per tenant
)
actions = st.one_of(
    st.just(("start", 0)),
    st.just(("stop", 0)),
    st.just(("kill", 0)),
    st.just(("abort", 0)),
    st.just(("cut", 0)),
    st.tuples(st.just("cancel"), st.integers(0, 20)),
)
schedules = st.lists(st.tuples(st.integers(0, 30), actions), max_size=10).map(sorted)


class Flaky(Exception):
    """An error worth retrying."""


class Fatal(Exception):
    """An error the task does not retry."""


class Watched(MemoryJobStore):
    """The memory store, noting any change made to a record after it was final."""

    def __init__(self) -> None:
        super().__init__(retention=10**9)  # keep every record for the final checks
        self.changed_after_final: list[tuple[JobRecord, JobRecord]] = []

    def _put(self, record: JobRecord) -> JobRecord:
        old = self._records.get(record.id)
        if old is not None and old.state in FINAL and record != old:
            self.changed_after_final.append((old, record))
        return super()._put(record)


UNCHANGED: Mapping[str, Any] = MappingProxyType(
    {
        "complete": JobState.RUNNING,
        "fail": JobState.RUNNING,
        "release": JobState.RUNNING,
        "renew": [],
        "heartbeat": False,
        "progress": False,
        "reap": Reaped(),
    }
)
"""What a dead worker's store calls answer: nothing changed (they never arrived)."""


class Mortal:
    """One worker process's way to the shared store; once dead, its calls never arrive.

    A dead process's pending calls are lost: each answers without touching the store
    (a caller still cancellable stops at the checkpoint first), and its cancel
    callbacks stop.
    """

    def __init__(self, store: MemoryJobStore) -> None:
        self._store = store
        self.retention = store.retention
        self.dead = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if not self.dead:
                return await method(*args, **kwargs)
            await anyio.lowlevel.checkpoint()
            if name == "start":  # a dead process starts nothing
                await anyio.sleep_forever()
            return UNCHANGED[name]

        return call

    def on_cancel(self, callback: Callable[[str], None]) -> Callable[[], None]:
        def heard(job_id: str) -> None:
            if not self.dead:
                callback(job_id)

        return self._store.on_cancel(heard)


class Connection(KeptSources):
    """A worker process's connection to the shared memory broker, dropped when it dies.

    When a process dies, its broker sees the connection drop and takes back what it
    had delivered on it: `drop` does that here.
    """

    def __init__(self, broker: fa.MemoryBackend) -> None:  # no super().__init__: shared
        self.__dict__.update(broker.__dict__)  # the same queues
        self.sources = []

    async def drop(self) -> None:
        for source in self.sources:
            await source.close()


class Scenario:
    """One example: the shared backend and store, the log of what happened, the workers."""

    def __init__(self) -> None:
        self.backend = fa.MemoryBackend()
        self.store = Watched()
        self.log: list[tuple[str, str, int]] = []  # (what, job id, attempt), in order
        self.started = anyio.Event()  # a handler started
        self.producer = self.jobs(self.store)
        self.work = self.declare(self.producer)

    def starts(self) -> list[tuple[str, int]]:
        """(job id, attempt) of each handler start, in order."""
        return [(job_id, attempt) for what, job_id, attempt in self.log if what == "start"]

    def jobs(self, store: Any, backend: fa.MemoryBackend | None = None) -> JobQueue:
        return JobQueue(
            backend or self.backend,
            store=cast(JobStore, store),
            queue=QUEUE,
            lease=LEASE,
            reap_interval=REAP_INTERVAL,
            clock=anyio.current_time,
        )

    def declare(self, jobs: JobQueue) -> Any:
        log, started = self.log, self.started

        def starting(ctx: JobContext) -> None:
            log.append(("start", ctx.job_id, ctx.attempt))
            started.set()

        def ending(ctx: JobContext) -> None:
            log.append(("end", ctx.job_id, ctx.attempt))

        return declare_work(jobs, starting, ending)


def declare_work(
    jobs: JobQueue,
    starting: Callable[[JobContext], None] = lambda ctx: None,
    ending: Callable[[JobContext], None] = lambda ctx: None,
) -> Any:
    """Declare the task ``work``: it does what its arguments ask (see ``outcomes``)."""

    @jobs.task(name="work", retry_on=Flaky, backoff=lambda attempt: 1.0)
    async def work(ctx: JobContext, n: int, kind: str, k: int) -> int:
        starting(ctx)
        try:
            return await act_out(ctx, n, kind, k)
        finally:
            ending(ctx)  # returned, raised, or cancelled (a kill cancels at once)

    return work


async def act_out(ctx: JobContext, n: int, kind: str, k: int) -> int:
    """What a ``work`` job does: what its arguments ask."""
    if kind == "raise" and ctx.attempt <= k:
        raise Flaky("try again")
    if kind == "retry" and ctx.attempt <= k:
        raise Retry(delay=1.0, reason="not yet")
    if kind == "reject":
        raise Reject("no such domain")
    if kind == "fatal":
        raise Fatal("no template")
    if kind == "slow":
        await anyio.sleep(k)
    return n


class Worker:
    """A worker process: its own `JobQueue` on the shared backend and store."""

    def __init__(self, scenario: Scenario, concurrency: int) -> None:
        self.store = Mortal(scenario.store)
        self.connection = Connection(scenario.backend)
        self.jobs = scenario.jobs(self.store, self.connection)
        scenario.declare(self.jobs)
        self.concurrency = concurrency
        self.scope = anyio.CancelScope()
        self.stopping = anyio.Event()
        self.gone = anyio.Event()
        self.system: fa.ActorSystem | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            with self.scope:
                app = self.jobs.worker(QUEUE, concurrency=self.concurrency)
                async with fa.open_system(app.build()) as self.system:
                    task_status.started()
                    await self.stopping.wait()  # then a graceful stop: drain, release
        finally:
            if self.scope.cancel_called:  # what the consumer does not close, the broker does
                with anyio.CancelScope(shield=True):
                    await self.connection.drop()
            self.gone.set()

    def kill(self) -> None:
        """Die now: no drain, no release; the broker takes the deliveries back."""
        self.store.dead = True
        if self.system is not None:
            self.system.kill()  # at once: a cancel would stop the tree with its hooks
        self.scope.cancel()

    def abort(self) -> None:
        """Cancel the app from outside (no drain): running jobs are released."""
        self.scope.cancel()

    def cut(self) -> None:
        """Lose the broker connection, and live on: what it held goes back to the queue.

        Its handlers run on and its keeper renews their leases through the store; its
        consumer opens a new connection. Their settlements on the old one are lost.
        """
        for source in self.connection.sources:
            source.lose_connection("cut off by the test")


def waiting_job_ids(backend: fa.MemoryBackend) -> tuple[list[str], int]:
    """The job ids of the deliveries waiting in the queue, and how many are in flight."""
    queue = backend._queue(QUEUE)
    entries = [e for lane in queue.ready._lanes.values() for e in lane]
    entries += [entry for _, _, entry in queue.delayed]
    return [e.properties.headers["x-job-id"] for e in entries], len(queue.in_flight)


async def enqueue_all(work: Any, specs: list[Any]) -> list[JobHandle[int]]:
    """Enqueue every job of task ``work``, each from a producer of its own, all at once."""
    handles: list[Any] = [None] * len(specs)
    go = anyio.Event()

    async def produce(n: int) -> None:
        (kind, k), max_attempts, key, delay, tenant = specs[n]
        chosen = work.options(max_attempts=max_attempts, key=key, delay=delay, tenant=tenant)
        await go.wait()
        handles[n] = await chosen.enqueue(n=n, kind=kind, k=k)

    async with anyio.create_task_group() as producers:
        for n in range(len(specs)):
            producers.start_soon(produce, n)
        await anyio.wait_all_tasks_blocked()
        go.set()
    return handles


async def outcome(handle: JobHandle[int]) -> tuple[str, Any]:
    try:
        return "succeeded", await handle.result(timeout=10_000)
    except JobCancelled:
        return "cancelled", None
    except JobFailed as exc:
        return "dead", exc.record.reason


@dataclasses.dataclass
class Run:
    """What one example did and left behind."""

    world: Scenario
    specs: list[Any]
    handles: list[JobHandle[int]]
    cancels: list[tuple[str, CancelKind]]  # (job id, what the cancel answered)
    reaped: dict[str, JobRecord]  # the records after every worker died, a lease and a reap
    waiting: list[str]  # then: the job ids of the deliveries in the broker
    in_flight: int  # then: deliveries out with a consumer
    ends: dict[str, tuple[str, Any]]  # job id -> how handle.result() ended, in the end
    records: dict[str, JobRecord]  # in the end


async def act(
    world: Scenario, handles: list[JobHandle[int]], schedule: list[Any], concurrency: int
) -> list[tuple[str, CancelKind]]:
    """Follow the schedule: start, stop and kill workers, cancel jobs; then kill them all."""
    workers: list[Worker] = []
    cancels: list[tuple[str, CancelKind]] = []
    async with anyio.create_task_group() as running:
        start = anyio.current_time()
        for at, (action, index) in schedule:
            await anyio.sleep(max(0.0, start + at - anyio.current_time()))
            alive = [w for w in workers if not w.gone.is_set() and not w.stopping.is_set()]
            if action == "start" and len(alive) < 2:
                workers.append(Worker(world, concurrency))
                await running.start(workers[-1].run)
            elif action == "stop" and alive:
                alive[0].stopping.set()
            elif action == "kill" and alive:
                alive[0].kill()
            elif action == "abort" and alive:
                alive[0].abort()
            elif action == "cut" and alive:
                alive[0].cut()
            elif action == "cancel":
                handle = handles[index % len(handles)]
                cancelled = await handle.cancel()
                if cancelled.kind is not CancelKind.FINISHED:
                    world.log.append(("cancel", handle.id, 0))
                cancels.append((handle.id, cancelled.kind))
        for worker in workers:  # every worker dies: nobody holds a job now
            worker.kill()
    return cancels


def run_on(backend: str, specs: list[Any], schedule: list[Any], concurrency: int) -> Run:
    async def scenario() -> Run:
        world = Scenario()
        handles = await enqueue_all(world.work, specs)
        cancels = await act(world, handles, schedule, concurrency)
        await anyio.sleep(LEASE + 1)  # every lease has run out
        await world.store.reap(anyio.current_time(), abandon_after=10**9)
        reaped = {r.id: r for r in (await world.store.list(limit=1000)).jobs}
        waiting, in_flight = waiting_job_ids(world.backend)
        last = Worker(world, concurrency)  # a worker drains what is left
        async with anyio.create_task_group() as running:
            await running.start(last.run)
            ends = {h.id: await outcome(h) for h in handles}
            last.stopping.set()
        records = {r.id: r for r in (await world.store.list(limit=1000)).jobs}
        return Run(world, specs, handles, cancels, reaped, waiting, in_flight, ends, records)

    name, options = anyio_backend_options(backend)
    return anyio.run(scenario, backend=name, backend_options=options)


def check_keys(run: Run) -> None:
    """One key, one job: every producer of a key has its job, and exactly one made it."""
    keys_hold(run.specs, run.handles, run.records)
    assert set(run.records) == {h.id for h in run.handles}


def keys_hold(
    specs: list[Any], handles: list[JobHandle[int]], records: Mapping[str, JobRecord]
) -> None:
    """Every producer of a (tenant, key) got the same job, exactly one created it."""
    slots = [(tenant, key) for _, _, key, _, tenant in specs]
    for slot in {slot for slot in slots if slot[1] is not None}:
        keyed = [h for h, held in zip(handles, slots, strict=True) if held == slot]
        assert len({h.id for h in keyed}) == 1
        assert sum(h.created for h in keyed) == 1
        holders = [r.id for r in records.values() if (r.tenant, r.key) == slot]
        assert holders == [keyed[0].id]


def check_records_follow_the_broker(run: Run) -> None:
    """With no worker, after the lease and a reap: nothing running, live jobs in the broker."""
    assert run.in_flight == 0
    assert [r.id for r in run.reaped.values() if r.state is JobState.RUNNING] == []
    live = {job_id for job_id, r in run.reaped.items() if r.state not in FINAL}
    assert live <= set(run.waiting)


def check_one_final_state(run: Run) -> None:
    """Every job ended, in one final state it never left; the broker agrees."""
    assert run.world.store.changed_after_final == []
    assert {job_id: r.state.value for job_id, r in run.records.items()} == {
        job_id: end for job_id, (end, _) in run.ends.items()
    }
    backend = run.world.backend
    dead_letters = Counter(d.properties.headers["x-job-id"] for d in backend.dead_letters(QUEUE))
    dead = Counter(job_id for job_id, r in run.records.items() if r.state is JobState.DEAD)
    assert dead_letters == dead
    stats = backend.queue_statistics(QUEUE)
    assert (stats.ready, stats.delayed, stats.in_flight) == (0, 0, 0)


def check_cancel_wins(run: Run) -> None:
    """No start after a recorded cancel; a cancel that found the job live wins; no result."""
    cancelled_at: dict[str, int] = {}
    for position, (what, job_id, _) in enumerate(run.world.log):
        if what == "cancel":
            cancelled_at.setdefault(job_id, position)
        elif what == "start":
            assert job_id not in cancelled_at, f"job {job_id} started after its cancel"
    for job_id, kind in run.cancels:
        assert kind is CancelKind.FINISHED or run.records[job_id].state is JobState.CANCELLED
    for job_id, record in run.records.items():
        if record.state is JobState.CANCELLED:
            assert record.result is None
            assert job_id in cancelled_at  # only the test cancels
            assert run.ends[job_id] == ("cancelled", None)


def check_no_overlap(run: Run) -> None:
    """Two attempts of one job never run at once, in one worker or in two."""
    running: dict[str, int] = {}  # job id -> the attempt running now
    for what, job_id, attempt in run.world.log:
        if what == "start":
            assert job_id not in running, (
                f"job {job_id}: attempt {attempt} started while {running[job_id]} ran"
            )
            running[job_id] = attempt
        elif what == "end":
            assert running.pop(job_id) == attempt


def check_attempts(run: Run) -> None:
    """A handler runs at most max_attempts times, each time with a new attempt number."""
    runs: dict[str, list[int]] = {}
    for what, job_id, attempt in run.world.log:
        if what == "start":
            runs.setdefault(job_id, []).append(attempt)
    for job_id, attempts in runs.items():
        record = run.records[job_id]
        assert attempts == sorted(set(attempts))
        assert len(attempts) <= record.max_attempts
        assert attempts[-1] <= record.max_attempts
    for record in run.records.values():
        if record.attempt > record.max_attempts:  # delivered again after a crash or stop
            assert record.state is JobState.DEAD  # and not run again
            assert "over max_attempts" in (record.reason or "")


def check_outcomes(run: Run) -> None:
    """A job ends as its handler was asked to: its own result, or dead for a reason it gave."""
    outcomes_hold(run.specs, run.handles, run.ends, {job_id for job_id, _ in run.cancels})


def outcomes_hold(
    specs: list[Any],
    handles: list[JobHandle[int]],
    ends: Mapping[str, tuple[str, Any]],
    cancelled: Collection[str],
    *,
    faults: bool = False,
) -> None:
    """Each job ended as its spec asked (``faults``: or dead of a `SimulatedFault`).

    Only a job in ``cancelled`` (whose cancel was asked for) may end cancelled.
    """
    made = {h.id: n for n, h in enumerate(handles) if h.created}
    for job_id, (end, value) in ends.items():
        (kind, k), max_attempts, _, _, _ = specs[made[job_id]]
        if end == "succeeded":
            assert kind in ("ok", "raise", "retry", "slow")
            assert value == made[job_id]
        elif end == "dead":
            reasons = {
                "reject": "no such domain",
                "fatal": "not retried: Fatal: no template",
                "raise": f"failed after {max_attempts} attempt",
                "retry": f"retry asked after the last attempt ({max_attempts} of",
            }
            given = reasons.get(kind)
            if faults and value.startswith("not retried: SimulatedFault"):
                continue  # the simulator's RaiseInHandler: not a Flaky, so not retried
            if "over max_attempts" not in value:  # its workers kept stopping: any kind
                assert given is not None, value
                assert value.startswith(given), value
                assert kind in ("reject", "fatal") or k >= max_attempts
        else:
            assert end == "cancelled", end
            assert job_id in cancelled, f"{job_id} ended cancelled, but no cancel was asked"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=40, deadline=None)
@given(
    specs=st.lists(job_specs, min_size=1, max_size=8),
    schedule=schedules,
    concurrency=st.integers(1, 3),
)
def test_jobs_end_once_cancels_win_keys_hold_and_records_follow_the_broker(
    backend: str, specs: list[Any], schedule: list[Any], concurrency: int
) -> None:
    run = run_on(backend, specs, schedule, concurrency)
    event(f"kills and aborts={sum(a in ('kill', 'abort') for _, (a, _) in schedule)}")
    event(f"cuts={sum(a == 'cut' for _, (a, _) in schedule)}")
    event(f"final states={sorted({r.state.value for r in run.records.values()})}")
    check_keys(run)
    check_records_follow_the_broker(run)
    check_one_final_state(run)
    check_cancel_wins(run)
    check_attempts(run)
    check_no_overlap(run)
    check_outcomes(run)


# -- the same jobs under the simulator's faults ------------------------------------------

SIMULATED_PATHS = ["pool", "consumer", "jobs-keeper", "pool/worker-1"]
SIMULATED_FAULTS = (
    CrashActor,
    CrashBeforeSettle,
    RaiseInHandler,
    StopSystem,
    LoseConnection,
    Redeliver,
    SlowHandler,
    HangHandler,
    CancelJob,
)


def simulated_jobs(backend: fa.MemoryBackend) -> JobQueue:
    """The queue of the simulated runs: the task ``work`` on the simulator's backend."""
    jobs = JobQueue(backend, queue=QUEUE, lease=LEASE, reap_interval=REAP_INTERVAL)
    declare_work(jobs)
    return jobs


def jobs_made(specs: list[Any]) -> int:
    """How many jobs enqueuing ``specs`` creates: one per (tenant, key), one per unkeyed."""
    keyed = {(tenant, key) for _, _, key, _, tenant in specs if key is not None}
    return len(keyed) + sum(key is None for _, _, key, _, _ in specs)


def simulate_workload(
    specs: list[Any], schedule: FaultSchedule, loop: str, concurrency: int = 2
) -> JobSimulationResult:
    """Enqueue ``specs`` from concurrent producers, then simulate a worker under ``schedule``.

    Beside the simulator's own job invariants: keys hold, and each job that ended
    ended as its spec asked.
    """
    handles: list[JobHandle[int]] = []

    async def workload(jobs: JobQueue) -> None:
        handles.extend(await enqueue_all(jobs.tasks["work"], specs))

    def as_asked(result: JobSimulationResult) -> None:
        keys_hold(specs, handles, result.records)
        ends = {
            job_id: (r.state.value, r.result if r.state is JobState.SUCCEEDED else r.reason)
            for job_id, r in result.records.items()
            if r.state in FINAL
        }
        asked = {job_id for job_id, _ in result.cancels}
        outcomes_hold(specs, handles, ends, asked, faults=True)

    return simulate_jobs(
        simulated_jobs,
        workload,
        schedule,
        worker=lambda jobs: jobs.worker(QUEUE, concurrency=concurrency),
        invariants=[as_asked],
        loop=loop,
    )


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_jobs_keep_their_invariants_under_simulated_faults(loop: str, data: st.DataObject) -> None:
    specs = data.draw(st.lists(job_specs, min_size=1, max_size=6), label="specs")
    schedule = data.draw(
        fault_schedules(
            jobs=jobs_made(specs),
            paths=SIMULATED_PATHS,
            kinds=SIMULATED_FAULTS,
            max_faults=5,
            horizon=20,
        ),
        label="schedule",
    )
    result = simulate_workload(specs, schedule, loop)
    event(f"final states={sorted({r.state.value for r in result.records.values()})}")
    event(f"faults={sorted({type(f).__name__ for f in schedule.faults})}")
    if not any(isinstance(f, StopSystem | HangHandler) for f in schedule.faults):
        assert all(r.state in FINAL for r in result.records.values())  # the queue ran out


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_a_simulated_cancel_of_a_running_job_wins(loop: str) -> None:
    specs: list[Any] = [(("slow", 10), 3, None, 0.0, None), (("ok", 0), 1, None, 0.0, None)]
    result = simulate_workload(specs, FaultSchedule([CancelJob(job=0, at=1)]), loop)
    cancelled = result.record(0)
    assert (cancelled.state, cancelled.result) == (JobState.CANCELLED, None)
    assert result.record(1).state is JobState.SUCCEEDED
    assert result.cancels == ((result.job_ids[0], CancelKind.REQUESTED),)
    assert result.events == (
        "t=1.0s  job #0 is running: its cancel is requested: CancelJob(job=0, at=1.0)",
    )


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_a_dead_job_whose_dead_letter_was_stale_still_reaches_the_dead_letter_queue(
    loop: str,
) -> None:
    # found by the simulator: the one attempt (2 s) ends dead after its consumer lost
    # the connection (at 1 s), so its dead-letter is stale; the delivery went back,
    # waits behind the attempt (concurrency 1), then finds the record dead
    fatal: list[Any] = [(("fatal", 0), 1, None, 0.0, None)]
    schedule = FaultSchedule([SlowHandler(nth=1, seconds=2.0), LoseConnection(at=1.0)])
    result = simulate_workload(fatal, schedule, loop, concurrency=1)
    assert result.record(0).state is JobState.DEAD
    assert [letter.reason for letter in result.dead_letters] == [result.record(0).reason]


# -- the smallest examples the property found -------------------------------------------


@pytest.mark.anyio
async def test_a_job_only_prefetched_by_a_worker_that_stops_keeps_its_attempts() -> None:
    world = Scenario()
    slow = await world.work.enqueue(n=0, kind="slow", k=10)
    waiting = await world.work.options(max_attempts=1).enqueue(n=1, kind="ok", k=0)
    first = Worker(world, concurrency=1)  # prefetch 2: it holds the second job unstarted
    async with anyio.create_task_group() as running:
        await running.start(first.run)
        await world.started.wait()
        await anyio.wait_all_tasks_blocked()
        assert world.backend.queue_statistics(QUEUE).in_flight == 2
        first.stopping.set()  # a deploy: the slow job finishes, the other goes back
    assert await slow.result(timeout=60) == 0
    assert world.starts() == [(slow.id, 1)]
    second = Worker(world, concurrency=1)
    async with anyio.create_task_group() as running:
        await running.start(second.run)
        outcome_of_waiting = await outcome(waiting)
        second.stopping.set()
    assert outcome_of_waiting == ("succeeded", 1)


@pytest.mark.anyio
async def test_a_worker_stopping_past_its_drain_deadline_puts_the_running_job_back() -> None:
    world = Scenario()
    handle = await world.work.enqueue(n=0, kind="slow", k=100)
    app = world.producer.worker(QUEUE).with_drain_timeout(1)
    async with fa.open_system(app.build()):
        await world.started.wait()  # then a deploy: the job has 1 s, and needs 100
    record = await handle.status()
    assert (record.state, record.attempt, record.reason) == (JobState.PENDING, 1, None)
    stats = world.backend.queue_statistics(QUEUE)
    assert (stats.ready, stats.in_flight, stats.dead) == (1, 0, 0)
    async with fa.open_system(world.producer.worker(QUEUE).build()):
        assert await handle.result(timeout=1000) == 0
    assert (await handle.status()).attempt == 2
    assert [attempt for _, attempt in world.starts()] == [1, 2]


@pytest.mark.anyio
async def test_a_job_worker_cancelled_from_outside_releases_its_running_job() -> None:
    world = Scenario()
    handle = await world.work.enqueue(n=0, kind="slow", k=10)
    with anyio.CancelScope() as outside:
        async with fa.open_system(world.producer.worker(QUEUE).build()):
            await world.started.wait()
            outside.cancel()
            await anyio.sleep_forever()
    record = await handle.status()
    assert (record.state, record.attempt, record.reason) == (JobState.PENDING, 1, None)
    assert world.backend.dead_letters(QUEUE) == []


@pytest.mark.anyio
async def test_a_job_worker_cancelled_from_outside_gives_its_delivery_back() -> None:
    world = Scenario()
    await world.work.enqueue(n=0, kind="slow", k=10)
    with anyio.CancelScope() as outside:
        async with fa.open_system(world.producer.worker(QUEUE).build()):
            await world.started.wait()
            outside.cancel()
            await anyio.sleep_forever()
    stats = world.backend.queue_statistics(QUEUE)
    assert (stats.ready, stats.in_flight) == (1, 0)


@pytest.mark.anyio
async def test_a_dead_workers_job_reads_running_no_longer_than_lease_and_a_reap() -> None:
    world = Scenario()
    handle = await world.work.enqueue(n=0, kind="slow", k=1000)
    doomed = Worker(world, concurrency=1)
    other = world.jobs(world.store)  # a live worker of another queue: its keeper reaps
    world.declare(other)
    async with anyio.create_task_group() as running:
        await running.start(doomed.run)
        async with fa.open_system(other.worker("elsewhere").build()):
            await world.started.wait()
            doomed.kill()
            killed_at = anyio.current_time()
            await anyio.sleep(LEASE - 1.5)  # the lease was renewed at most 1 s ago
            assert (await handle.status()).state is JobState.RUNNING
            await anyio.sleep(killed_at + LEASE + REAP_INTERVAL - anyio.current_time())
            record = await handle.status()
    assert (record.state, record.attempt) == (JobState.PENDING, 1)
    assert world.backend.queue_statistics(QUEUE).ready == 1  # its delivery went back too
