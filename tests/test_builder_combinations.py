"""Every shape of `WorkerApp` starts, processes a message and stops, on every backend.

The stages between the consumer and the pool change what each actor's neighbours
are: with none at all, the pool's upstream is the consumer itself, which on a broker
lives in the ``intake`` subtree. Each combination runs on the memory backend (asyncio
and trio, virtual time), on a memory backend whose consumer shares a connection owned
by an actor (the brokers' shape, both event loops), and on RabbitMQ and Redis.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

import foxactors as fa

from .brokers import BROKERS, RabbitMQCase, RedisCase, case

pytestmark = pytest.mark.anyio


class Tagging(fa.Stage):
    """A custom middleware that records what passes it both ways."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    async def on_delivery(self, delivery: fa.Delivery) -> None:
        self.seen.append(f"in {delivery.message.payload}")
        await self.forward(delivery)

    async def on_outcome(self, outcome: fa.Outcome) -> None:
        self.seen.append(f"out {outcome.kind.value}")
        await self.reply(outcome)


class Probe:
    """The handlers of one run: says when the message was handled, and by what."""

    def __init__(self) -> None:
        self.handled = anyio.Event()
        self.payloads: list[Any] = []
        self.stage: list[str] = []

    async def handle(self, message: fa.Message) -> None:
        self.payloads.append(message.payload)
        self.handled.set()

    async def handle_batch(self, messages: list[fa.Message]) -> None:
        self.payloads.extend(m.payload for m in messages)
        self.handled.set()


Shape = Callable[[Probe], fa.WorkerApp]

SHAPES: dict[str, Shape] = {
    "no stages": lambda p: fa.WorkerApp("jobs").add_worker(p.handle).without_retry(),
    "retry": lambda p: (
        fa.WorkerApp("jobs").add_worker(p.handle).with_retry(max_retries=2, initial_backoff=0.01)
    ),
    "rate limit": lambda p: (
        fa.WorkerApp("jobs").add_worker(p.handle).without_retry().with_rate_limit(100, burst=5)
    ),
    "breaker": lambda p: (
        fa.WorkerApp("jobs").add_worker(p.handle).without_retry().with_circuit_breaker(3, 1)
    ),
    "batch": lambda p: (
        fa.WorkerApp("jobs").add_batch_worker(p.handle_batch, size=5, interval=0.05).without_retry()
    ),
    "middleware": lambda p: (
        fa.WorkerApp("jobs")
        .add_worker(p.handle)
        .without_retry()
        .with_middleware(functools.partial(Tagging, p.stage), name="tagging")
    ),
    "all": lambda p: (
        fa.WorkerApp("jobs")
        .add_batch_worker(p.handle_batch, size=5, interval=0.05)
        .with_retry(max_retries=2, initial_backoff=0.01)
        .with_rate_limit(100, burst=5)
        .with_circuit_breaker(3, 1)
        .with_middleware(functools.partial(Tagging, p.stage), name="tagging")
    ),
}


class Connected(fa.MemoryBackend):
    """A memory backend whose consumers use a connection owned by an actor.

    The brokers' shape (`WorkerApp` builds an ``intake`` subtree for it), in virtual
    time and on both event loops.
    """

    def connection_actor(self) -> Callable[[], fa.Actor[Any]]:
        return functools.partial(Connection, self)

    async def open_source(self, queue: str, *, prefetch: int, connection: Any = None) -> Any:
        assert connection is self, "the consumer opens its source on the actor's connection"
        return await super().open_source(queue, prefetch=prefetch)


class Connection(fa.Actor[Any]):
    def __init__(self, backend: Connected) -> None:
        self.backend = backend

    async def receive(self, message: Any) -> Any:
        return self.backend  # the only question is CONNECTION


async def run_shape(shape: str, backend: Any, queue: str, *, timeout: float) -> Probe:
    """Run ``shape`` on ``backend`` until one message is handled; stop; check the logs."""
    probe = Probe()
    app = SHAPES[shape](probe)
    await backend.publish(queue, 42)
    with capture_logs() as logs:
        async with fa.open_system(app.build(backend, queue)) as system:
            with anyio.fail_after(timeout):
                await probe.handled.wait()
            system.stop()
            exit = await system.wait_stopped()
    assert exit.kind is fa.ExitKind.SHUTDOWN
    assert probe.payloads == [42]
    if shape in ("middleware", "all"):
        assert probe.stage == ["in 42", "out succeeded"]
    troubles = [e for e in logs if e["log_level"] in ("warning", "error", "critical")]
    assert troubles == []  # started, processed and stopped without a hitch
    return probe


@pytest.mark.parametrize("shape", SHAPES)
async def test_every_shape_runs_on_the_memory_backend(shape: str) -> None:
    backend = fa.MemoryBackend()
    await run_shape(shape, backend, "jobs", timeout=60)
    assert backend.queue_statistics("jobs") == fa.backends.QueueStatistics(0, 0, 0, 0)  # acked


@pytest.mark.parametrize("shape", SHAPES)
async def test_every_shape_runs_with_an_intake_subtree(shape: str) -> None:
    backend = Connected()
    await run_shape(shape, backend, "jobs", timeout=60)
    assert backend.queue_statistics("jobs") == fa.backends.QueueStatistics(0, 0, 0, 0)  # acked


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> RabbitMQCase | RedisCase:
    return case(request.param, request.getfixturevalue(request.param))


@pytest.mark.parametrize("anyio_backend", [("asyncio", {})])  # brokers: real time
@pytest.mark.parametrize("shape", SHAPES)
async def test_every_shape_runs_on_a_broker(shape: str, broker: RabbitMQCase | RedisCase) -> None:
    queue = f"jobs-{uuid.uuid4().hex[:8]}"
    backend = broker.backend
    await run_shape(shape, backend, queue, timeout=30)
    assert await broker.stranded(queue) == 0  # acked, not returned or pending
    assert await backend.count_dead_letters(queue) == 0
    await backend.close()
