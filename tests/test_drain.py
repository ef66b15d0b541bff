"""A graceful stop returns at once what no worker started, wherever it waits.

Deliveries held back by the rate limiter or gathered by the batcher go back to the
queue through the outcome route while the source is still open (no stale
settlements), and the stop waits only for the work that is running.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

import foxactors as fa
from foxactors.pipeline import _messages
from foxactors.testing import anyio_backend_options

from .brokers import BROKERS, case

pytestmark = pytest.mark.anyio

QUEUE = "jobs"
WORK = 1.0  # seconds each handler runs
DRAIN = 30.0  # the default drain timeout, which the stop must not wait out


def stale(logs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "settlement.stale"]


class Started:
    """Records the payloads handled; says when the first handler started."""

    def __init__(self) -> None:
        self.handled: Counter[Any] = Counter()
        self.first = anyio.Event()


async def stop_timed(app: fa.WorkerApp, backend: Any, queue: str, started: Started) -> float:
    """Run ``app`` until a handler started; return how long the graceful stop took."""
    async with fa.open_system(app.build(backend, queue)):
        await started.first.wait()
        await anyio.wait_all_tasks_blocked()
        stopping = anyio.current_time()
    return anyio.current_time() - stopping


async def test_a_graceful_stop_returns_rate_limited_deliveries_at_once() -> None:
    backend = fa.MemoryBackend()
    started = Started()

    async def handle(message: fa.Message) -> None:
        started.first.set()
        await anyio.sleep(WORK)
        started.handled[message.payload] += 1

    for n in range(8):
        await backend.publish(QUEUE, n)
    app = (
        fa.WorkerApp()
        .add_worker(handle)
        .with_concurrency_limit(2)
        .with_rate_limit(rate=0.01, burst=2)  # two go through, then one per 100 s
        .with_drain_timeout(DRAIN)
    )
    with capture_logs() as logs:
        elapsed = await stop_timed(app, backend, QUEUE, started)
    # The two running handlers finish (at most WORK); the rest is returned at once.
    assert elapsed <= WORK + 0.1
    assert started.handled == {0: 1, 1: 1}
    stats = backend.queue_statistics(QUEUE)
    assert (stats.ready, stats.in_flight, stats.dead) == (6, 0, 0)
    assert stale(logs) == []
    drained = [entry for entry in logs if entry["event"] == "pipeline.drained"]
    assert [(d["returned"], d["deadline_missed"]) for d in drained] == [(6, False)]

    again = fa.WorkerApp().add_worker(handle)  # a second run handles the rest, once each
    async with fa.open_system(again.build(backend, QUEUE)):
        await backend.join(QUEUE)
    assert started.handled == dict.fromkeys(range(8), 1)


async def test_a_graceful_stop_returns_a_half_full_batch_at_once() -> None:
    backend = fa.MemoryBackend()
    started = Started()

    async def handle(messages: list[fa.Message]) -> None:
        started.first.set()
        await anyio.sleep(WORK)
        for message in messages:
            started.handled[message.payload] += 1

    for n in range(6):
        await backend.publish(QUEUE, n)
    app = (
        fa.WorkerApp()
        .add_batch_worker(handle, size=4, interval=1000)  # 4 run, 2 wait for the rest
        .with_drain_timeout(DRAIN)
    )
    with capture_logs() as logs:
        elapsed = await stop_timed(app, backend, QUEUE, started)
    assert elapsed <= WORK + 0.1  # the batch in the handler finishes; nothing else waits
    assert started.handled == dict.fromkeys(range(4), 1)
    stats = backend.queue_statistics(QUEUE)
    assert (stats.ready, stats.in_flight, stats.dead) == (2, 0, 0)
    assert stale(logs) == []


async def test_every_stage_returns_what_it_holds_in_order() -> None:
    """Retry, rate limit, breaker and batcher together: each returns what it holds.

    Deliveries a stage released towards the next stage just before it was asked
    reach that stage before the drain asks it, so none is stranded between them.
    """
    backend = fa.MemoryBackend()
    started = Started()

    async def handle(messages: list[fa.Message]) -> None:
        started.first.set()
        await anyio.sleep(WORK)
        for message in messages:
            started.handled[message.payload] += 1

    for n in range(20):
        await backend.publish(QUEUE, n)
    app = (
        fa.WorkerApp()
        .add_batch_worker(handle, size=3, interval=1000)
        .with_rate_limit(rate=0.01, burst=5)  # 5 go through: one batch runs, 2 gather
        .with_circuit_breaker()
        .with_prefetch(20)
        .with_drain_timeout(DRAIN)
    )
    with capture_logs() as logs:
        elapsed = await stop_timed(app, backend, QUEUE, started)
    assert elapsed <= WORK + 0.1
    assert started.handled == dict.fromkeys(range(3), 1)
    stats = backend.queue_statistics(QUEUE)
    assert (stats.ready, stats.in_flight, stats.dead) == (17, 0, 0)
    assert stale(logs) == []


@pytest.mark.parametrize("backend_name", ["asyncio", "trio"])
@given(
    count=st.integers(1, 30),
    rate=st.sampled_from([0.5, 2.0, 10.0]),
    burst=st.integers(1, 4),
    batch=st.one_of(st.none(), st.integers(2, 5)),
    concurrency=st.integers(1, 3),
    stop_at=st.floats(0, 6),  # virtual seconds after the start: any moment
)
def test_a_stop_at_any_moment_waits_only_for_running_work(
    backend_name: str,
    count: int,
    rate: float,
    burst: int,
    batch: int | None,
    concurrency: int,
    stop_at: float,
) -> None:
    """Stopped at any moment (a token due, a batch filling): none lost, none twice."""
    backend = fa.MemoryBackend()
    handled: Counter[int] = Counter()

    async def one(message: fa.Message) -> None:
        await anyio.sleep(WORK)
        handled[message.payload] += 1

    async def many(messages: list[fa.Message]) -> None:
        await anyio.sleep(WORK)
        handled.update(m.payload for m in messages)

    async def scenario() -> float:
        for n in range(count):
            await backend.publish(QUEUE, n)
        app = fa.WorkerApp().with_concurrency_limit(concurrency).with_drain_timeout(DRAIN)
        if batch is None:
            app = app.add_worker(one)
        else:
            app = app.add_batch_worker(many, size=batch, interval=0.7)
        app = app.with_rate_limit(rate=rate, burst=burst)
        async with fa.open_system(app.build(backend, QUEUE)):
            await anyio.sleep(stop_at)
            stopping = anyio.current_time()
        return anyio.current_time() - stopping

    name, options = anyio_backend_options(backend_name)
    with capture_logs() as logs:
        elapsed = anyio.run(scenario, backend=name, backend_options=options)
    assert elapsed <= WORK + 0.1
    assert all(times == 1 for times in handled.values())
    stats = backend.queue_statistics(QUEUE)
    assert (stats.in_flight, stats.dead, stats.delayed) == (0, 0, 0)
    assert stats.ready + len(handled) == count
    assert stale(logs) == []


async def test_a_stage_that_holds_nothing_answers_the_drain_with_none() -> None:
    """The retry stage has its own receive: the drain's request reaches the default
    `on_other`, which answers it too."""
    backend = fa.MemoryBackend()

    async def handle(message: fa.Message) -> None:
        pass

    app = fa.WorkerApp().add_worker(handle).with_rate_limit(rate=0.01)
    async with fa.open_system(app.build(backend, QUEUE)) as system:
        for n in range(3):
            await backend.publish(QUEUE, n)
        await anyio.wait_all_tasks_blocked()
        assert await system.ref("retry").ask(_messages.RETURN_HELD) == 0
        assert await system.ref("rate-limit").ask(_messages.RETURN_HELD) == 2
    stats = backend.queue_statistics(QUEUE)
    assert (stats.ready, stats.in_flight) == (2, 0)


class HeldStage(fa.Stage):
    """A user's stage that parks every delivery (say, waiting for a quota)."""

    def __init__(self) -> None:
        self.held: list[fa.Delivery] = []

    async def on_delivery(self, delivery: fa.Delivery) -> None:
        self.held.append(delivery)

    async def on_drain(self) -> list[fa.Delivery]:
        held, self.held = self.held, []
        return held


async def test_a_stage_of_the_users_returns_what_it_parks_through_on_drain() -> None:
    backend = fa.MemoryBackend()
    seen: list[Any] = []

    async def handle(message: fa.Message) -> None:
        seen.append(message.payload)

    for n in range(3):
        await backend.publish(QUEUE, n)
    app = fa.WorkerApp().add_worker(handle).with_middleware(HeldStage, name="parking")
    app = app.with_drain_timeout(DRAIN)
    with capture_logs() as logs:
        async with fa.open_system(app.build(backend, QUEUE)):
            await anyio.wait_all_tasks_blocked()
            stopping = anyio.current_time()
        elapsed = anyio.current_time() - stopping
    assert elapsed < 0.1
    assert seen == []
    stats = backend.queue_statistics(QUEUE)
    assert (stats.ready, stats.in_flight, stats.dead) == (3, 0, 0)
    assert stale(logs) == []


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # real servers, real time
@pytest.mark.parametrize("broker_name", BROKERS)
async def test_rate_limited_deliveries_go_back_to_a_broker_at_once(
    broker_name: str, request: pytest.FixtureRequest
) -> None:
    backend = case(broker_name, request.getfixturevalue(broker_name)).backend
    try:
        await returned_to_a_broker(backend, f"jobs-{uuid.uuid4().hex[:8]}")
    finally:
        await backend.close()


async def returned_to_a_broker(backend: Any, queue: str) -> None:
    """Stop a rate-limited pipeline on ``backend`` early; a second run handles the rest."""
    started = Started()

    async def handle(message: fa.Message) -> None:
        started.handled[message.payload] += 1
        started.first.set()

    for n in range(8):
        await backend.publish(queue, n)
    app = (
        fa.WorkerApp()
        .add_worker(handle)
        .with_rate_limit(rate=0.01, burst=2)
        .with_drain_timeout(DRAIN)
    )
    with capture_logs() as logs:
        elapsed = await stop_timed(app, backend, queue, started)
    assert elapsed < DRAIN / 3  # well before the drain timeout (real time: a margin)
    assert stale(logs) == []
    done = anyio.Event()

    async def rest(message: fa.Message) -> None:
        started.handled[message.payload] += 1
        if len(started.handled) == 8:
            done.set()

    again = fa.WorkerApp().add_worker(rest)
    async with fa.open_system(again.build(backend, queue)):
        with anyio.fail_after(20):
            await done.wait()
    assert started.handled == dict.fromkeys(range(8), 1)


def _slow_app() -> fa.WorkerApp:
    async def handle(message: fa.Message) -> None:
        await anyio.sleep(0.2)

    return fa.WorkerApp("app").add_worker(handle).with_concurrency_limit(1)


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
@pytest.mark.parametrize("crash_at", [0.0, 0.5])
def test_a_stop_while_the_pool_restarts_gives_back_what_no_worker_started(
    loop: str, crash_at: float
) -> None:
    from foxactors.testing import CrashActor, FaultSchedule, StopSystem, simulate  # noqa: PLC0415

    # the pool crashes, and the stop comes while it waits out its restart delay: the
    # drain restarts it and asks it, so it hands back what it holds and starts no new
    # work, and the stop waits only for what runs (not out the question's deadline)
    schedule = FaultSchedule([CrashActor("pool", crash_at), StopSystem(crash_at + 0.05)])
    with capture_logs() as logs:
        result = simulate(_slow_app, 40, schedule, loop=loop)
    assert sum(result.calls.values()) <= crash_at / 0.2 + 2  # nothing new after the stop
    assert result.elapsed < crash_at + 1
    assert [e for e in logs if e["event"] == "pipeline.drain_incomplete"] == []
    assert len(result.acked) + result.remaining == 40  # nothing lost
