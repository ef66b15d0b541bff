"""Pipelines on real brokers through cut connections, silent partitions and server
restarts; the CLI.

The same tests on RabbitMQ (connections closed by the broker) and Redis Streams
(CLIENT KILL; AOF across the restart), and behind a proxy that goes silent: none lost,
duplicates only of what was in flight, the intake subtree rebuilt by supervision, and
its statistics say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

import foxactors as fa
from foxactors.testing.servers import free_port

from .brokers import BROKERS, Partition, RabbitMQCase, RedisCase, case

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> RabbitMQCase | RedisCase:
    return case(request.param, request.getfixturevalue(request.param))


@pytest.fixture
def queue() -> str:
    return f"jobs-{uuid.uuid4().hex[:8]}"


class Tally:
    """Counts the deliveries of payloads 0-59; says when 20 and when all were seen."""

    def __init__(self) -> None:
        self.seen: Counter[int] = Counter()
        self.first_batch = anyio.Event()
        self.everything = anyio.Event()

    def add(self, payload: int) -> None:
        self.seen[payload] += 1
        if len(self.seen) >= 20:
            self.first_batch.set()
        if len(self.seen) == 60:
            self.everything.set()


def noticed(broker: RabbitMQCase | RedisCase, stats: fa.backends.ConnectionStatistics) -> None:
    """A lost connection was noticed, and came back.

    RabbitMQ always notices (the connection's close callback). Redis notices when a
    command was on the wire at the cut; a pooled connection that sat idle then (every
    credit held by running handlers) is reconnected by redis-py itself before its
    next command, unseen: nothing to count, and nothing lost either.
    """
    if isinstance(broker, RabbitMQCase):
        assert stats.lost >= 1
    assert stats.reconnects >= min(stats.lost, 1)


async def test_a_pipeline_survives_cut_connections_by_supervision(
    broker: RabbitMQCase | RedisCase, queue: str
) -> None:
    backend = broker.backend
    tally = Tally()

    async def handle(message: fa.Message) -> None:
        tally.add(message.payload)
        if message.payload % 7 == 0 and message.attempt == 1:
            raise RuntimeError("flaky")

    for n in range(40):
        await backend.publish(queue, n)
    app = (
        fa.WorkerApp("jobs")
        .add_worker(handle)
        .with_retry(max_retries=3, initial_backoff=0.01, jitter=0)
        .with_prefetch(10)
        .with_reconnect(min_delay=0.05, max_delay=0.2)
    )
    async with fa.open_system(app.build(backend, queue)) as system:
        with anyio.fail_after(30):
            await tally.first_batch.wait()
        await broker.cut()
        for n in range(40, 60):
            await backend.publish(queue, n)
        with anyio.fail_after(60):
            await tally.everything.wait()
        stats = backend.statistics()
        assert stats.consuming == 1
        assert stats.healthy
        noticed(broker, stats)
        intake = system.snapshot().find("/jobs/intake")
        assert intake is not None  # the connection and its users: a rest_for_one subtree
        assert [child.path for child in intake.children] == [
            f"/jobs/intake/{name}" for name in broker.intake
        ]
        if stats.lost:
            assert intake.children[1].restarts >= 1  # the consumer was rebuilt
    assert set(tally.seen) == set(range(60))  # none lost; duplicates only for in-flight ones
    assert await backend.count_dead_letters(queue) == 0
    assert backend.statistics().consuming == 0
    await backend.close()


async def test_a_pipeline_survives_a_silent_network_partition(
    broker: RabbitMQCase | RedisCase, queue: str
) -> None:
    tally = Tally()

    async def handle(message: fa.Message) -> None:
        tally.add(message.payload)

    for n in range(40):
        await broker.backend.publish(queue, n)
    partition = Partition(broker.server.port)
    app = (
        fa.WorkerApp("jobs")
        .add_worker(handle)
        .with_prefetch(10)
        .with_reconnect(min_delay=0.05, max_delay=0.2)
    )
    async with anyio.create_task_group() as proxy:
        await proxy.start(partition.serve)
        backend = broker.backend_via(partition.port)
        async with fa.open_system(app.build(backend, queue)):
            with anyio.fail_after(30):
                await tally.first_batch.wait()
            partition.cut()  # nothing closes: only the silence tells
            with anyio.fail_after(30):
                await partition.gave_up.wait()  # it noticed, and let the connection go
            partition.heal()
            for n in range(40, 60):
                await broker.backend.publish(queue, n)
            with anyio.fail_after(60):
                await tally.everything.wait()
            stats = backend.statistics()
            assert stats.lost >= 1
            assert stats.reconnects >= 1
            assert stats.consuming == 1
        await backend.close()
        proxy.cancel_scope.cancel()
    await broker.backend.close()
    assert set(tally.seen) == set(range(60))  # none lost; duplicates only for in-flight ones
    # At most the prefetch was in flight at the cut: deliveries settled here count
    # against the credit until the broker has their acks.
    assert sum(tally.seen.values()) - 60 <= 10


async def test_a_pipeline_survives_a_server_restart_losing_nothing(
    broker: RabbitMQCase | RedisCase, queue: str
) -> None:
    backend = broker.backend
    seen: Counter[int] = Counter()
    in_flight = anyio.Event()
    restarted = anyio.Event()
    everything = anyio.Event()

    async def handle(message: fa.Message) -> None:
        seen[message.payload] += 1
        if message.payload >= 30 and not restarted.is_set():
            in_flight.set()
            await restarted.wait()  # held across the restart: its ack goes nowhere
        if len(seen) == 100:
            everything.set()

    for n in range(100):
        await backend.publish(queue, n)
    await backend.close()
    app = (
        fa.WorkerApp("jobs")
        .add_worker(handle)
        .with_prefetch(10)
        .with_reconnect(min_delay=0.2, max_delay=1)
    )
    async with fa.open_system(app.build(backend, queue)):
        with anyio.fail_after(30):
            await in_flight.wait()
        await anyio.to_thread.run_sync(broker.server.stop)
        await anyio.to_thread.run_sync(broker.server.start)
        restarted.set()
        with anyio.fail_after(60):
            await everything.wait()
        stats = backend.statistics()
        noticed(broker, stats)
        assert (stats.consuming, stats.consecutive_failures) == (1, 0)
    assert set(seen) == set(range(100))  # durable queue / AOF: none lost
    duplicates = sum(count - 1 for count in seen.values())
    assert duplicates <= 10  # only what was in flight comes again: at most the prefetch
    await backend.close()


async def test_the_cli_lists_replays_and_purges_dead_letters(
    broker: RabbitMQCase | RedisCase, queue: str
) -> None:
    backend = broker.backend
    name = "rabbitmq" if isinstance(broker, RabbitMQCase) else "redis"
    await backend.publish(queue, {"n": 1}, properties=fa.MessageProperties(message_type="t"))

    async def dead_letter_one(reason: str) -> None:
        source = await backend.open_source(queue, prefetch=1)
        with anyio.fail_after(30):
            (delivery,) = await source.receive(1)
            delivery.handle.dead_letter(reason)
            await source.wait_settled()
        await source.close()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "foxactors", "dead-letters", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, f"FOXACTORS_{name.upper()}_URL": broker.server.url},
        )

    await dead_letter_one("gateway said no")
    listed = await anyio.to_thread.run_sync(cli, "list", queue, "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["reason"], row["attempts"], row["message_type"]) == ("gateway said no", 1, "t")
    replayed = await anyio.to_thread.run_sync(cli, "replay", queue)
    assert replayed.stdout.strip() == "replayed 1 dead letter(s)"
    await dead_letter_one("still no")
    purged = await anyio.to_thread.run_sync(cli, "purge", queue)
    assert purged.stdout.strip() == "purged 1 dead letter(s)"
    assert await backend.count_dead_letters(queue) == 0
    secret = "t0psecret"
    wrong = {
        "rabbitmq": f"amqp://guest:{secret}@127.0.0.1:{broker.server.port}/",
        "redis": f"redis://:{secret}@127.0.0.1:{free_port()}/0",
    }[name]
    failed = await anyio.to_thread.run_sync(cli, "list", queue, f"--{name}", wrong)
    assert failed.returncode == 1
    assert "cannot connect" in failed.stderr
    assert secret not in failed.stderr
    await backend.close()
