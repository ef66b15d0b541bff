"""Queue depth on every backend: the broker's counts, the store's per tenant, and /metrics.

The same known set of messages (ready, delayed, in flight, dead) and of jobs (per
state, per tenant) is counted on the memory backend (asyncio and trio, virtual time)
and on the suite's real RabbitMQ and Redis servers (asyncio, real time).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import foxactors as fa
from foxactors.backends import (
    Backend,
    QueueStatistics,
    RabbitMQBackend,
    RedisBackend,
)
from foxactors.jobs import ErrorInfo, JobQueue, JobState, MemoryJobStore, QueueDepth, RedisJobStore
from foxactors.observe import HttpStatistics, with_http
from foxactors.testing import anyio_backend_options

from .helpers import receive_one

pytestmark = pytest.mark.anyio

CASES = [("memory", "asyncio"), ("memory", "trio"), ("rabbitmq", "asyncio"), ("redis", "asyncio")]
HOUR = 3600.0


@pytest.fixture(params=CASES, ids=["-".join(case) for case in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, Any]]:
    """Memory in virtual time; brokers in real time (their I/O does not wait for a mock).

    A loop named ``... real`` runs the memory backend in real time (for real sockets).
    """
    broker, loop = case
    if broker == "memory" and not loop.endswith(" real"):
        return anyio_backend_options(loop)
    return (loop.removesuffix(" real"), {})


@pytest.fixture
def queue() -> str:
    return f"depth-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def backend(case: tuple[str, str], request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if case[0] == "memory":
        yield fa.MemoryBackend()
        return
    made: Backend
    if case[0] == "redis":
        made = RedisBackend(request.getfixturevalue("redis").url, poll_interval=0.02)
    else:
        made = RabbitMQBackend(request.getfixturevalue("rabbitmq").url)
    yield made
    await made.close()


async def known_messages(
    backend: Backend, queue: str
) -> tuple[fa.backends.Source, list[fa.Delivery]]:
    """Of the messages published, one dead and two held: the source and what it holds.

    Dead-lettered through a source of its own, closed before the holding one opens,
    so that no broker hands the holder more than the two it was given credit for.
    """
    first = await backend.open_source(queue, prefetch=1)
    (await receive_one(first)).handle.dead_letter("no good")
    await first.wait_settled()
    await first.close()
    holder = await backend.open_source(queue, prefetch=2)
    with anyio.fail_after(60):
        held = await holder.receive(2, 2)
        while len(held) < 2:
            held += await holder.receive(2 - len(held))
    return holder, held


async def test_queue_depth_counts_ready_delayed_in_flight_and_dead(
    backend: Backend, queue: str
) -> None:
    empty = await backend.queue_depth(queue)
    assert (empty.ready, empty.delayed, empty.in_flight, empty.dead) == (0, 0, 0, 0)
    for n in range(6):
        await backend.publish(queue, n)
    await backend.publish(queue, "later", delay=HOUR)
    holder, held = await known_messages(backend, queue)
    depth = await backend.queue_depth(queue)
    assert isinstance(depth, QueueStatistics)  # one result type, a broker's subclass at most
    assert (depth.ready, depth.delayed, depth.in_flight, depth.dead) == (3, 1, 2, 1)
    del held  # settled by closing: back to the queue
    await holder.close()  # what it held goes back: ready again
    after = await backend.queue_depth(queue)
    assert (after.ready, after.delayed, after.in_flight, after.dead) == (5, 1, 0, 1)


@pytest.mark.parametrize("case", [("rabbitmq", "asyncio")], ids=["rabbitmq-asyncio"])
async def test_rabbitmq_counts_on_one_connection_and_names_what_only_it_sees(
    backend: Backend, queue: str
) -> None:
    assert isinstance(backend, RabbitMQBackend)
    await backend.publish(queue, 1, delay=HOUR)
    await backend.publish(queue, 2, delay=2 * HOUR)
    connects = backend.statistics().connects
    for _ in range(3):  # a scrape each: no connection of its own
        stats = await backend.queue_statistics(queue)
    assert backend.statistics().connects == connects
    assert stats.delayed == 2
    assert dict(stats.delayed_by_bucket) == {3_600_000: 1, 7_200_000: 1}
    assert stats.consumers == 0
    assert type(stats).seen_here == {"delayed", "in_flight"}
    assert QueueStatistics.seen_here == frozenset()
    source = await backend.open_source(queue, prefetch=1)
    assert (await backend.queue_statistics(queue)).consumers == 1
    await source.close()
    # a queue no one declared counts zero, and counting goes on after the broker's 404
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    assert await backend.queue_statistics(missing) == type(stats)(0, 0, 0, 0)
    assert (await backend.queue_statistics(missing)).delayed_by_bucket == {}
    assert (await backend.queue_statistics(queue)).delayed == 2


BROKERS = CASES[2:]


@pytest.mark.parametrize("case", BROKERS, ids=["-".join(c) for c in BROKERS])
async def test_a_bad_queue_name_is_refused_by_name(backend: Backend) -> None:
    with pytest.raises(fa.ConfigurationError, match="non-empty string, got ''"):
        await backend.queue_depth("")


# -- JobQueue.depth -------------------------------------------------------------------


@pytest.fixture
async def jobs(
    case: tuple[str, str], backend: Backend, queue: str, request: pytest.FixtureRequest
) -> AsyncIterator[JobQueue]:
    """A job queue on ``backend``: records in Redis with the Redis broker, else in memory."""
    if case[0] == "redis":
        url = request.getfixturevalue("redis").url
        store = RedisJobStore(url, prefix=f"fx:test:{uuid.uuid4().hex[:8]}")
        yield JobQueue(backend, store=store, queue=queue)
        await store.close()
        return
    yield JobQueue(backend, store=MemoryJobStore(), queue=queue)


async def known_jobs(jobs: JobQueue) -> None:
    """acme: 2 pending, 1 running, 1 dead, 1 scheduled; beta: 1 pending, 1 retrying."""

    @jobs.task
    async def work(n: int) -> None: ...

    acme, beta = work.options(tenant="acme"), work.options(tenant="beta")
    await acme.enqueue(1)
    await acme.enqueue(2)
    running = await acme.enqueue(3)
    dead = await acme.enqueue(4)
    await work.options(tenant="acme", delay=HOUR).enqueue(5)
    await beta.enqueue(6)
    retrying = await beta.enqueue(7)
    store, now = jobs.store, jobs.clock()
    for handle in (running, dead, retrying):
        await store.start(handle.id, now, now + HOUR)
    error = ErrorInfo("ValueError", "no", "Traceback ...")
    await store.fail(dead.id, 1, now, error, retry_at=None, reason="no")
    await store.fail(retrying.id, 1, now, error, retry_at=now + HOUR, reason="again")


async def test_job_depth_counts_jobs_per_tenant_and_the_brokers_messages(
    jobs: JobQueue, queue: str
) -> None:
    await known_jobs(jobs)  # 6 messages now, 1 delayed
    holder, held = await known_messages(jobs.backend, queue)
    acme = await jobs.depth(queue, tenant="acme")
    assert isinstance(acme, QueueDepth)
    assert (acme.queue, acme.tenant) == (queue, "acme")
    assert (acme.ready, acme.scheduled, acme.running, acme.retrying, acme.dead) == (2, 1, 1, 0, 1)
    beta = await jobs.depth(tenant="beta")  # the default queue
    assert (beta.ready, beta.scheduled, beta.running, beta.retrying, beta.dead) == (1, 0, 0, 1, 0)
    everyone = await jobs.depth(queue)
    assert dict(everyone.jobs) == {state: acme.jobs[state] + beta.jobs[state] for state in JobState}
    assert everyone.to_dict() == {
        "queue": queue,
        "tenant": None,
        "jobs": {
            "scheduled": 1,
            "pending": 3,
            "running": 1,
            "retrying": 1,
            "succeeded": 0,
            "dead": 1,
            "cancelled": 0,
        },
        "broker": {"ready": 3, "delayed": 1, "in_flight": 2, "dead": 1},
    }
    assert acme.broker == beta.broker == everyone.broker  # brokers do not key by tenant
    assert (await jobs.depth(queue, broker=False)).broker is None
    assert (await jobs.depth(queue, tenant="nobody")).jobs == dict.fromkeys(JobState, 0)
    del held  # settled by closing: back to the queue
    await holder.close()


# -- /metrics ------------------------------------------------------------------------


def queue_messages(text: str, queue: str) -> dict[str, float]:
    """``foxactors_queue_messages`` of ``queue`` in an exposition, by state."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "foxactors_queue_messages" and sample.labels["queue"] == queue:
                found[sample.labels["state"]] = sample.value
    return found


REAL_TIME = [("memory", "asyncio real"), ("memory", "trio real"), *BROKERS]


@pytest.mark.parametrize("case", REAL_TIME, ids=["-".join(c).replace(" ", "-") for c in REAL_TIME])
async def test_metrics_serve_the_queue_depth_of_every_backend(backend: Backend, queue: str) -> None:
    expected = {"ready": 0, "delayed": 1, "in_flight": 1, "dead": 1}
    holding, release = anyio.Event(), anyio.Event()

    async def handle(message: fa.Message) -> None:
        if message.payload == "bad":
            raise ValueError("bad")
        holding.set()
        await release.wait()

    await backend.publish(queue, "bad")
    await backend.publish(queue, "hold")
    await backend.publish(queue, "later", delay=HOUR)
    app = with_http(
        fa.WorkerApp("app").add_worker(handle).without_retry().with_concurrency_limit(1),
        port=0,
    )
    async with fa.open_system(app.build(backend, queue)) as system:
        where = system.statistics("/app/http")
        assert isinstance(where, HttpStatistics)
        with anyio.fail_after(60):
            await holding.wait()
            async with httpx.AsyncClient(timeout=10) as client:
                while True:  # the dead letter is copied, then acknowledged, in the broker's time
                    text = (await client.get(f"{where.url}/metrics")).text
                    if queue_messages(text, queue) == expected:
                        break
                    await anyio.sleep(0.01)
        release.set()
