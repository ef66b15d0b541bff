"""The simulator on batch handlers and `Worker` classes: the faults strike them too.

A counted fault strikes the nth call of a batch handler, that is the whole batch;
each message of the batch counts a call. A `Worker` class or instance is wrapped
around its ``process``, so the faults strike it as they strike a function.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import foxactors as fa
from foxactors.testing import (
    CrashActor,
    CrashBeforeSettle,
    FaultSchedule,
    HangHandler,
    LoseConnection,
    RaiseInHandler,
    Redeliver,
    SlowHandler,
    StopSystem,
    fault_schedules,
    simulate,
)

LOOPS = pytest.mark.parametrize("loop", ["asyncio", "trio"])
PATHS = ["pool", "consumer", "retry", "batch", "pool/worker-1"]
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
FAST = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def batch_app(
    batches: list[list[int]], *, timeout: float | None = 20, fail: int | None = None
) -> Callable[[], fa.WorkerApp]:
    """An app of batches of up to 3, each handled batch recorded as its payloads.

    ``fail``: the payload the handler reports failed, each time it sees it.
    """

    def factory() -> fa.WorkerApp:
        async def handle(messages: list[fa.Message]) -> Mapping[str, BaseException]:
            batches.append([m.payload for m in messages])
            return {m.id: ValueError("refused") for m in messages if m.payload == fail}

        return (
            fa.WorkerApp("app")
            .add_batch_worker(handle, size=3, interval=1, timeout=timeout)
            .with_concurrency_limit(2)
            .with_retry(max_retries=2, initial_backoff=1, max_backoff=4)
        )

    return factory


@LOOPS
@FAST
@given(schedule=fault_schedules(paths=PATHS, messages=8, kinds=ALL_KINDS))
def test_a_batch_app_keeps_the_invariants_under_every_kind_of_fault(
    loop: str, schedule: FaultSchedule
) -> None:
    batches: list[list[int]] = []
    result = simulate(batch_app(batches), 8, schedule, loop=loop)
    assert len(result.acked) + len(result.dead_letters) + result.remaining == 8
    assert all(len(batch) <= 3 for batch in batches)
    # each message of a batch counts a call of its own: every run of the handler is
    # counted (and calls a fault struck before the handler ran, or cut short, too)
    handled = Counter(payload for batch in batches for payload in batch)
    calls = Counter({result.published.index(i): n for i, n in result.calls.items()})
    assert handled <= calls
    assert all(result.calls[i] >= 1 for i in result.acked)
    if not any(isinstance(f, StopSystem) for f in schedule.faults):
        assert result.remaining == 0


@st.composite
def crash_while_a_batch_runs(draw: st.DrawFn) -> FaultSchedule:
    """A slow batch, an actor of the pipeline crashing while it runs, and maybe more."""
    nth, seconds = draw(st.integers(1, 3)), draw(st.integers(1, 10))
    at = draw(st.integers(0, seconds * 10 - 1)) / 10
    path = draw(st.sampled_from(["pool", "pool/worker-1", "pool/worker-2", "consumer", "batch"]))
    more = draw(fault_schedules(paths=PATHS, messages=8, kinds=ALL_KINDS, max_faults=2))
    return FaultSchedule([SlowHandler(nth, seconds), CrashActor(path, at), *more.faults])


@LOOPS
@settings(FAST, max_examples=25)  # cheap runs; more finds the stranded batch more often
@given(schedule=crash_while_a_batch_runs())
def test_a_crash_while_a_batch_runs_strands_none_of_it(loop: str, schedule: FaultSchedule) -> None:
    # a crash of the pool used to give back only the first delivery of a running
    # batch: the rest stayed in flight, their credit with them
    result = simulate(batch_app([]), 8, schedule, loop=loop)
    if not any(isinstance(f, StopSystem) for f in schedule.faults):
        assert result.remaining == 0  # acked, or dead-lettered (out of attempts)


@LOOPS
def test_a_raise_strikes_the_whole_batch_and_each_message_is_retried(loop: str) -> None:
    batches: list[list[int]] = []
    result = simulate(batch_app(batches), 6, [RaiseInHandler(1)], loop=loop)
    assert len(result.acked) == 6
    (struck,) = result.events
    # the whole batch: three messages in one call
    assert re.fullmatch(r"t=0\.0s  call #1 \((message #\d, ){2}message #\d\) raises: .*", struck)
    # the raise ran no handler; each of the three came back once and ran on its retry
    assert sorted(p for batch in batches for p in batch) == list(range(6))
    assert sorted(result.calls.values()) == [1, 1, 1, 2, 2, 2]


def payloads(event: str) -> list[int]:
    """The payloads an event names (``message #n`` is payload n here)."""
    return [int(n) for n in re.findall(r"message #(\d+)", event)]


@LOOPS
def test_a_crash_before_the_settlement_loses_the_acks_of_the_whole_batch(loop: str) -> None:
    batches: list[list[int]] = []
    result = simulate(batch_app(batches), 6, [CrashBeforeSettle(1)], loop=loop)
    assert len(result.acked) == 6  # each acked once, in the end
    first = sorted(batches[0])
    assert len(first) == 3
    lost = sorted(p for event in result.events for p in payloads(event))
    assert lost == first  # the ack of each message of the struck batch was lost
    handled = Counter(p for batch in batches for p in batch)
    assert all(handled[p] == 2 for p in first)  # so each came back and ran again


@LOOPS
def test_a_redelivery_strikes_every_message_of_the_batch(loop: str) -> None:
    batches: list[list[int]] = []
    result = simulate(batch_app(batches), 6, [Redeliver(2)], loop=loop)
    assert len(result.acked) == 6
    second = sorted(batches[1])
    assert sorted(p for event in result.events for p in payloads(event)) == second
    assert all("the broker delivers message #" in event for event in result.events)
    handled = Counter(p for batch in batches for p in batch)
    assert sorted(handled.elements()) == sorted([*range(6), *second])


@LOOPS
def test_a_failure_the_batch_reports_is_not_doomed_by_its_fault(loop: str) -> None:
    # payload 1 always fails: its ack never comes, so the lost ack strikes only the
    # others of the batch; 1 is retried, then dead-lettered with its reason
    batches: list[list[int]] = []
    result = simulate(batch_app(batches, fail=1), 3, [CrashBeforeSettle(1)], loop=loop)
    assert sorted(batches[0]) == [0, 1, 2]
    assert sorted(p for event in result.events for p in payloads(event)) == [0, 2]
    (letter,) = result.dead_letters
    assert letter.id == result.published[1]
    assert "ValueError: refused" in letter.reason
    assert result.calls[result.published[1]] == 3  # max_retries=2: three attempts


@LOOPS
def test_a_crash_of_the_pool_during_a_batch_gives_the_whole_batch_back(loop: str) -> None:
    batches: list[list[int]] = []
    schedule = FaultSchedule([SlowHandler(1, 2), CrashActor("pool", 0.5)])
    result = simulate(batch_app(batches), 6, schedule, loop=loop)
    assert len(result.acked) == 6
    handled = Counter(p for batch in batches for p in batch)
    struck = payloads(result.events[0])
    assert len(struck) == 3
    assert all(result.calls[result.published[p]] == 2 for p in struck)  # each ran again
    assert sorted(handled) == list(range(6))


@LOOPS
def test_a_hung_batch_times_out_by_the_apps_default_timeout(loop: str) -> None:
    def factory() -> fa.WorkerApp:
        async def handle(messages: list[fa.Message]) -> None:
            pass

        return (
            fa.WorkerApp("app")
            .add_batch_worker(handle, size=3, interval=1)
            .with_timeout(5)
            .with_retry(max_retries=2, initial_backoff=1, max_backoff=4)
        )

    result = simulate(factory, 3, [HangHandler(1)], loop=loop, horizon=60)
    assert len(result.acked) == 3  # the hang timed out after 5 s and the batch ran again


# -- Worker classes and instances ---------------------------------------------------------


class Recorder:
    """A `Worker` class: each instance records itself, and every payload it processed."""

    made: ClassVar[list[Recorder]] = []
    timeout = 5.0

    def __init__(self) -> None:
        self.id = "recorder"
        self.seen: list[int] = []
        Recorder.made.append(self)

    async def process(self, message: fa.Message) -> None:
        self.seen.append(message.payload)


def recorder_app(worker: object) -> Callable[[], fa.WorkerApp]:
    def factory() -> fa.WorkerApp:
        return (
            fa.WorkerApp("app")
            .add_worker(worker)  # type: ignore[arg-type] # a class or an instance
            .with_concurrency_limit(2)
            .with_retry(max_retries=2, initial_backoff=1, max_backoff=4)
        )

    return factory


@LOOPS
def test_faults_strike_a_worker_class_and_each_worker_still_gets_its_own_instance(
    loop: str,
) -> None:
    Recorder.made.clear()
    schedule = FaultSchedule([RaiseInHandler(1), HangHandler(2), CrashBeforeSettle(3)])
    result = simulate(recorder_app(Recorder), 5, schedule, loop=loop)
    assert len(result.acked) == 5
    assert [e.split(": ")[-1] for e in result.events] == [
        "RaiseInHandler(nth=1)",
        "HangHandler(nth=2)",
        "CrashBeforeSettle(nth=3)",
    ]
    assert all(isinstance(w, Recorder) for w in Recorder.made)
    assert len(Recorder.made) == 2  # one per worker actor, none shared
    seen = Counter(p for w in Recorder.made for p in w.seen)
    assert sorted(seen) == list(range(5))
    # the raise and the hang (timed out by the class's own 5 s) ran no process()
    assert sum(result.calls.values()) == sum(seen.values()) + 2
    assert result.elapsed >= 5


@LOOPS
def test_faults_strike_a_shared_worker_instance(loop: str) -> None:
    Recorder.made.clear()
    shared = Recorder()
    result = simulate(recorder_app(shared), 4, [RaiseInHandler(2), Redeliver(3)], loop=loop)
    assert len(result.acked) == 4
    assert Recorder.made == [shared]
    assert sorted(shared.seen) == sorted([*range(4), *payloads(result.events[1])])
    assert sum(result.calls.values()) == len(shared.seen) + 1


@LOOPS
def test_an_app_without_a_handler_is_refused_as_build_refuses_it(loop: str) -> None:
    with pytest.raises(fa.ConfigurationError) as error:
        simulate(lambda: fa.WorkerApp("app"), 1, loop=loop)
    assert "no handler: call add_worker(), register() or add_batch_worker() first" in str(
        error.value
    )
