"""The simulator: a user's WorkerApp under fault schedules, checked, shrunk and replayed.

Each run is a whole `anyio.run` in virtual time, so these tests call `simulate`
from plain (synchronous) hypothesis tests, on asyncio and on trio.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

import anyio
import pytest
from hypothesis import HealthCheck, given, settings

import foxactors as fa
from foxactors.jobs import JobQueue, JobState
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
    SimulationFailed,
    SimulationResult,
    SlowHandler,
    StopSystem,
    fault_schedules,
    simulate,
    simulate_jobs,
    simulate_tree,
)

LOOPS = pytest.mark.parametrize("loop", ["asyncio", "trio"])
PATHS = ["pool", "consumer", "retry", "pool/worker-1"]
FAST = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def counting_app(seen: Counter[int], *, max_retries: int = 2) -> Callable[[], fa.WorkerApp]:
    """An app whose handler counts each payload it handled: a side effect per call."""

    def factory() -> fa.WorkerApp:
        async def handle(message: fa.Message) -> None:
            seen[message.payload] += 1

        return (
            fa.WorkerApp("app")
            .add_worker(handle)
            .with_timeout(5)
            .with_prefetch(4)
            .with_concurrency_limit(2)
            .with_retry(max_retries=max_retries, initial_backoff=1, max_backoff=4)
        )

    return factory


@LOOPS
@FAST
@given(schedule=fault_schedules(paths=PATHS, messages=8))
def test_built_in_invariants_hold_under_faults(loop: str, schedule: FaultSchedule) -> None:
    seen: Counter[int] = Counter()
    result = simulate(counting_app(seen), 8, schedule, loop=loop)
    # every message is accounted for once: acked, dead, or queued after a stop
    assert len(result.acked) + len(result.dead_letters) + result.remaining == 8
    if not any(isinstance(f, StopSystem) for f in schedule.faults):
        assert result.remaining == 0
        assert set(seen) == set(range(8))  # every payload was handled


ALL_KINDS = (
    CrashActor,
    CrashBeforeSettle,
    RaiseInHandler,
    StopSystem,
    LoseConnection,
    Redeliver,
    SlowHandler,
    HangHandler,
)


@LOOPS
@FAST
@given(schedule=fault_schedules(paths=PATHS, messages=8, kinds=ALL_KINDS))
def test_every_kind_of_fault_keeps_the_invariants(loop: str, schedule: FaultSchedule) -> None:
    result = simulate(counting_app(Counter()), 8, schedule, loop=loop)
    assert len(result.acked) + len(result.dead_letters) + result.remaining == 8


@LOOPS
def test_a_hung_handler_times_out_and_is_retried(loop: str) -> None:
    seen: Counter[int] = Counter()
    result = simulate(counting_app(seen), 3, [HangHandler(1), SlowHandler(2, 3)], loop=loop)
    assert len(result.acked) == 3
    assert result.elapsed >= 5  # the hang lasted until the handler's 5 s timeout
    assert sorted(result.calls.values()) == [1, 1, 2]  # the hung one ran again
    # which message a call gets depends on the loop's interleaving, not the call number
    assert [re.sub(r"message #\d", "message #n", e.split(":")[0]) for e in result.events] == [
        "t=0.0s  call #1 (message #n) hangs",
        "t=0.0s  call #2 (message #n) waits 3s",
    ]


@LOOPS
def test_a_redelivery_runs_the_handler_again(loop: str) -> None:
    seen: Counter[int] = Counter()
    result = simulate(counting_app(seen), 3, [Redeliver(1)], loop=loop)
    assert len(result.acked) == 3
    assert sum(seen.values()) == 4
    assert "the broker delivers message #" in result.events[0]


@LOOPS
def test_a_crash_before_the_ack_exposes_a_handler_that_is_not_idempotent(loop: str) -> None:
    seen: Counter[int] = Counter()

    def handled_once(result: SimulationResult) -> None:
        twice = sorted(p for p, n in seen.items() if n > 1)
        assert not twice, f"payloads handled more than once: {twice}"

    @settings(max_examples=40, deadline=None, derandomize=True, database=None)
    @given(
        # no crashes of actors: a crash of the pool or the consumer while a handler
        # runs returns its delivery too, other ways to a second run (and simpler ones)
        schedule=fault_schedules(paths=PATHS, messages=6, kinds=(CrashBeforeSettle, RaiseInHandler))
    )
    def check(schedule: FaultSchedule) -> None:
        seen.clear()
        simulate(counting_app(seen), 6, schedule, invariants=[handled_once], loop=loop)

    with pytest.raises(SimulationFailed) as failed:
        check()
    shrunk = failed.value.schedule
    # shrunk to the one fault that matters, printed as code that builds it
    assert shrunk == FaultSchedule([CrashBeforeSettle(nth=1)])
    text = str(failed.value)
    assert "invariant handled_once failed" in text
    assert "schedule (replays this run): FaultSchedule([CrashBeforeSettle(nth=1)])" in text
    assert re.search(r"t=0\.0s  the ack of message #\d is lost with its consumer", text)
    assert isinstance(failed.value.__cause__, AssertionError)
    # the printed schedule pastes back and replays the same failure
    replayed = eval(repr(shrunk))  # the repr is the code that builds it
    seen.clear()
    with pytest.raises(SimulationFailed) as again:
        simulate(counting_app(seen), 6, replayed, invariants=[handled_once], loop=loop)
    assert str(again.value) == text


@LOOPS
def test_a_schedule_replays_the_same_run(loop: str) -> None:
    schedule = FaultSchedule(
        [RaiseInHandler(2), CrashBeforeSettle(4), CrashActor("pool", 0.5), LoseConnection(1.5)]
    )
    runs = []
    for _ in range(2):
        seen: Counter[int] = Counter()
        result = simulate(counting_app(seen), 10, schedule, loop=loop)
        runs.append((result.events, sorted(seen.items()), len(result.acked)))
    assert runs[0] == runs[1]
    assert len(runs[0][0]) == 4  # each fault struck and was noted


@LOOPS
def test_a_stop_leaves_the_rest_queued(loop: str) -> None:
    result = simulate(counting_app(Counter()), 20, [StopSystem(0)], loop=loop)
    assert result.remaining > 0
    assert len(result.acked) + result.remaining == 20
    assert result.events == ("t=0.0s  the system stops: StopSystem(at=0.0)",)


def test_a_fault_naming_no_actor_lists_the_actors() -> None:
    with pytest.raises(fa.ConfigurationError) as error:
        simulate(counting_app(Counter()), 3, [CrashActor("pol", 1)])
    message = str(error.value)
    assert "CrashActor(path='pol', at=1.0) names no actor of the app" in message
    assert "/app/pool/worker-1" in message
    assert "/app/consumer" in message


def test_a_raising_invariant_is_reported_with_its_schedule() -> None:
    def broken(result: SimulationResult) -> None:
        raise KeyError("oops")

    with pytest.raises(SimulationFailed) as failed:
        simulate(counting_app(Counter()), 3, [RaiseInHandler(1)], invariants=[broken])
    assert "invariant broken failed: KeyError: 'oops'" in str(failed.value)
    assert "FaultSchedule([RaiseInHandler(nth=1)])" in str(failed.value)
    assert isinstance(failed.value.__cause__, KeyError)


def test_a_retry_exhausted_message_is_dead_lettered_with_a_reason() -> None:
    result = simulate(counting_app(Counter(), max_retries=0), 3, [RaiseInHandler(1)], invariants=[])
    assert [letter.reason for letter in result.dead_letters] != [""]
    assert len(result.dead_letters) == 1
    assert len(result.acked) == 2


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: RaiseInHandler(0), "nth counts handler calls from 1, got nth=0"),
        (lambda: StopSystem(-1), "StopSystem.at takes seconds >= 0, got -1"),
        (lambda: FaultSchedule(["crash"]), "got 'crash'"),  # type: ignore[list-item] # bad on purpose
        (lambda: fault_schedules(messages=0), "messages must be an int >= 1, got 0"),
        (lambda: fault_schedules(messages=3, kinds=(CrashActor,)), "needs paths=[...]"),
    ],
)
def test_bad_faults_are_refused_by_name(build: Callable[[], object], needle: str) -> None:
    with pytest.raises(fa.ConfigurationError) as error:
        build()
    assert needle in str(error.value)


def test_the_timeline_lists_faults_in_the_order_they_strike() -> None:
    schedule = FaultSchedule([RaiseInHandler(3), StopSystem(2), CrashActor("pool", 0.5)])
    assert schedule.timeline().splitlines() == [
        "      t=0.5s  CrashActor(path='pool', at=0.5)",
        "        t=2s  StopSystem(at=2.0)",
        "     call #3  RaiseInHandler(nth=3)",
    ]
    assert repr(schedule) == (
        "FaultSchedule([RaiseInHandler(nth=3), StopSystem(at=2.0), "
        "CrashActor(path='pool', at=0.5)])"
    )


# -- jobs ----------------------------------------------------------------------------------


def flaky_jobs(backend: fa.MemoryBackend) -> JobQueue:
    """A queue whose task ``work`` sleeps ``n`` seconds and returns ``n``."""
    jobs = JobQueue(backend, queue="work")

    @jobs.task(name="work", max_attempts=2, backoff=lambda attempt: 1.0)
    async def work(n: int) -> int:
        await anyio.sleep(n)
        return n

    return jobs


async def five_jobs(jobs: JobQueue) -> None:
    for n in range(5):
        await jobs.tasks["work"].enqueue(n=n)


@LOOPS
def test_simulated_jobs_end_as_their_faults_say(loop: str) -> None:
    schedule = FaultSchedule([RaiseInHandler(1), CancelJob(job=4, at=0.5), StopSystem(at=3.5)])
    result = simulate_jobs(flaky_jobs, five_jobs, schedule, loop=loop)
    states = [result.record(n).state for n in range(5)]
    # job 4 ran (4 s) when cancelled; the stop at 3.5 s leaves job 3 (3 s) done; the
    # raise was retried after 1 s: if it hit job 3, its second run was stopped
    assert states[4] is JobState.CANCELLED
    assert states[:3] == [JobState.SUCCEEDED] * 3
    assert states[3] in (JobState.SUCCEEDED, JobState.PENDING)
    assert [r.attempt for r in result.records.values()].count(2) == 1  # the raise's retry
    assert result.events[1] == (
        "t=0.5s  job #4 is running: its cancel is requested: CancelJob(job=4, at=0.5)"
    )
    replayed = simulate_jobs(flaky_jobs, five_jobs, schedule, loop=loop)

    def what(run: JobSimulationResult) -> tuple[list[str], list[tuple[int, int]]]:
        # on asyncio, virtual time also counts the real time the run takes: on a busy
        # machine an event may read 0.1 s later, so compare what happened, in order
        events = [event.split("  ", 1)[1] for event in run.events]
        return events, [(run.job_ids.index(job_id), attempt) for job_id, attempt in run.starts]

    assert what(replayed) == what(result)
    assert len(result.starts) == 6


def test_a_cancel_naming_no_job_says_how_many_there_are() -> None:
    with pytest.raises(fa.ConfigurationError) as error:
        simulate_jobs(flaky_jobs, five_jobs, [CancelJob(job=5, at=0)])
    assert "CancelJob(job=5, at=0.0) names no job: the workload created 5 (jobs 0 to 4)" in str(
        error.value
    )


def test_simulate_refuses_a_cancel_of_a_job() -> None:
    with pytest.raises(fa.ConfigurationError) as error:
        simulate(counting_app(Counter()), 3, [CancelJob(job=0, at=1)])
    assert "CancelJob(job=0, at=1.0) cancels a job: run it with simulate_jobs" in str(error.value)


def test_jobs_factory_must_make_a_job_queue_on_the_given_backend() -> None:
    with pytest.raises(fa.ConfigurationError) as error:
        simulate_jobs(lambda backend: flaky_jobs(fa.MemoryBackend()), five_jobs)
    assert "jobs_factory must return a JobQueue on the backend it is given" in str(error.value)


@settings(max_examples=30, deadline=None, database=None)
@given(schedule=fault_schedules(jobs=3, max_faults=6))
def test_schedules_for_jobs_cancel_only_jobs_there_are(schedule: FaultSchedule) -> None:
    for fault in schedule.faults:
        if isinstance(fault, CancelJob):
            assert 0 <= fault.job < 3
        if isinstance(fault, RaiseInHandler | CrashBeforeSettle):
            assert 1 <= fault.nth <= 3


def test_a_cancel_of_a_job_has_a_repr_that_builds_it() -> None:
    fault = CancelJob(job=2, at=1.5)
    assert eval(repr(fault)) == fault
    assert FaultSchedule([fault]).timeline() == "      t=1.5s  CancelJob(job=2, at=1.5)"


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: CancelJob(job=-1, at=0), "CancelJob.job counts enqueued jobs from 0, got job=-1"),
        (lambda: CancelJob(job=0, at=-2), "CancelJob.at takes seconds >= 0, got -2"),
        (fault_schedules, "needs messages=n (for simulate) or jobs=n"),
        (lambda: fault_schedules(jobs=0), "jobs must be an int >= 1, got 0"),
        (lambda: fault_schedules(messages=3, kinds=(CancelJob,)), "CancelJob needs jobs=n"),
    ],
)
def test_bad_job_faults_are_refused_by_name(build: Callable[[], object], needle: str) -> None:
    with pytest.raises(fa.ConfigurationError) as error:
        build()
    assert needle in str(error.value)


@pytest.mark.anyio
async def test_a_memory_source_that_loses_its_connection_gives_its_deliveries_back() -> None:
    backend = fa.MemoryBackend()
    for n in range(3):
        await backend.publish("q", n)
    source = await backend.open_source("q", prefetch=2)
    first, second = await source.receive(2)
    first.handle.ack()
    source.lose_connection("the broker went away")
    assert not source.live
    with pytest.raises(fa.BackendError, match="the broker went away"):
        await source.receive(1)
    second.handle.ack()  # stale: not applied
    assert backend.queue_statistics("q").in_flight == 1
    await source.close()  # what the consumer actor does as it crashes
    stats = backend.queue_statistics("q")
    assert (stats.ready, stats.in_flight) == (2, 0)
    again = await backend.open_source("q", prefetch=2)
    assert [d.message.payload for d in await again.receive(2)] == [1, 2]
    source.lose_connection("twice")  # closed: nothing changes
    await again.close()


@pytest.mark.anyio
async def test_a_receiver_waiting_for_messages_wakes_when_the_connection_is_lost() -> None:
    backend = fa.MemoryBackend()
    source = await backend.open_source("q", prefetch=1)
    failed = anyio.Event()

    async def receive() -> None:
        with pytest.raises(fa.BackendError, match="lost"):
            await source.receive(1)
        failed.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(receive)
        await anyio.wait_all_tasks_blocked()
        source.lose_connection("lost")
        await failed.wait()
    await source.close()


# -- any supervision tree -----------------------------------------------------------------


class Tally(fa.Actor[int]):
    """Adds what it is told; its total starts over when it restarts."""

    def __init__(self) -> None:
        self.total = 0

    async def receive(self, message: int) -> int:
        self.total += message
        return self.total


def tally_tree(max_restarts: int = 3) -> Callable[[], fa.ChildSpec]:
    def factory() -> fa.ChildSpec:
        backoff = fa.Backoff(min_delay=1, max_delay=1, random_factor=0)
        return fa.Supervisor.spec(
            "tree",
            [fa.ChildSpec("tally", Tally, backoff=backoff)],
            max_restarts=max_restarts,
            within=10,
        )

    return factory


async def tell_every_second(system: fa.ActorSystem) -> None:
    for _ in range(5):
        await system.ref("tally").tell(1)
        await anyio.sleep(1)


@LOOPS
def test_a_tree_restarts_the_actor_that_crashed(loop: str) -> None:
    result = simulate_tree(
        tally_tree(), [CrashActor("tally", 1.5)], workload=tell_every_second, loop=loop
    )
    assert result.snapshot is not None
    (tally,) = result.snapshot.children
    assert (tally.path, tally.restarts, tally.state) == ("/tree/tally", 1, fa.ActorState.RUNNING)
    assert result.events == ("t=1.5s  tally crashes: CrashActor(path='tally', at=1.5)",)
    assert result.elapsed == pytest.approx(5, abs=0.1)


@LOOPS
def test_a_stop_ends_a_tree_run_and_later_faults_strike_nothing(loop: str) -> None:
    result = simulate_tree(
        tally_tree(),
        [StopSystem(2.5), CrashActor("tally", 3.5)],
        workload=tell_every_second,
        loop=loop,
    )
    assert result.snapshot is not None  # as the stop found it: running, never crashed
    (tally,) = result.snapshot.children
    assert (tally.state, tally.restarts) == (fa.ActorState.RUNNING, 0)
    assert result.events == ("t=2.5s  the system stops: StopSystem(at=2.5)",)
    assert result.elapsed == pytest.approx(2.5, abs=0.1)


def test_crashes_faster_than_the_intensity_allows_fail_the_tree_and_shrink() -> None:
    @settings(max_examples=40, deadline=None, derandomize=True, database=None)
    @given(schedule=fault_schedules(paths=["tally"], messages=1, kinds=(CrashActor,)))
    def check(schedule: FaultSchedule) -> None:
        simulate_tree(tally_tree(max_restarts=1), schedule, workload=tell_every_second)

    with pytest.raises(SimulationFailed) as failed:
        check()
    # two crashes within 10 s: more than max_restarts=1, so the root gives up
    shrunk = failed.value.schedule
    assert len(shrunk.faults) == 2
    assert all(isinstance(f, CrashActor) and f.path == "tally" for f in shrunk.faults)
    assert "the system failed" in str(failed.value)


def test_a_tree_takes_only_timed_faults() -> None:
    with pytest.raises(fa.ConfigurationError) as error:
        simulate_tree(tally_tree(), [RaiseInHandler(1)])
    assert "RaiseInHandler(nth=1) needs messages or jobs" in str(error.value)
    with pytest.raises(fa.ConfigurationError) as error:
        simulate_tree(tally_tree(), [CrashActor("tallyy", 1)])
    assert "names no actor of the app; its actors are: /tree, /tree/tally" in str(error.value)


def test_a_workload_that_raises_fails_the_run() -> None:
    async def asks_nobody(system: fa.ActorSystem) -> None:
        system.ref("nobody")

    with pytest.raises(SimulationFailed) as failed:
        simulate_tree(tally_tree(), workload=asks_nobody)
    assert "the workload raised ActorNotFound" in str(failed.value)
