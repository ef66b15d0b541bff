"""The topology of a pipeline, computed from its options without running anything.

Every child's name, where it lives and who its neighbours are, for each shape: no
stages, each stage alone, all of them; on the memory backend and on a broker whose
consumer shares a connection owned by an actor (under ``intake``). Outcomes go back
only through the stages that handle them: the others (the rate limiter, the batcher,
a user stage that only looks at deliveries) are left out of the way back.
"""

from __future__ import annotations

import functools

import pytest

import foxactors as fa
from foxactors.pipeline._options import PipelineOptions
from foxactors.pipeline._topology import Topology, plan


async def handle(message: fa.Message) -> None:
    pass


async def handle_many(messages: list[fa.Message]) -> None:
    pass


class Tagging(fa.Stage):
    """Handles outcomes."""

    async def on_outcome(self, outcome: fa.Outcome) -> None:
        await self.reply(outcome)


class Passing(fa.Stage):
    """Only looks at deliveries."""

    async def on_delivery(self, delivery: fa.Delivery) -> None:
        await self.forward(delivery)


def make_passing() -> fa.Stage:
    return Passing()


class Intercepting(fa.Stage):
    """Sees everything in `receive`, outcomes included, without overriding `on_outcome`."""

    async def receive(self, message: object) -> object:
        return await super().receive(message)


class Replying(fa.Stage):
    """Overrides `reply`, which outcomes passing through call."""

    async def reply(self, outcome: fa.Outcome) -> None:
        await super().reply(outcome)


def app() -> fa.WorkerApp:
    return fa.WorkerApp("jobs").add_worker(handle).without_retry()


def stages(topology: Topology) -> list[tuple[str, str, str]]:
    """Each stage as (name, downstream, upstream), outermost first."""
    return [(s.name, s.downstream, s.upstream) for s in topology.stages]


def test_no_stages_the_consumer_and_the_pool_are_neighbours() -> None:
    topology = plan(app().options, shared_connection=False)
    assert topology.consumer == "consumer"
    assert topology.consumer_downstream == "../pool"
    assert stages(topology) == []
    assert topology.pool_upstream == "../consumer"
    assert topology.route == ("pool", "consumer")
    assert (topology.connection, topology.dead_letters) == (None, None)


HANDLING = [
    (lambda a: a.with_retry(), "retry"),
    (lambda a: a.with_circuit_breaker(), "breaker"),
    (lambda a: a.with_middleware(Tagging, name="tagging"), "tagging"),
    (lambda a: a.with_middleware(functools.partial(Tagging), name="tagging"), "tagging"),
    (lambda a: a.with_middleware(make_passing, name="function"), "function"),
    (lambda a: a.with_middleware(Intercepting, name="intercepting"), "intercepting"),
    (lambda a: a.with_middleware(Replying, name="replying"), "replying"),
]
PASSING = [
    (lambda a: a.with_rate_limit(10), "rate-limit"),
    (lambda a: a.with_middleware(Passing, name="passing"), "passing"),
    (lambda a: a.with_middleware(functools.partial(Passing), name="passing"), "passing"),
    (lambda a: a.with_middleware(functools.partial(functools.partial(Passing)), name="p"), "p"),
]


@pytest.mark.parametrize(
    ("configure", "name"),
    HANDLING,
    ids=[
        "retry",
        "breaker",
        "class",
        "partial",
        "any callable: assumed to",
        "overrides receive",
        "overrides reply",
    ],
)
def test_a_stage_that_handles_outcomes_is_on_the_way_back(configure: object, name: str) -> None:
    options = configure(app()).options  # type: ignore[operator]
    topology = plan(options, shared_connection=False)
    assert topology.consumer_downstream == f"../{name}"
    assert stages(topology) == [(name, "../pool", "../consumer")]
    assert topology.stages[0].handles_outcomes
    assert topology.pool_upstream == f"../{name}"
    assert topology.route == ("pool", name, "consumer")


@pytest.mark.parametrize(
    ("configure", "name"),
    PASSING,
    ids=["rate limit", "class", "partial", "partial of a partial"],
)
def test_a_stage_that_only_looks_at_deliveries_is_left_off_the_way_back(
    configure: object, name: str
) -> None:
    options = configure(app()).options  # type: ignore[operator]
    topology = plan(options, shared_connection=False)
    assert topology.consumer_downstream == f"../{name}"
    assert stages(topology) == [(name, "../pool", "../consumer")]  # its own replies
    assert not topology.stages[0].handles_outcomes
    assert topology.pool_upstream == "../consumer"  # outcomes skip it
    assert topology.route == ("pool", "consumer")


def test_a_batch_worker_has_a_batch_stage_next_to_the_pool_that_outcomes_skip() -> None:
    options = fa.WorkerApp().add_batch_worker(handle_many).without_retry().options
    topology = plan(options, shared_connection=False)
    assert stages(topology) == [("batch", "../pool", "../consumer")]
    assert topology.pool_upstream == "../consumer"


def all_stages() -> PipelineOptions:
    return (
        fa.WorkerApp("jobs")
        .add_batch_worker(handle_many)
        .with_middleware(Tagging, name="tagging")
        .with_middleware(Passing, name="passing")
        .with_middleware(functools.partial(Tagging), name="second")
        .with_retry()
        .with_rate_limit(10)
        .with_circuit_breaker()
        .with_dead_letter_sink(fa.MemorySink())
        .options
    )


def test_all_stages_in_order_user_stages_outermost_the_batch_innermost() -> None:
    topology = plan(all_stages(), shared_connection=False)
    assert topology.consumer_downstream == "../tagging"
    assert stages(topology) == [
        ("tagging", "../passing", "../consumer"),
        ("passing", "../second", "../tagging"),
        ("second", "../retry", "../tagging"),  # skips the passing stage
        ("retry", "../rate-limit", "../second"),
        ("rate-limit", "../breaker", "../retry"),
        ("breaker", "../batch", "../retry"),  # skips the rate limiter
        ("batch", "../pool", "../breaker"),
    ]
    assert topology.pool_upstream == "../breaker"  # skips the batcher
    assert topology.route == ("pool", "breaker", "retry", "second", "tagging", "consumer")
    assert topology.dead_letters == "../dead-letters"


def test_on_a_broker_with_a_shared_connection_the_consumer_lives_under_intake() -> None:
    topology = plan(app().options, shared_connection=True)
    assert topology.consumer == "intake/consumer"
    assert topology.consumer_downstream == "../../pool"
    assert topology.pool_upstream == "../intake/consumer"
    assert topology.connection == "../connection"
    assert topology.route == ("pool", "intake/consumer")

    topology = plan(all_stages(), shared_connection=True)
    assert topology.consumer_downstream == "../../tagging"
    assert topology.stages[0].upstream == "../intake/consumer"
    assert topology.stages[2].upstream == "../tagging"
    assert topology.route[-1] == "intake/consumer"
    assert topology.dead_letters == "../../dead-letters"

    passing = app().with_rate_limit(10).options
    assert plan(passing, shared_connection=True).pool_upstream == "../intake/consumer"


def test_the_topology_is_a_frozen_value() -> None:
    options = all_stages()
    assert plan(options, shared_connection=True) == plan(options, shared_connection=True)
    with pytest.raises(AttributeError):
        plan(options, shared_connection=False).consumer = "x"  # type: ignore[misc]
