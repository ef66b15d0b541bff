"""What actors report about themselves, read from outside without an ask."""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest
from anyio import wait_all_tasks_blocked
from structlog.testing import capture_logs

import foxactors as fa
from foxactors.pipeline._pool import LOOKAHEAD

from .helpers import Recorder, tree, worker

pytestmark = pytest.mark.anyio

QUEUE = "jobs"


@attrs.frozen
class Tally:
    seen: int


class Counts(fa.Actor[Any]):
    """An actor with statistics of its own."""

    def __init__(self) -> None:
        self.seen = 0

    async def receive(self, message: Any) -> None:
        if message == "crash":
            raise RuntimeError("crash")
        if message == "broken":
            self.seen = -1
            return
        self.seen += 1

    def statistics(self) -> Tally:
        if self.seen < 0:
            raise ValueError("a bug in statistics()")
        return Tally(self.seen)


async def test_an_actor_reports_its_statistics_through_the_system_and_snapshots() -> None:
    rec = Recorder()
    spec = tree([fa.ChildSpec("counts", Counts), worker("plain", rec)])
    async with fa.open_system(spec) as system:
        counts = system.ref("counts")
        await counts.tell("a")
        await counts.tell("b")
        await wait_all_tasks_blocked()
        assert system.statistics("counts") == Tally(2)  # no ask: read as it is now
        assert system.statistics("/app/plain") is None  # actors report nothing by default
        snapshot = system.snapshot()
        found = snapshot.find("/app/counts")
        assert found is not None
        assert found.statistics == Tally(2)
        with pytest.raises(fa.ActorNotFound):
            system.statistics("nobody")
        await counts.tell("broken")
        await wait_all_tasks_blocked()
        with capture_logs() as logs:
            broken = system.snapshot().find("/app/counts")
        assert broken is not None
        assert broken.statistics is None  # one actor's bug does not break a snapshot
        assert [e["event"] for e in logs] == ["actor.statistics_failed"]


async def test_supervisor_statistics_show_children_restarts_and_the_window() -> None:
    rec = Recorder()
    slow = fa.Backoff(min_delay=10, max_delay=10, random_factor=0)
    spec = tree(
        [worker("a", rec), worker("b", rec), worker("c", rec, backoff=slow)],
        max_restarts=5,
        within=60,
    )
    async with fa.open_system(spec) as system:
        stats = system.statistics("/app")
        assert isinstance(stats, fa.SupervisorStatistics)
        assert stats.children == ("a", "b", "c")
        assert dict(stats.restarts) == {"a": 0, "b": 0, "c": 0}
        assert (stats.recent_restarts, stats.max_restarts, stats.within) == (0, 5, 60)
        await system.ref("a").tell("crash")
        await system.ref("a").tell("crash")
        await system.ref("c").tell("crash")  # restarts in 10 s
        await wait_all_tasks_blocked()
        stats = system.statistics("/app")
        assert isinstance(stats, fa.SupervisorStatistics)
        assert dict(stats.restarts) == {"a": 2, "b": 0, "c": 0}
        assert stats.restarting == ("c",)
        assert stats.recent_restarts == 3
        await anyio.sleep(11)
        stats = system.statistics("/app")
        assert isinstance(stats, fa.SupervisorStatistics)
        assert (dict(stats.restarts), stats.restarting) == ({"a": 2, "b": 0, "c": 1}, ())
        assert stats.recent_restarts == 3  # counted when decided, not when done
        await anyio.sleep(50)  # a minute after the crashes: they left the window
        stats = system.statistics("/app")
        assert isinstance(stats, fa.SupervisorStatistics)
        assert stats.recent_restarts == 0


async def test_pool_statistics_show_busy_workers_lookaheads_and_waiting_work() -> None:
    backend = fa.MemoryBackend()
    release = anyio.Event()

    async def handle(message: fa.Message) -> None:
        await release.wait()

    count = 2 * (1 + LOOKAHEAD) + 2  # two workers full, two more waiting in the pool
    for n in range(count):
        await backend.publish(QUEUE, n)
    app = (
        fa.WorkerApp()
        .add_worker(handle)
        .with_concurrency_limit(2)
        .with_worker_recycling(max_messages=5)
    )
    async with fa.open_system(app.build(backend, QUEUE)) as system:
        await wait_all_tasks_blocked()
        stats = system.statistics("pool")
        assert isinstance(stats, fa.PoolStatistics)
        assert isinstance(stats, fa.SupervisorStatistics)  # a pool supervises its workers
        assert stats.children == ("worker-1", "worker-2")
        assert (stats.workers, stats.capacity, stats.busy) == (2, 1, 2)
        # two started, LOOKAHEAD more queued behind each busy worker, the rest in the pool
        assert (stats.in_flight, stats.lookaheads, stats.waiting) == (
            2 + 2 * LOOKAHEAD,
            2 * LOOKAHEAD,
            2,
        )
        assert stats.recycled == 0
        release.set()
        await backend.join(QUEUE)
        await wait_all_tasks_blocked()
        snapshot = system.snapshot().find("/app/pool")
        assert snapshot is not None
        stats = snapshot.statistics
        assert isinstance(stats, fa.PoolStatistics)
        assert (stats.busy, stats.in_flight, stats.lookaheads, stats.waiting) == (0, 0, 0, 0)
        # each worker is recycled after every 5 of its messages; how the messages split
        # between the two decides whether a part of 5 is left over
        assert stats.recycled in (count // 5 - 1, count // 5)
        assert sum(stats.restarts.values()) == stats.recycled  # recycling shows as restarts
        assert stats.recent_restarts == 0  # but not as restarts for the intensity
        assert hash(snapshot)  # snapshots with statistics stay hashable values
        with pytest.raises(TypeError):
            stats.restarts["worker-1"] = 0  # type: ignore[index]


async def test_rate_limit_statistics_show_deliveries_held_back() -> None:
    backend = fa.MemoryBackend()

    async def handle(message: fa.Message) -> None:
        pass

    for n in range(3):
        await backend.publish(QUEUE, n)
    app = fa.WorkerApp().add_worker(handle).with_rate_limit(rate=1, burst=1)
    async with fa.open_system(app.build(backend, QUEUE)) as system:
        await wait_all_tasks_blocked()
        stats = system.statistics("rate-limit")
        assert stats == fa.RateLimitStatistics(rate=1, burst=1, waiting=2, delayed=2)
        await backend.join(QUEUE)
        stats = system.statistics("rate-limit")
        assert stats == fa.RateLimitStatistics(rate=1, burst=1, waiting=0, delayed=2)


async def test_an_actor_between_lives_reports_no_statistics() -> None:
    slow = fa.Backoff(min_delay=10, max_delay=10, random_factor=0)
    spec = tree([fa.ChildSpec("counts", Counts, backoff=slow)])
    async with fa.open_system(spec) as system:
        counts = system.ref("counts")
        await counts.tell("a")
        await wait_all_tasks_blocked()
        assert system.statistics("counts") == Tally(1)
        await counts.tell("crash")
        await wait_all_tasks_blocked()
        assert counts.state is fa.ActorState.RESTARTING
        assert system.statistics("counts") is None  # no live instance to ask
        await anyio.sleep(10)
        await wait_all_tasks_blocked()
        assert system.statistics("counts") == Tally(0)  # a fresh instance
