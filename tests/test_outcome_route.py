"""Outcomes go back only through the stages that handle them.

A stage that does not override `Stage.on_outcome` (the rate limiter, the batcher, a
user stage that only looks at deliveries) is left off the way back: the actor below
it sends outcomes straight to the nearest stage above that handles them, or to the
consumer. Every stage that handles outcomes still sees each one; one that was taken
for a pass-through when the pipeline was built, but handles outcomes once made,
still sees each one; a pass-through stage that crashes still returns what it holds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import anyio
import pytest

import foxactors as fa
from foxactors.pipeline._topology import OutcomeRoute, plan

pytestmark = pytest.mark.anyio

QUEUE = "jobs"


class Recording(fa.Stage):
    """Handles outcomes: records each one and passes it on."""

    def __init__(self, seen: list[tuple[int, str]]) -> None:
        self.seen = seen

    async def on_outcome(self, outcome: fa.Outcome) -> None:
        self.seen.append((outcome.delivery.message.payload, outcome.kind.value))
        await self.reply(outcome)


class Passing(fa.Stage):
    """Only looks at deliveries."""

    def __init__(self, delivered: list[int]) -> None:
        self.delivered = delivered

    async def on_delivery(self, delivery: fa.Delivery) -> None:
        self.delivered.append(delivery.message.payload)
        await self.forward(delivery)


@pytest.fixture
def passed_through(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Outcomes that reached `Stage.on_outcome` itself: (stage name, payload).

    Only a stage that does not override it calls it, so any entry is an outcome that
    went through a pass-through stage.
    """
    reached: list[tuple[str, int]] = []
    base = fa.Stage.on_outcome

    async def on_outcome(self: fa.Stage, outcome: fa.Outcome) -> None:
        reached.append((self.path.rsplit("/", 1)[-1], outcome.delivery.message.payload))
        await base(self, outcome)

    monkeypatch.setattr(fa.Stage, "on_outcome", on_outcome)
    return reached


async def fail_odd(message: fa.Message) -> None:
    if message.payload % 2:
        raise ValueError("odd")


def expected(count: int) -> list[tuple[int, str]]:
    return [(n, "failed" if n % 2 else "succeeded") for n in range(count)]


async def run(app: fa.WorkerApp, backend: fa.MemoryBackend, count: int) -> None:
    for n in range(count):
        await backend.publish(QUEUE, n)
    async with fa.open_system(app.build(backend, QUEUE)):
        with anyio.fail_after(3600):
            await backend.join(QUEUE)


async def test_stages_above_and_below_a_pass_through_one_see_every_outcome(
    passed_through: list[tuple[str, int]],
) -> None:
    backend = fa.MemoryBackend()
    above: list[tuple[int, str]] = []
    below: list[tuple[int, str]] = []
    delivered: list[int] = []
    app = (
        fa.WorkerApp()
        .add_worker(fail_odd)
        .without_retry()
        .with_middleware(functools.partial(Recording, above), name="above")
        .with_middleware(functools.partial(Passing, delivered), name="middle")
        .with_middleware(functools.partial(Recording, below), name="below")
        .with_rate_limit(1000, burst=100)  # a built-in pass-through, next to the pool
        .with_concurrency_limit(3)
    )
    topology = plan(app.options, shared_connection=False)
    assert [s.name for s in topology.stages if not s.handles_outcomes] == ["middle", "rate-limit"]
    await run(app, backend, 20)
    assert sorted(delivered) == list(range(20))  # deliveries still pass through it
    assert sorted(below) == expected(20)  # each outcome, once
    assert sorted(above) == expected(20)
    assert passed_through == []  # no outcome went through "middle" or "rate-limit"
    assert len(backend.dead_letters(QUEUE)) == 10


async def test_a_batcher_and_a_rate_limiter_cost_no_hop_on_the_way_back(
    passed_through: list[tuple[str, int]],
) -> None:
    backend = fa.MemoryBackend()
    seen: list[tuple[int, str]] = []

    async def handle(messages: list[fa.Message]) -> dict[str, BaseException]:
        return {m.id: ValueError("odd") for m in messages if m.payload % 2}

    app = (
        fa.WorkerApp()
        .add_batch_worker(handle, size=4, interval=0.1)
        .with_middleware(functools.partial(Recording, seen), name="recording")
        .with_retry(max_retries=0)
        .with_rate_limit(1000, burst=100)
    )
    await run(app, backend, 12)
    assert sorted(seen) == [(n, "dead_letter" if n % 2 else "succeeded") for n in range(12)]
    assert passed_through == []


class Disguised(fa.Stage):
    """Looks like a pass-through stage, but its instances handle outcomes."""

    def __init__(self, seen: list[tuple[int, str]]) -> None:
        self.seen = seen
        self.on_outcome = self._record  # type: ignore[method-assign]

    async def _record(self, outcome: fa.Outcome) -> None:
        self.seen.append((outcome.delivery.message.payload, outcome.kind.value))
        await self.reply(outcome)


class Shapeshifter(fa.Stage):
    """Looks like a pass-through stage, but makes an instance of a class that is not."""

    def __new__(cls, seen: list[tuple[int, str]]) -> Shapeshifter:
        return super().__new__(RecordingShapeshifter)

    def __init__(self, seen: list[tuple[int, str]]) -> None:
        self.seen = seen


class RecordingShapeshifter(Shapeshifter):
    async def on_outcome(self, outcome: fa.Outcome) -> None:
        self.seen.append((outcome.delivery.message.payload, outcome.kind.value))
        await self.reply(outcome)


@pytest.mark.parametrize("disguised", [Disguised, Shapeshifter])
async def test_a_stage_taken_for_a_pass_through_that_handles_outcomes_sees_every_one(
    disguised: Callable[[list[tuple[int, str]]], fa.Stage],
) -> None:
    backend = fa.MemoryBackend()
    above: list[tuple[int, str]] = []
    seen: list[tuple[int, str]] = []
    app = (
        fa.WorkerApp()
        .add_worker(fail_odd)
        .without_retry()
        .with_middleware(functools.partial(Recording, above), name="above")
        .with_middleware(functools.partial(disguised, seen), name="disguised")
        .with_concurrency_limit(2)
    )
    (_, place) = plan(app.options, shared_connection=False).stages
    assert not place.handles_outcomes  # taken for a pass-through when built
    await run(app, backend, 10)
    assert sorted(seen) == expected(10)  # and yet it saw every outcome
    assert sorted(above) == expected(10)


class CrashesOnce(fa.Stage):
    """A pass-through stage with a bug: crashes on payload 3, the first time only."""

    def __init__(self, crashed: list[int]) -> None:
        self.crashed = crashed

    async def on_delivery(self, delivery: fa.Delivery) -> None:
        if delivery.message.payload == 3 and not self.crashed:
            self.crashed.append(3)
            raise RuntimeError("stage bug")
        await self.forward(delivery)


async def test_a_pass_through_stage_that_crashes_returns_what_it_holds(
    passed_through: list[tuple[str, int]],
) -> None:
    backend = fa.MemoryBackend()
    above: list[tuple[int, str]] = []
    crashed: list[int] = []
    handled: list[tuple[int, int]] = []

    async def handle(message: fa.Message) -> None:
        handled.append((message.payload, message.attempt))

    app = (
        fa.WorkerApp()
        .add_worker(handle)
        .with_middleware(functools.partial(Recording, above), name="above")
        .with_middleware(functools.partial(CrashesOnce, crashed), name="buggy")
    )
    for n in range(7):  # pulled as one run: the crash returns all of it
        await backend.publish(QUEUE, n)
    async with fa.open_system(app.build(backend, QUEUE)):
        await backend.join(QUEUE)
    assert crashed == [3]
    returned = sorted(n for n, kind in above if kind == "requeue")
    assert 3 in returned  # the stage above saw what the crash returned
    assert sorted(n for n, _ in handled) == list(range(7))  # each handled once
    assert all(attempt == 2 for n, attempt in handled if n in returned)
    assert backend.queue_statistics(QUEUE).dead == 0
    assert passed_through == []


async def test_a_crashed_stage_returns_its_outcomes_to_where_they_go() -> None:
    """Outcomes in hand when a stage crashes go on, to its place on the way back."""
    backend = fa.MemoryBackend()
    above: list[tuple[int, str]] = []

    crashed: list[int] = []

    class CrashesOnOutcome(Recording):
        async def on_outcome(self, outcome: fa.Outcome) -> None:
            if outcome.delivery.message.payload == 1 and not crashed:
                crashed.append(1)
                raise RuntimeError("stage bug")
            await super().on_outcome(outcome)

    crashing: list[tuple[int, str]] = []
    app = (
        fa.WorkerApp()
        .add_worker(fail_odd)
        .without_retry()
        .with_middleware(functools.partial(Recording, above), name="above")
        .with_middleware(functools.partial(Passing, []), name="middle")
        .with_middleware(functools.partial(CrashesOnOutcome, crashing), name="crashing")
        .with_concurrency_limit(1)
    )
    await run(app, backend, 3)
    assert crashed == [1]
    assert (1, "failed") not in crashing
    assert sorted(above) == expected(3)  # the one in hand went on unchanged
    assert len(backend.dead_letters(QUEUE)) == 1


def test_the_route_is_fixed_once_outcomes_flow() -> None:
    """A stage found to handle outcomes after the way back was taken is refused."""
    app = (
        fa.WorkerApp()
        .add_worker(fail_odd)
        .with_middleware(functools.partial(Disguised, []), name="disguised")
    )
    topology = plan(app.options, shared_connection=False)
    route = OutcomeRoute(topology)
    assert route.upstream("pool") == "../retry"
    with pytest.raises(fa.ConfigurationError, match="'disguised' handles outcomes"):
        route.found_handler("disguised")
    route = OutcomeRoute(topology)
    route.found_handler("disguised")
    assert route.upstream("retry") == "../disguised"
    route.found_handler("disguised")  # known: nothing changes
    assert route.upstream("pool") == "../retry"
