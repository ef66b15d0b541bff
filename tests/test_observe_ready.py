"""Readiness from a reading: a lost connection says no before the consumer crashes.

The broker tests (test_observe_brokers.py) cut a real network; these pin the two
signals each on its own, which a real cut shows only for a moment: the consumer's
source failed while its pull task has not yet raised, and the connection actor
gone (restarting) while the consumer still runs.
"""

from __future__ import annotations

import anyio
import attrs
import pytest

import foxactors as fa
from foxactors._lifecycle import ActorState
from foxactors._snapshot import ActorSnapshot
from foxactors.backends import ConnectionStatistics
from foxactors.observe import Intake, Reading, is_ready, readiness
from foxactors.pipeline import Consumer, ConsumerStatistics


def consumer_stats(*, consuming: bool) -> ConsumerStatistics:
    return ConsumerStatistics("q", consuming, {}, {}, {}, {})


def reading(link: ActorState | None, *, consuming: bool = True) -> Reading:
    """A pipeline ``/app`` whose intake runs a consumer, and a connection in ``link``."""
    consumer = ActorSnapshot(
        "/app/intake/consumer",
        "actor",
        "Consumer",
        ActorState.RUNNING,
        0,
        0,
        1000,
        statistics=consumer_stats(consuming=consuming),
    )
    children = [consumer]
    if link is not None:
        children.insert(
            0, ActorSnapshot("/app/intake/connection", "actor", "Link", link, 1, 0, 1000)
        )
    intake = ActorSnapshot(
        "/app/intake", "supervisor", "Intake", ActorState.RUNNING, 0, 0, 1000, tuple(children)
    )
    root = ActorSnapshot(
        "/app", "supervisor", "Pipeline", ActorState.RUNNING, 0, 0, 1000, (intake,)
    )
    stats = ConnectionStatistics(1, 1, 0, 0, 0, None)
    path = "/app/intake/connection" if link is not None else None
    return Reading(
        root,
        (Intake("/app", "/app/intake/consumer", "q", "redis", stats, {}, link=path),),
        {},
    )


def test_ready_while_the_consumer_pulls_on_a_running_connection() -> None:
    assert is_ready(reading(ActorState.RUNNING))
    assert is_ready(reading(None))  # no connection actor (memory): the consumer says


@pytest.mark.parametrize(
    "state", [ActorState.RESTARTING, ActorState.STARTING, ActorState.STOPPING, ActorState.STOPPED]
)
def test_not_ready_while_the_connection_actor_is_not_running(state: ActorState) -> None:
    seen = reading(state)
    assert not is_ready(seen)
    assert readiness(seen)["intakes"][0]["consuming"] is False


def test_not_ready_when_the_connection_actor_is_gone_from_the_tree() -> None:
    seen = reading(ActorState.RUNNING)
    intake = attrs.evolve(seen.intakes[0], link="/app/intake/nothing")
    gone = attrs.evolve(seen, intakes=(intake,))
    assert not is_ready(gone)


def test_not_ready_when_the_consumer_says_it_does_not_pull() -> None:
    assert not is_ready(reading(ActorState.RUNNING, consuming=False))


class FailedSource:
    """A source whose connection was lost: `live` is False, as a broker's says."""

    live = False


@pytest.mark.anyio
async def test_a_consumer_on_a_failed_source_does_not_say_it_consumes() -> None:
    consumer = Consumer(fa.MemoryBackend(), "q", prefetch=1, downstream="pool")
    consumer._intake = anyio.CancelScope()
    consumer.source = FailedSource()  # type: ignore[assignment]
    assert consumer.statistics().consuming is False
    consumer.source = await fa.MemoryBackend().open_source("q", prefetch=1)
    assert consumer.statistics().consuming is True
    await consumer.source.close()
