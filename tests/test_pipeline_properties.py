"""Property tests of the pipeline: random apps and workloads, run by `simulate` under faults.

`foxactors.testing.simulate` runs the app on a memory backend in virtual time under a
drawn `FaultSchedule` (crashed actors, acks lost with their consumer, handlers that
raise, hang or are slow, redeliveries, lost connections, a stop at any time) and
checks its built-in invariants: every published message ends exactly one way
(acked, dead-lettered with a reason, or still queued after a stop), none is settled
twice, no delivery is left in flight, handlers never see an attempt above
``max_retries + 1``, unsettled deliveries never exceed the prefetch, the system did
not fail and no task outlived it. On top of those, whatever the pool strategy,
concurrency, retry policy and worker recycling: an acked message was handled
successfully, and a run that was not stopped leaves nothing queued.

What the simulator cannot inject stays in the workload: a handler raising a
`BaseException` that is not an `Exception`, and a middleware stage that crashes on
the first k deliveries of a given message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import ClassVar

import pytest
from hypothesis import assume, event, given, settings
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
    SimulationResult,
    SlowHandler,
    StopSystem,
    fault_schedules,
    simulate,
)

MESSAGES = 12
# not "crashing": a fault strikes only a running actor, and that stage crashes itself
# (the two tests below crash it in the same instant)
PATHS = ["pool", "pool/worker-1", "consumer", "retry"]
KINDS = (
    CrashActor,
    CrashBeforeSettle,
    RaiseInHandler,
    HangHandler,
    SlowHandler,
    Redeliver,
    LoseConnection,
    StopSystem,
)
# a whole run costs milliseconds of real time: the profile's max_examples (more under
# CI) stays within a few seconds per test
RUNS = settings(deadline=None)

behaviours = st.one_of(
    st.just(("ok", 0)),
    st.just(("odd", 0)),  # raises a BaseException that is not an Exception
    st.tuples(st.just("crash"), st.integers(1, 2)),  # crashes the stage k times
)


class Odd(BaseException):
    pass


class CrashingStage(fa.Stage):
    """Crashes on the first k deliveries of messages marked "crash" (k in the payload)."""

    crashes: ClassVar[Counter[int]] = Counter()

    async def on_delivery(self, delivery: fa.Delivery) -> None:
        kind, k, n = delivery.message.payload
        if kind == "crash" and CrashingStage.crashes[n] < k:
            CrashingStage.crashes[n] += 1
            raise RuntimeError("stage bug")
        await self.forward(delivery)


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
@RUNS
@given(
    work=st.lists(behaviours, min_size=1, max_size=MESSAGES),
    schedule=fault_schedules(messages=MESSAGES, paths=PATHS, kinds=KINDS),
    concurrency=st.integers(1, 4),
    prefetch=st.integers(1, 8),
    max_retries=st.integers(0, 3),
    strategy=st.sampled_from(["round_robin", "random", "least_loaded"]),
    recycle_after=st.one_of(st.none(), st.integers(1, 5)),  # messages per worker life
    memory_high=st.booleans(),  # then a worker is recycled every half second
)
def test_no_message_is_lost_or_settled_twice(
    loop: str,
    work: list[tuple[str, int]],
    schedule: FaultSchedule,
    concurrency: int,
    prefetch: int,
    max_retries: int,
    strategy: str,
    recycle_after: int | None,
    memory_high: bool,
) -> None:
    # more crashes than the supervisor allows (10 within 30 s) take the pipeline down
    # by design: that is escalation, not this property. Each fault restarts at most
    # one actor (a lost ack or connection restarts the consumer)
    crashes = sum(k for kind, k in work if kind == "crash")
    assume(crashes + len(schedule.faults) <= 9)
    # two crashes of one actor at one instant: a warning on trio (see PATHS)
    struck = [(f.path, f.at) for f in schedule.faults if isinstance(f, CrashActor)]
    assume(len(set(struck)) == len(struck))
    CrashingStage.crashes = Counter()
    successes: Counter[int] = Counter()

    async def handle(message: fa.Message) -> None:
        kind, _, n = message.payload
        if kind == "odd":
            raise Odd("odd")
        successes[n] += 1

    def factory() -> fa.WorkerApp:
        app = (
            fa.WorkerApp("app")
            .add_worker(handle)
            .with_timeout(5)
            .with_concurrency_limit(concurrency)
            .with_prefetch(prefetch)
            .with_strategy(strategy)
            .with_retry(max_retries=max_retries, initial_backoff=1, max_backoff=4)
            .with_middleware(CrashingStage, name="crashing")
            .with_drain_timeout(2)
        )
        if recycle_after is not None or memory_high:
            app = app.with_worker_recycling(
                recycle_after,
                max_memory_mb=1 if memory_high else None,
                check_interval=0.5,
                measure=lambda: 2 * 2**20,
            )
        return app

    stopped = any(isinstance(f, StopSystem) for f in schedule.faults)

    def acked_only_after_success(result: SimulationResult) -> None:
        number = {message_id: n for n, message_id in enumerate(result.published)}
        unearned = [number[i] for i in result.acked if not successes[number[i]]]
        assert not unearned, f"acked without a successful run: payloads {unearned}"

    def nothing_left_unless_stopped(result: SimulationResult) -> None:
        assert stopped or result.remaining == 0, f"{result.remaining} left queued"

    payloads = [[kind, k, n] for n, (kind, k) in enumerate(work)]
    result = simulate(
        factory,
        payloads,
        schedule,
        invariants=[acked_only_after_success, nothing_left_unless_stopped],
        loop=loop,
    )
    # the odd ones never succeed: dead-lettered, or still queued after a stop
    odd = {i for i, (kind, _) in zip(result.published, work, strict=True) if kind == "odd"}
    assert not odd & set(result.acked)
    event(f"stopped with messages queued={result.remaining > 0}")
    event(f"handled more than once={any(n > 1 for n in successes.values())}")
    event(f"dead letters={min(len(result.dead_letters), 3)}")


def _counting_app(seen: Counter[int]) -> Callable[[], fa.WorkerApp]:
    def factory() -> fa.WorkerApp:
        async def handle(message: fa.Message) -> None:
            seen[message.payload] += 1

        return (
            fa.WorkerApp("app")
            .add_worker(handle)
            .with_timeout(5)
            .with_prefetch(4)
            .with_concurrency_limit(2)
            .with_retry(max_retries=2, initial_backoff=1, max_backoff=4)
        )

    return factory


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
@RUNS
@given(schedule=fault_schedules(messages=8, paths=PATHS, kinds=KINDS[:-1]))
def test_delivery_is_at_least_once_without_a_stop(loop: str, schedule: FaultSchedule) -> None:
    """Whatever fails short of a stop, every payload is handled, and acked or dead."""
    seen: Counter[int] = Counter()
    result = simulate(_counting_app(seen), 8, schedule, loop=loop)
    assert result.remaining == 0
    assert len(result.acked) + len(result.dead_letters) == 8
    # each payload was handled to success, or ran out of attempts to faults
    dead = {result.published.index(letter.id) for letter in result.dead_letters}
    assert set(seen) | dead == set(range(8))
    assert dead or set(seen) == set(range(8))


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_a_pool_crash_mid_handler_does_not_strand_the_delivery(loop: str) -> None:
    # the handler is still running (3 s) when the pool crashes at 0.1 s; the pool
    # restarts, but the message is neither retried nor handled again: the run stalls
    # until the horizon, and the message is left queued only because the stop
    # returned it
    def handled(result: SimulationResult) -> None:
        assert result.remaining == 0, f"{result.remaining} left queued: {result.events}"

    simulate(
        _counting_app(Counter()),
        1,
        [CrashActor("pool", 0.1), SlowHandler(1, 3)],
        invariants=[handled],
        loop=loop,
        horizon=60,
    )


def _staged_app() -> fa.WorkerApp:
    async def handle(message: fa.Message) -> None:
        pass

    return (
        fa.WorkerApp("app")
        .add_worker(handle)
        .with_concurrency_limit(1)
        .with_prefetch(1)
        .with_middleware(CrashingStage, name="crashing")
    )


def test_crashes_of_one_actor_in_one_instant_do_not_fail_the_system() -> None:
    CrashingStage.crashes = Counter()
    simulate(_staged_app, [["ok", 0, 0]], [CrashActor("pool/worker-1", 0)] * 4, loop="trio")


def test_a_crash_in_the_instant_a_stage_crashes_does_not_fail_the_system() -> None:
    CrashingStage.crashes = Counter()

    # the stage crashes on its first delivery, at t=0, as the fault strikes it
    simulate(_staged_app, [["crash", 1, 0]], [CrashActor("crashing", 0)], loop="trio")
