"""Jobs end to end on real brokers: Redis Streams and RabbitMQ, records in Redis.

Each test runs on both brokers (asyncio, real time) against the suite's own servers,
with a `RedisJobStore` (a RabbitMQ transport keeps its records in Redis, or in memory
where one process is enough). A queue and a key prefix per test keep them apart.

Real time is spent only where a broker or the store must act by itself: a delay it
holds, a lease it lets run out. Everything else waits on events, or polls a record
that another process changes, with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import anyio
import pytest
import redis.asyncio as aioredis

import foxactors as fa
from foxactors.backends import BrokerUnreachable, RabbitMQBackend, RedisBackend
from foxactors.backends.redis import Leases
from foxactors.jobs import (
    JOB_ID_HEADER,
    CancelKind,
    JobCancelled,
    JobContext,
    JobQueue,
    JobRecord,
    JobState,
    JobStore,
    MemoryJobStore,
    RedisJobStore,
    StartKind,
    SyncJobContext,
)
from foxactors.jobs._keeper import RunningAttempts
from foxactors.testing.servers import RabbitMQ, RedisServer, free_port

from .brokers import BROKERS

pytestmark = pytest.mark.anyio

T = TypeVar("T")
SRC = Path(fa.__file__).resolve().parents[1]  # the foxactors under test
WAIT = 30.0  # real seconds before a wait fails the test
CLAIM_MIN_IDLE = 0.5  # Redis: a dead consumer's entries are taken over after this


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})  # aio-pika and redis-py; real time


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class World:
    """One test's queue and key prefix on one broker, and what it opened (closed after)."""

    def __init__(self, broker: str, server: RabbitMQ | RedisServer, redis: RedisServer) -> None:
        self.broker = broker
        self.server = server
        self.redis = redis
        self.queue = f"jobs-{uuid.uuid4().hex[:8]}"
        self.prefix = f"fx:test:{uuid.uuid4().hex[:8]}"
        self._opened: list[Any] = []

    def backend(self) -> Any:
        """A backend of its own: a process's connections (a Redis consumer name of its own)."""
        backend: Any
        if self.broker == "redis":
            backend = RedisBackend(
                self.server.url,
                consumer=f"c-{uuid.uuid4().hex[:8]}",
                leases=Leases(claim_min_idle=CLAIM_MIN_IDLE),
                poll_interval=0.02,
                block=0.1,
            )
        else:
            backend = RabbitMQBackend(self.server.url)  # work queues with x-max-priority
        self._opened.append(backend)
        return backend

    def store(self, kind: type[RedisJobStore] = RedisJobStore, *, db: int = 0) -> RedisJobStore:
        """A Redis store; on the Redis broker's own database (db 0), jobs are created
        with their deliveries in one script (see the one-step tests)."""
        store = kind(self.redis.url.rsplit("/", 1)[0] + f"/{db}", prefix=self.prefix)
        self._opened.append(store)
        return store

    def jobs(self, store: JobStore | None = None, **options: Any) -> JobQueue:
        """A `JobQueue` as a producer or a worker process would make it."""
        options.setdefault("cancel_poll", 0.05)  # the Redis store does not signal cancels
        return JobQueue(self.backend(), store=store or self.store(), queue=self.queue, **options)

    async def waiting(self) -> int:
        """Messages in the broker's queue not yet acknowledged (delivered or not)."""
        if self.broker == "redis":
            client = aioredis.Redis.from_url(self.server.url)
            try:
                groups = await client.xinfo_groups(self.queue)
                if not groups:  # nobody consumed yet: every entry waits
                    return int(await client.xlen(self.queue))
                (group,) = groups
                return int(group["pending"]) + int(group["lag"])
            finally:
                await client.aclose()
        connection = await aio_pika.connect(self.server.url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.queue, passive=True)
            return queue.declaration_result.message_count or 0

    async def close(self) -> None:
        for opened in reversed(self._opened):
            await opened.close()


@pytest.fixture
async def world(
    broker: str, request: pytest.FixtureRequest, redis: RedisServer
) -> AsyncIterator[World]:
    server: RabbitMQ | RedisServer = request.getfixturevalue(broker)
    opened = World(broker, server, redis)
    yield opened
    await opened.close()


@asynccontextmanager
async def working(jobs: JobQueue, concurrency: int = 4) -> AsyncIterator[None]:
    """A job worker app of ``jobs`` running in this process; stopped gracefully on exit."""
    async with fa.open_system(jobs.worker(concurrency=concurrency).build()):
        yield


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll ``probe`` until it answers (for what another process or the broker changes)."""
    try:
        with anyio.fail_after(WAIT):
            while True:
                found = await probe()
                if found is not None:
                    return found
                await anyio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"not within {WAIT} s: {what}")


class Probe:
    """What the handlers did, in this process: starts by job id, and events to wait on."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, int]] = []  # (job id, attempt), in order
        self.started = anyio.Event()
        self.stopped: list[str] = []  # job ids whose handler saw its cancel

    def start(self, ctx: JobContext) -> None:
        self.starts.append((ctx.job_id, ctx.attempt))
        self.started.set()

    def ran(self, job_id: str) -> list[int]:
        return [attempt for ran, attempt in self.starts if ran == job_id]


# -- the life of a job ------------------------------------------------------------------


@pytest.mark.parametrize("store_kind", ["redis", "memory"])
async def test_a_job_runs_and_its_result_and_status_read_back(
    world: World, store_kind: str
) -> None:
    jobs = world.jobs(MemoryJobStore() if store_kind == "memory" else None)
    probe = Probe()

    @jobs.task(max_attempts=2)
    async def invoice(ctx: JobContext, number: int, lines: list[float]) -> dict[str, Any]:
        probe.start(ctx)
        await ctx.progress(50, "summed")
        return {"number": number, "total": sum(lines)}

    handle = await invoice.options(tenant="acme").enqueue(7, [1.5, 2.25])
    before = await handle.status()
    assert (before.state, before.attempt, before.tenant) == (JobState.PENDING, 0, "acme")
    async with working(jobs):
        result = await handle.result(timeout=WAIT)
    assert result == {"number": 7, "total": 3.75}
    record = await handle.status()
    assert (record.state, record.attempt, record.max_attempts) == (JobState.SUCCEEDED, 1, 2)
    assert (record.progress, record.result, record.error) == (100.0, result, None)
    assert record.enqueued_at <= record.started_at <= record.finished_at  # type: ignore[operator]
    assert probe.starts == [(handle.id, 1)]
    assert (await jobs.handle(handle.id, tenant="acme").result(timeout=WAIT)) == result
    assert await world.waiting() == 0  # acked: nothing left in the broker


async def test_one_key_from_many_producers_makes_one_job_and_one_delivery(world: World) -> None:
    producers = [world.jobs() for _ in range(12)]  # each a process: its own connections
    probe = Probe()
    tasks = []
    for jobs in producers:

        @jobs.task(name="snapshot")
        async def snapshot(ctx: JobContext, day: str) -> str:
            probe.start(ctx)
            return f"snapshot of {day}"

        tasks.append(snapshot)
    go = anyio.Event()
    handles: list[Any] = [None] * len(tasks)

    async def produce(n: int) -> None:
        await go.wait()
        handles[n] = await tasks[n].options(key="inbox:2026-12-02").enqueue("2026-12-02")

    async with anyio.create_task_group() as producing:
        for n in range(len(tasks)):
            producing.start_soon(produce, n)
        await anyio.wait_all_tasks_blocked()
        go.set()
    assert len({h.id for h in handles}) == 1
    assert sorted(h.created for h in handles) == [False] * (len(handles) - 1) + [True]
    assert await world.waiting() == 1  # one delivery, published once
    counts = await producers[0].counts()
    assert sum(counts.values()) == counts[JobState.PENDING] == 1
    async with working(producers[0]):
        results = [await h.result(timeout=WAIT) for h in handles]
    assert results == ["snapshot of 2026-12-02"] * len(handles)
    assert probe.starts == [(handles[0].id, 1)]


# -- cancel wins ------------------------------------------------------------------------


async def test_a_pending_job_cancelled_never_starts(world: World) -> None:
    jobs = world.jobs()
    probe = Probe()

    @jobs.task
    async def summary(ctx: JobContext, inbox: str) -> str:
        probe.start(ctx)
        return inbox

    doomed = await summary.enqueue("expensive")
    after = await summary.enqueue("cheap")  # behind it in the queue
    cancelled = await doomed.cancel()
    assert (cancelled.kind, cancelled.record.state) == (CancelKind.CANCELLED, JobState.CANCELLED)
    async with working(jobs, concurrency=1):  # one at a time, in queue order
        assert await after.result(timeout=WAIT) == "cheap"
    assert probe.starts == [(after.id, 1)]  # the delivery before it was settled unrun
    with pytest.raises(JobCancelled):
        await doomed.result(timeout=WAIT)
    record = await doomed.status()
    assert (record.state, record.attempt, record.result) == (JobState.CANCELLED, 0, None)
    assert (await doomed.cancel()).kind is CancelKind.FINISHED
    assert await world.waiting() == 0


async def test_a_running_job_cancelled_ends_cancelled_without_a_result(world: World) -> None:
    jobs = world.jobs()
    probe = Probe()

    @jobs.task
    async def summary(ctx: JobContext, inbox: str) -> str:
        probe.start(ctx)
        try:
            await anyio.sleep_forever()
        finally:
            probe.stopped.append(ctx.job_id)
        return "never"

    handle = await summary.enqueue("expensive")
    async with working(jobs):
        with anyio.fail_after(WAIT):
            await probe.started.wait()
        assert (await handle.status()).state is JobState.RUNNING
        requested = await handle.cancel()
        assert requested.kind is CancelKind.REQUESTED
        with pytest.raises(JobCancelled):
            await handle.result(timeout=WAIT)
    assert probe.stopped == [handle.id]  # the handler itself was cancelled
    record = await handle.status()
    assert (record.state, record.result, record.attempt) == (JobState.CANCELLED, None, 1)
    assert record.cancel_requested
    assert probe.starts == [(handle.id, 1)]


async def test_a_running_sync_job_hears_its_cancel_and_what_it_returns_is_dropped(
    world: World,
) -> None:
    jobs = world.jobs()
    began, heard = threading.Event(), threading.Event()

    @jobs.task
    def thumbnails(ctx: SyncJobContext, album: str) -> str:  # on a worker thread
        began.set()
        deadline = time.monotonic() + WAIT
        while not ctx.cancel_requested and time.monotonic() < deadline:
            time.sleep(0.01)  # a unit of blocking work, then a look at the flag
        if ctx.cancel_requested:
            heard.set()
        return "done anyway"

    handle = await thumbnails.enqueue("holiday")
    async with working(jobs):
        assert await anyio.to_thread.run_sync(began.wait, WAIT)
        assert (await handle.cancel()).kind is CancelKind.REQUESTED
        with pytest.raises(JobCancelled):
            await handle.result(timeout=WAIT)
    assert heard.is_set()
    record = await handle.status()
    assert (record.state, record.result) == (JobState.CANCELLED, None)


# -- schedules and priorities -----------------------------------------------------------


async def test_a_delayed_job_waits_in_the_broker_across_a_worker_restart(world: World) -> None:
    producer = world.jobs()
    probe = Probe()
    ran_at: list[float] = []

    def declare(jobs: JobQueue) -> Any:
        @jobs.task(name="analysis")
        async def analysis(ctx: JobContext, inbox: str) -> str:
            ran_at.append(time.time())
            probe.start(ctx)
            return f"analysed {inbox}"

        return analysis

    analysis = declare(producer)
    first, second = world.jobs(), world.jobs()  # two worker processes, one after the other
    declare(first)
    declare(second)
    async with working(first):
        handle = await analysis.options(delay=0.5).enqueue("inbox-7")
        record = await handle.status()
    assert probe.starts == []  # the first worker stopped before it was due
    assert record.state is JobState.SCHEDULED
    assert record.scheduled_at == pytest.approx(record.enqueued_at + 0.5)
    async with working(second):
        assert await handle.result(timeout=WAIT) == "analysed inbox-7"
    done = await handle.status()
    assert probe.starts == [(handle.id, 1)]
    assert done.scheduled_at is not None
    assert ran_at[0] >= done.scheduled_at  # never early
    assert done.started_at >= done.scheduled_at


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
async def test_critical_jobs_run_before_low_ones_queued_earlier(world: World) -> None:
    jobs = world.jobs()  # default topology: RabbitMQ work queues have x-max-priority
    order: list[str] = []

    @jobs.task
    async def alert(text: str) -> None:
        order.append(text)

    low = [await alert.options(priority="low").enqueue(f"low {n}") for n in range(3)]
    critical = [await alert.options(priority="critical").enqueue(f"critical {n}") for n in range(3)]
    async with working(jobs, concurrency=1):
        for handle in low + critical:
            await handle.result(timeout=WAIT)
    assert order == [f"critical {n}" for n in range(3)] + [f"low {n}" for n in range(3)]


# -- a worker that dies -----------------------------------------------------------------

DOOMED_WORKER = """
import sys

import anyio

import foxactors as fa
from foxactors.backends import RabbitMQBackend, RedisBackend
from foxactors.backends.redis import Leases
from foxactors.jobs import JobContext, JobQueue, RedisJobStore

broker, url, store_url, prefix, queue, idle = sys.argv[1:]
if broker == "redis":
    backend = RedisBackend(url, consumer="doomed", leases=Leases(claim_min_idle=float(idle)))
else:
    backend = RabbitMQBackend(url)
# its lease as the test's worker's: once it ran out, the job runs again elsewhere
jobs = JobQueue(backend, store=RedisJobStore(store_url, prefix=prefix), queue=queue, lease=1.0)


@jobs.task(name="cleanup")
async def cleanup(ctx: JobContext, batch: int) -> int:
    await ctx.progress(50, "half done in the doomed worker")
    await anyio.sleep_forever()
    return -1


async def main() -> None:
    async with fa.open_system(jobs.worker().build()):
        await anyio.sleep_forever()


anyio.run(main)
"""


async def test_a_job_whose_worker_is_killed_runs_again_as_attempt_two(
    world: World, tmp_path: Path
) -> None:
    jobs = world.jobs(lease=1.0, reap_interval=0.2)
    probe = Probe()

    @jobs.task(max_attempts=3)
    async def cleanup(ctx: JobContext, batch: int) -> int:
        probe.start(ctx)
        return batch * 2

    handle = await cleanup.enqueue(21)
    output = tmp_path / "doomed.log"
    arguments = [world.broker, world.server.url, world.redis.url, world.prefix, world.queue]
    with output.open("wb") as log:
        doomed = await anyio.open_process(
            [sys.executable, "-c", DOOMED_WORKER, *arguments, str(CLAIM_MIN_IDLE)],
            env={**os.environ, "PYTHONPATH": str(SRC)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    async with doomed:

        async def halfway() -> JobRecord | None:
            assert doomed.returncode is None, output.read_text()
            record = await handle.status()
            return record if record.progress == 50 else None

        try:
            running = await eventually(halfway, "the doomed worker runs the job")
        finally:
            doomed.send_signal(signal.SIGKILL)  # no drain, no release, no settlement
            await doomed.wait()
    assert (running.state, running.attempt) == (JobState.RUNNING, 1)
    assert (await handle.status()).state is JobState.RUNNING  # nobody told the store
    async with working(jobs):  # the broker delivers the job again, to this worker
        assert await handle.result(timeout=WAIT) == 42
    record = await handle.status()
    assert (record.state, record.attempt, record.result) == (JobState.SUCCEEDED, 2, 42)
    assert probe.starts == [(handle.id, 2)]


# -- a broker that is down --------------------------------------------------------------


async def test_a_broker_down_at_enqueue_fails_clearly_and_leaves_no_record_or_key(
    world: World,
) -> None:
    port = free_port()  # nothing listens there
    down: Any = (
        RedisBackend(f"redis://:hunter2@127.0.0.1:{port}/0")
        if world.broker == "redis"
        else RabbitMQBackend(f"amqp://guest:hunter2@127.0.0.1:{port}/")
    )
    store = world.store()
    jobs = JobQueue(down, store=store, queue=world.queue)

    @jobs.task
    async def send(to: str) -> None: ...

    with pytest.raises(BrokerUnreachable) as caught:
        await send.options(key="welcome:ada", unique=True, tenant="acme").enqueue("ada")
    name = "Redis" if world.broker == "redis" else "RabbitMQ"
    assert str(caught.value).startswith(f"cannot connect to {name} at ")
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(BrokerUnreachable):  # many at once: none recorded either
        await send.enqueue_many([{"to": "grace"}, {"to": "linus"}])
    assert (await jobs.list()).jobs == ()
    assert sum((await jobs.counts()).values()) == 0
    raw = aioredis.Redis.from_url(world.redis.url)
    try:
        left = [key async for key in raw.scan_iter(f"{world.prefix}:job:*")]
        assert left == []
        assert await raw.hlen(f"{world.prefix}:keys") == 0
    finally:
        await raw.aclose()
    await down.close()
    up = world.jobs(store)  # the broker is back: the key was never taken

    @up.task(name="send")
    async def send_again(to: str) -> None: ...

    again = await send_again.options(key="welcome:ada", unique=True, tenant="acme").enqueue("ada")
    assert again.created
    assert await world.waiting() == 1


@pytest.mark.parametrize(
    "broker",
    ["redis", "rabbitmq"],
)
async def test_a_worker_app_cancelled_from_outside_releases_its_job_to_the_next(
    world: World,
) -> None:
    jobs = world.jobs()
    probe = Probe()

    @jobs.task
    async def cleanup(ctx: JobContext, batch: int) -> int:
        probe.start(ctx)
        if ctx.attempt == 1:
            await anyio.sleep_forever()
        return batch * 2

    handle = await cleanup.enqueue(21)
    with anyio.CancelScope() as outside:
        async with working(jobs):
            with anyio.fail_after(WAIT):
                await probe.started.wait()
            outside.cancel()  # no drain: the running attempt is cancelled
            await anyio.sleep_forever()
    record = await handle.status()
    assert (record.state, record.attempt, record.reason) == (JobState.PENDING, 1, None)
    async with working(jobs):  # Redis: after the lease of the entry, claimed again
        assert await handle.result(timeout=6 * CLAIM_MIN_IDLE) == 42
    assert probe.starts == [(handle.id, 1), (handle.id, 2)]


@pytest.mark.parametrize("broker", ["rabbitmq"])
async def test_a_job_delivered_again_after_a_lost_connection_waits_for_its_attempt(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RabbitMQ requeues a job whose channel was lost while its attempt runs on here.

    The new delivery waits for that attempt instead of starting attempt 2 beside it;
    the attempt can still be cancelled, and then the waiting delivery finds the job
    cancelled and is acked. The handler ran once.
    """
    jobs = world.jobs(world.store())
    probe = Probe()
    waits = anyio.Event()  # set when a second delivery of the job waits for the first
    hold = RunningAttempts.hold

    async def noted(self: RunningAttempts, job_id: str, handle: Any) -> Any:
        if job_id in self._held:
            waits.set()
        return await hold(self, job_id, handle)

    monkeypatch.setattr(RunningAttempts, "hold", noted)

    @jobs.task
    async def summary(ctx: JobContext, inbox: str) -> str:
        probe.start(ctx)
        try:
            await anyio.sleep_forever()  # its delivery's channel is lost while it runs
        finally:
            probe.stopped.append(ctx.job_id)
        return "never"

    handle = await summary.enqueue("expensive")
    async with working(jobs):
        with anyio.fail_after(WAIT):
            await probe.started.wait()
        server: Any = world.server
        await anyio.to_thread.run_sync(server.ctl, "close_all_connections", "test")
        with anyio.fail_after(WAIT):
            await waits.wait()  # RabbitMQ delivered it again, to the new channel
        record = await handle.status()
        assert (record.state, record.attempt) == (JobState.RUNNING, 1)
        assert (await handle.cancel()).kind is CancelKind.REQUESTED
        with pytest.raises(JobCancelled):
            await handle.result(timeout=WAIT)
        backend = jobs.backend
        assert isinstance(backend, RabbitMQBackend)
        with anyio.fail_after(WAIT):  # the waiting delivery is settled (the broker counts)
            while (stats := await backend.queue_statistics(world.queue)).in_flight:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert stats.ready == 0  # acked, not given back
    assert probe.starts == [(handle.id, 1)]
    assert probe.stopped == [handle.id]


async def test_a_job_delivered_to_another_worker_while_it_runs_waits_out_the_lease(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two worker apps (two processes, as the store and broker see them), one job.

    While the first runs the job (renewing its lease), the broker delivers a copy to
    the second (here a duplicate publish; after a lost connection, a requeue). The
    second's start finds the attempt running under a live lease: it defers the copy
    past the lease, again while it is renewed; once the job has ended, the copy (back
    at either worker) finds it so and is acked. The handler ran once. Before, the
    second app started attempt 2 beside it.
    """
    answers: list[StartKind] = []  # what either worker's start was told

    def noted_store() -> RedisJobStore:
        store = world.store()
        start = store.start

        async def noted(job_id: str, now: float, lease_until: float) -> Any:
            started = await start(job_id, now, lease_until)
            answers.append(started.kind)
            return started

        monkeypatch.setattr(store, "start", noted)
        return store

    first = world.jobs(noted_store(), lease=1.0)
    second = world.jobs(noted_store(), lease=1.0)
    probe = Probe()
    finish = anyio.Event()

    for jobs in (first, second):

        @jobs.task(name="charge")
        async def charge(ctx: JobContext, cents: int) -> int:
            probe.start(ctx)
            await finish.wait()
            return cents

    handle = await first.enqueue("charge", {"cents": 500})
    async with fa.open_system(first.worker(concurrency=1, prefetch=1).build()):
        with anyio.fail_after(WAIT):
            await probe.started.wait()
        async with working(second):
            copy = fa.MessageProperties(message_type="charge", headers={JOB_ID_HEADER: handle.id})
            await second.backend.publish(world.queue, {"cents": 500}, properties=copy)

            async def deferred_twice() -> bool | None:
                return True if answers.count(StartKind.BUSY) >= 2 else None

            await eventually(deferred_twice, "the second worker defers the copy, twice")
            record = await handle.status()
            assert (record.state, record.attempt) == (JobState.RUNNING, 1)
            finish.set()
            assert await handle.result(timeout=WAIT) == 500

            async def copy_settled() -> bool | None:
                if StartKind.FINISHED not in answers:
                    return None
                for jobs in (first, second):  # each sees its own deferred and in flight
                    stats = await jobs.backend.queue_depth(world.queue)
                    if (stats.ready, stats.delayed, stats.in_flight) != (0, 0, 0):
                        return None
                return True

            # the copy comes back (to either worker), finds the job ended, is acked
            await eventually(copy_settled, "the copy is settled")
    assert probe.starts == [(handle.id, 1)]
    assert answers[0] is StartKind.RUN  # the first worker's; then only waits, then the end
    assert set(answers[1:]) == {StartKind.BUSY, StartKind.FINISHED}


async def test_enqueue_many_runs_its_jobs_in_order_and_a_failed_publish_leaves_no_record(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = world.jobs(world.store(db=1))  # not the broker's database: publish, then commit
    ran: list[int] = []

    @jobs.task
    async def note(n: int) -> None:
        ran.append(n)

    handles = await note.enqueue_many([{"n": n} for n in range(20)])
    async with working(jobs, concurrency=1):  # one at a time: the broker's order shows
        for handle in handles:
            await handle.result(timeout=WAIT)
    assert ran == list(range(20))
    backend = jobs.backend
    if isinstance(backend, fa.backends.BatchPublisher):  # one publish fails, alone
        real = backend.publish_many

        async def one_refused(queue: str, messages: Any, **options: Any) -> list[Any]:
            answers = await real(queue, messages[:1] + messages[2:], **options)
            return [answers[0], fa.BackendError("refused"), *answers[1:]]

        monkeypatch.setattr(backend, "publish_many", one_refused)
        with pytest.raises(fa.BackendError, match="refused"):
            await note.enqueue_many([{"n": n} for n in (100, 101, 102)])
        states = [r.state for r in (await jobs.list(limit=100)).jobs]
        assert states.count(JobState.PENDING) == 2  # committed; the refused one's record gone
        assert len(states) == 22


@pytest.mark.parametrize("broker", ["redis"])  # staged in the Redis backend's batcher
async def test_enqueue_many_cancelled_mid_publish_keeps_the_jobs_that_went_out(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = world.jobs(world.store(db=1))  # not the broker's database: publish, then commit

    @jobs.task
    async def note(n: int) -> None: ...

    backend = jobs.backend
    assert isinstance(backend, RedisBackend)
    await backend.publish(world.queue + "-warm", 0)  # connected: the batch goes out at once
    real = backend._adds._send

    async def slow(entries: Any) -> Any:
        await anyio.sleep(0.1)  # the batch is on its way when the cancel comes
        return await real(entries)

    monkeypatch.setattr(backend._adds, "_send", slow)
    with anyio.move_on_after(0.05) as cancelled:
        await note.enqueue_many([{"n": n} for n in range(3)])
    assert cancelled.cancelled_caught
    records = (await jobs.list()).jobs
    # the publish finished, shielded, and the records that went out were committed:
    # no reaper will take them for abandoned enqueues
    assert sorted(r.args["n"] for r in records) == [0, 1, 2]
    assert all(r.committed for r in records)
    assert await world.waiting() == 3


# -- one step: records on the Redis broker's own server and database --------------------


@pytest.mark.parametrize("broker", ["redis"])
async def test_a_job_due_now_is_written_with_its_delivery_in_one_script(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = world.jobs()

    @jobs.task
    async def double(n: int) -> int:
        return 2 * n

    async def not_in_one_step(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a job due now takes no publish and no commit of its own")

    real_publish, real_commit = jobs.backend.publish, jobs.store.commit
    monkeypatch.setattr(jobs.backend, "publish", not_in_one_step)
    monkeypatch.setattr(jobs.backend, "publish_many", not_in_one_step)
    monkeypatch.setattr(jobs.store, "commit", not_in_one_step)
    urgent = await double.options(priority=fa.Priority.CRITICAL, key="k1").enqueue(1)
    many = await double.enqueue_many([{"n": 2}, {"n": 3}])
    again = await double.options(key="k1").enqueue(9)  # the key's holder, nothing added
    assert (again.id, again.created) == (urgent.id, False)
    records = [await handle.status() for handle in (urgent, *many)]
    assert [(r.state, r.committed) for r in records] == [(JobState.PENDING, True)] * 3
    raw = aioredis.Redis.from_url(world.server.url)
    try:  # each delivery in the stream of its priority's level
        backend = jobs.backend
        assert isinstance(backend, RedisBackend)
        assert await raw.xlen(backend.stream_of(world.queue, fa.Priority.CRITICAL)) == 1
        assert await raw.xlen(world.queue) == 2
        assert await raw.zcard(f"{world.prefix}:uncommitted") == 0
    finally:
        await raw.aclose()
    monkeypatch.setattr(jobs.backend, "publish", real_publish)
    monkeypatch.setattr(jobs.store, "commit", real_commit)
    later = await double.options(delay=0.05).enqueue(4)  # delayed: the usual way
    assert (await later.status()).state is JobState.SCHEDULED
    async with working(jobs):
        assert [await h.result(timeout=WAIT) for h in (urgent, *many, later)] == [2, 4, 6, 8]


@pytest.mark.parametrize("broker", ["redis"])
async def test_a_job_whose_stream_redis_refuses_leaves_no_record_and_no_key(
    world: World,
) -> None:
    jobs = world.jobs()

    @jobs.task
    async def send(to: str) -> None: ...

    raw = aioredis.Redis.from_url(world.server.url)
    try:
        await raw.set(world.queue, "not a stream")
        with pytest.raises(fa.BackendError, match="pick another stream name") as caught:
            await send.options(key="welcome:ada", unique=True).enqueue("ada")
        assert f"stream {world.queue!r}" in str(caught.value)
        with pytest.raises(fa.BackendError, match="WRONGTYPE"):
            await send.enqueue_many([{"to": "grace"}, {"to": "linus"}])
        assert sum((await jobs.counts()).values()) == 0
        assert await raw.hlen(f"{world.prefix}:keys") == 0
        assert [key async for key in raw.scan_iter(f"{world.prefix}:job:*")] == []
        await raw.delete(world.queue)
    finally:
        await raw.aclose()
    again = await send.options(key="welcome:ada", unique=True).enqueue("ada")
    assert again.created
    assert await world.waiting() == 1


@pytest.mark.parametrize("broker", ["redis"])
async def test_a_store_on_another_database_publishes_and_commits_apart(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = world.jobs(world.store(db=1))
    published: list[str] = []
    assert isinstance(jobs.backend, RedisBackend)
    real = jobs.backend.publish_raw

    async def counted(queue: str, body: bytes, **options: Any) -> str:
        published.append(queue)
        return str(await real(queue, body, **options))

    monkeypatch.setattr(jobs.backend, "publish_raw", counted)

    @jobs.task
    async def note(n: int) -> int:
        return n

    handle = await note.enqueue(1)
    assert published == [world.queue]
    assert (await handle.status()).committed
    async with working(jobs):
        assert await handle.result(timeout=WAIT) == 1


@pytest.mark.parametrize("broker", ["redis"])
async def test_a_store_logged_in_as_a_user_kept_to_its_keys_still_enqueues(
    world: World,
) -> None:
    # the same server, another Redis user: its scripts may not touch the streams, so
    # the jobs go the three-step way (as the backend's user publishes them)
    user, password = f"jobs-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    raw: Any = aioredis.Redis.from_url(world.server.url)
    await raw.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", f"~{world.prefix}:*", "&*", "+@all"
    )
    port = world.redis.port
    store = RedisJobStore(f"redis://{user}:{password}@127.0.0.1:{port}/0", prefix=world.prefix)
    try:
        jobs = world.jobs(store)

        @jobs.task
        async def note(n: int) -> int:
            return n

        handles = [await note.enqueue(1), *await note.enqueue_many([{"n": 2}, {"n": 3}])]
        async with working(jobs):
            assert [await h.result(timeout=WAIT) for h in handles] == [1, 2, 3]
    finally:
        await store.close()
        await raw.execute_command("ACL", "DELUSER", user)
        await raw.aclose()
