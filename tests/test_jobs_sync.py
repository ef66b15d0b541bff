"""`SyncJobQueue`: jobs from threads that run no event loop, on memory and on real brokers.

Memory runs on asyncio and trio, in real time (threads do the calling: a virtual clock
would jump while they work). The brokers run on asyncio against the suite's servers.
Records shared between the client's loop and a worker's live in a `RedisJobStore`.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import anyio
import anyio.to_thread
import pydantic
import pytest

import foxactors as fa
import foxactors.jobs
from foxactors.backends import Backend, BrokerUnreachable, RabbitMQBackend, RedisBackend
from foxactors.jobs import (
    CancelKind,
    JobAlreadyExists,
    JobArgumentsError,
    JobCancelled,
    JobQueue,
    JobState,
    JobStore,
    MemoryJobStore,
    SyncJobQueue,
    UnknownTask,
)
from foxactors.jobs._sync_loop import fresh_backend
from foxactors.testing.servers import RabbitMQ, RedisServer, free_port

from .brokers import BROKERS, case

pytestmark = pytest.mark.anyio

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
THREADS = 24
WAIT = 30.0  # real seconds a thread waits for a result before the test fails


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return (request.param, {})  # real time: threads call in


ON_ASYNCIO = pytest.mark.parametrize("anyio_backend", [("asyncio", {})], ids=["asyncio"])


def in_threads(count: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(i)`` in ``count`` plain threads released at once; their results in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=WAIT)
            results[index] = work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


async def from_threads(count: int, work: Callable[[int], T]) -> list[T]:
    """`in_threads`, awaited from the loop (which goes on running meanwhile)."""
    return await anyio.to_thread.run_sync(in_threads, count, work)


@asynccontextmanager
async def working(jobs: JobQueue) -> AsyncIterator[None]:
    async with fa.open_system(jobs.worker(concurrency=8).build()):
        yield


class Receipt(pydantic.BaseModel):
    to: str
    at: datetime.datetime


def memory_jobs() -> JobQueue:
    return JobQueue(fa.MemoryBackend(), queue="emails")


# -- memory: the calls go to the app's loop ---------------------------------------------


async def test_threads_with_one_key_make_exactly_one_job_on_memory() -> None:
    jobs = memory_jobs()

    @jobs.task
    async def send(to: str) -> str:
        return to

    sync = SyncJobQueue(jobs)  # made in the loop: any thread may use it
    handles = await from_threads(
        THREADS, lambda n: sync.enqueue(send.options(key="welcome"), f"user{n}@example.com")
    )
    assert len({h.id for h in handles}) == 1
    assert sum(h.created for h in handles) == 1
    counts = await jobs.counts()
    assert sum(counts.values()) == 1
    assert counts[JobState.PENDING] == 1


async def test_threads_enqueue_distinct_jobs_and_all_run_on_memory() -> None:
    jobs = memory_jobs()
    sent: list[str] = []

    @jobs.task
    async def send(to: str) -> str:
        sent.append(to)
        return to.upper()

    sync = SyncJobQueue(jobs)

    def produce(n: int) -> list[str]:
        one = sync.enqueue(send, f"a{n}")
        named = sync.enqueue("send", {"to": f"b{n}"})
        many = sync.enqueue_many(send, [{"to": f"c{n}"}, {"to": f"d{n}"}])
        return [h.result(timeout=WAIT) for h in (one, named, *many)]

    async with working(jobs):
        results = await from_threads(THREADS, produce)
    expected = [[f"{p}{n}".upper() for p in "abcd"] for n in range(THREADS)]
    assert results == expected
    assert sorted(sent) == sorted(f"{p}{n}" for p in "abcd" for n in range(THREADS))
    assert (await jobs.counts())[JobState.SUCCEEDED] == 4 * THREADS


async def test_the_sync_calls_mirror_the_async_ones() -> None:
    jobs = memory_jobs()

    @jobs.task(max_attempts=2)
    async def receipt(to: str, at: datetime.datetime) -> Receipt:
        return Receipt(to=to, at=at)

    sync = SyncJobQueue(jobs)
    at = datetime.datetime(2026, 12, 2, 9, 30, tzinfo=datetime.UTC)
    run_at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)

    def produce() -> dict[str, Any]:  # no worker runs yet
        later = sync.enqueue(
            receipt.options(run_at=run_at, priority="high", tenant="acme", max_attempts=5),
            "ada@example.com",
            at=at,
        )
        other = sync.enqueue("receipt", {"to": "bob", "at": at}, queue="urgent", delay=3600)
        keyed = sync.enqueue(receipt.options(key="k1"), "grace", at=at)
        again = sync.enqueue(receipt.options(key="k1"), "grace", at=at)
        try:
            sync.enqueue(receipt.options(key="k1", unique=True), "grace", at=at)
            refused = None
        except JobAlreadyExists as exc:
            refused = exc.job_id
        return {
            "later": later.status(),
            "other": sync.get(other.id),
            "keyed": (keyed.id, keyed.created, again.id, again.created, refused),
            "cancelled": later.cancel().kind,
            "page": [r.id for r in sync.list(state="cancelled").jobs],
            "counts": sync.counts(tenant="acme")[JobState.CANCELLED],
            "retried": sync.retry(later.id).status().state,
            "now": sync.enqueue(receipt, "linus", at=at).id,
        }

    got = await anyio.to_thread.run_sync(produce)
    later = got["later"]
    assert (later.state, later.priority, later.tenant, later.max_attempts) == (
        JobState.SCHEDULED,
        6,
        "acme",
        5,
    )
    assert later.scheduled_at == pytest.approx(run_at.timestamp())
    assert (got["other"].queue, got["other"].state) == ("urgent", JobState.SCHEDULED)
    keyed_id, keyed_created, again_id, again_created, refused = got["keyed"]
    assert (keyed_created, again_created, again_id, refused) == (True, False, keyed_id, keyed_id)
    assert got["cancelled"] is CancelKind.CANCELLED
    assert got["page"] == [later.id]
    assert got["counts"] == 1
    assert got["retried"] is JobState.PENDING
    async with working(jobs):
        by_id = await anyio.to_thread.run_sync(lambda: sync.handle(got["now"]).result(timeout=WAIT))
    assert by_id == Receipt(to="linus", at=at)  # converted back by the task's return type


async def test_results_errors_come_through_as_the_async_ones() -> None:
    jobs = memory_jobs()

    @jobs.task
    async def slow() -> None:
        await anyio.sleep_forever()

    sync = SyncJobQueue(jobs)

    def produce() -> list[str]:
        handle = sync.enqueue(slow)
        seen = []
        try:
            handle.result(timeout=0.05)
        except TimeoutError:
            seen.append("timeout")
        handle.cancel()
        try:
            handle.result(timeout=WAIT)
        except JobCancelled:
            seen.append("cancelled")
        return seen

    assert await anyio.to_thread.run_sync(produce) == ["timeout", "cancelled"]


async def test_bad_input_is_refused_in_the_calling_thread_before_anything_is_sent() -> None:
    jobs = memory_jobs()

    @jobs.task
    async def send(to: str, count: int = 1) -> None: ...

    other = memory_jobs()

    @other.task(name="elsewhere")
    async def elsewhere() -> None: ...

    sync = SyncJobQueue(jobs)

    def mistakes() -> list[tuple[str, str]]:
        found = []
        for mistake in (
            lambda: sync.enqueue("sned", {"to": "ada"}),
            lambda: sync.enqueue(send, "ada", count="many"),  # type: ignore[arg-type]
            lambda: sync.enqueue(elsewhere),
            lambda: sync.enqueue("send", {"to": "ada"}, {"count": 2}),  # type: ignore[call-overload]
            lambda: sync.enqueue("send", {"to": "ada"}, delay=-1),
        ):
            try:
                mistake()
            except fa.ConfigurationError as exc:
                found.append((type(exc).__name__, str(exc)))
        return found

    found = await anyio.to_thread.run_sync(mistakes)
    assert [kind for kind, _ in found] == [
        "UnknownTask",
        "JobArgumentsError",
        "ConfigurationError",
        "ConfigurationError",
        "ConfigurationError",
    ]
    assert "registered: send" in found[0][1]
    assert "count" in found[1][1]
    assert "another JobQueue" in found[2][1]
    assert "one mapping" in found[3][1]
    assert "delay" in found[4][1]
    assert sum((await jobs.counts()).values()) == 0
    assert issubclass(UnknownTask, fa.ConfigurationError)
    assert issubclass(JobArgumentsError, fa.ConfigurationError)


async def test_made_outside_the_loop_it_works_from_the_loops_worker_threads_only() -> None:
    jobs = memory_jobs()

    @jobs.task
    async def send(to: str) -> str:
        return to

    sync = await anyio.to_thread.run_sync(SyncJobQueue, jobs)  # no loop in that thread
    handle = await anyio.to_thread.run_sync(lambda: sync.enqueue(send, "ada"))  # a worker thread
    assert (await jobs.get(handle.id)).args == {"to": "ada"}
    with pytest.raises(fa.ConfigurationError, match="make the SyncJobQueue inside that loop"):
        await from_threads(1, lambda _: sync.enqueue(send, "bob"))  # a thread of its own
    assert sum((await jobs.counts()).values()) == 1


async def test_a_blocking_call_from_an_event_loop_is_refused_not_deadlocked() -> None:
    jobs = memory_jobs()

    @jobs.task
    async def send(to: str) -> None: ...

    sync = SyncJobQueue(jobs)
    with pytest.raises(fa.ConfigurationError, match="await the async API here"):
        sync.enqueue(send, "ada")
    assert sum((await jobs.counts()).values()) == 0


async def test_a_memory_client_outlives_its_loop_only_to_say_so() -> None:
    jobs = memory_jobs()

    async def make() -> SyncJobQueue:
        return SyncJobQueue(jobs)

    sync = await anyio.to_thread.run_sync(lambda: anyio.run(make))  # a loop that has ended
    with pytest.raises(fa.ConfigurationError, match="has ended"):
        await from_threads(1, lambda _: sync.counts())


def test_the_choice_of_connections_is_checked() -> None:
    memory = memory_jobs()
    with pytest.raises(fa.ConfigurationError, match="without backend= or store="):
        SyncJobQueue(memory, store=MemoryJobStore)
    other_store = cast(JobStore, _OtherStore(MemoryJobStore()))
    rabbit = JobQueue(RabbitMQBackend("amqp://guest:guest@127.0.0.1:1/"), store=other_store)
    with pytest.raises(fa.ConfigurationError, match="pass store="):
        SyncJobQueue(rabbit)
    with pytest.raises(fa.ConfigurationError, match="takes a function"):
        SyncJobQueue(rabbit, store=MemoryJobStore())  # type: ignore[arg-type]
    custom = JobQueue(cast(Backend, _OddBackend(fa.MemoryBackend())), store=other_store)
    with pytest.raises(fa.ConfigurationError, match="cannot copy a _OddBackend: pass backend="):
        SyncJobQueue(custom, store=MemoryJobStore)
    with pytest.raises(fa.ConfigurationError, match="must be a JobQueue"):
        SyncJobQueue(object())  # type: ignore[arg-type]


def test_a_fresh_backend_is_configured_as_the_apps() -> None:
    rabbit = RabbitMQBackend("amqp://u:p@h:1/v", codec=fa.JsonCodec(max_size=10), persistent=False)
    copy = fresh_backend(rabbit)()
    assert isinstance(copy, RabbitMQBackend)
    assert copy is not rabbit
    assert (copy.url, copy.codec, copy.topology, copy.persistent) == (
        rabbit.url,
        rabbit.codec,
        rabbit.topology,
        False,
    )
    redis = RedisBackend(
        "redis://h:1/2",
        group="g",
        consumer="c",
        maxlen=100,
        block=2.0,
        poll_interval=0.5,
        health_interval=3.0,
        dead_letter_stream="dead:{stream}",
        delayed_set="later:{stream}",
        payload_field="body",
    )
    twin = fresh_backend(redis)()
    assert isinstance(twin, RedisBackend)
    names = [
        "url",
        "group",
        "consumer",
        "codec",
        "leases",
        "maxlen",
        "block",
        "poll_interval",
        "health_interval",
        "payload_field",
    ]
    assert [getattr(twin, n) for n in names] == [getattr(redis, n) for n in names]
    assert (twin.dead_letter_stream("q"), twin.delayed_set("q")) == ("dead:q", "later:q")


class _Delegate:
    """Another kind of object with the same methods as the one it wraps."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _OtherStore(_Delegate):
    """A store that is not the memory one, as a RedisJobStore is not."""


class _OddBackend(_Delegate):
    """A backend of a kind the client does not know."""


# -- brokers: the client's own loop and connections --------------------------------------


@pytest.fixture
def queue() -> str:
    return f"jobs-{uuid.uuid4().hex[:8]}"


def broker_server(broker: str, request: pytest.FixtureRequest) -> RabbitMQ | RedisServer:
    server: RabbitMQ | RedisServer = request.getfixturevalue(broker)
    return server


async def waiting(broker: str, server: Any, queue: str, expected: int) -> list[str]:
    """The job ids of the messages in the broker's ``queue``, left there.

    Takes ``expected`` messages, then looks half a second for one more (an extra
    publish would be there already: every enqueue waited for its publish).
    """
    backend: Any = RabbitMQBackend(server.url) if broker == "rabbitmq" else RedisBackend(server.url)
    held: list[fa.Delivery] = []  # held until the source closes and returns them
    try:
        source = await backend.open_source(queue, prefetch=expected + 1)
        try:
            with anyio.fail_after(WAIT):
                while len(held) < expected:
                    held += await source.receive(expected + 1)
            with anyio.move_on_after(0.5):
                held += await source.receive(1)
            return [d.message.properties.headers["x-job-id"] for d in held]
        finally:
            await source.close()
    finally:
        await backend.close()


async def connections(jobs: JobQueue) -> int:
    """Connections the client's backend opened (run on its loop by `SyncJobQueue.run`)."""
    return jobs.backend.statistics().connects


def own_client(jobs: JobQueue, store: Callable[[], JobStore] = MemoryJobStore) -> SyncJobQueue:
    """A client with its own loop; the memory store records what its loop saw."""
    return SyncJobQueue(jobs, store=store)


@ON_ASYNCIO
@pytest.mark.parametrize("broker", BROKERS)
async def test_threads_with_one_key_make_one_job_and_publish_it_once(
    broker: str, queue: str, request: pytest.FixtureRequest
) -> None:
    server = broker_server(broker, request)
    jobs = JobQueue(case(broker, server).backend, queue=queue)

    @jobs.task
    async def send(to: str) -> None: ...

    with own_client(jobs) as sync:
        handles = await from_threads(
            THREADS, lambda n: sync.enqueue(send.options(key="one"), f"u{n}")
        )
        counts = await anyio.to_thread.run_sync(sync.counts)
    assert len({h.id for h in handles}) == 1
    assert sum(h.created for h in handles) == 1
    assert sum(counts.values()) == counts[JobState.PENDING] == 1
    assert await waiting(broker, server, queue, 1) == [handles[0].id]


@ON_ASYNCIO
@pytest.mark.parametrize("broker", BROKERS)
async def test_threads_enqueueing_distinct_jobs_record_and_publish_them_all(
    broker: str, queue: str, request: pytest.FixtureRequest
) -> None:
    server = broker_server(broker, request)
    jobs = JobQueue(case(broker, server).backend, queue=queue)

    @jobs.task
    async def send(to: str) -> None: ...

    with own_client(jobs) as sync:
        handles = await from_threads(
            THREADS,
            lambda n: [
                sync.enqueue(send, f"a{n}"),
                *sync.enqueue_many(send, [{"to": f"b{n}"}, {"to": f"c{n}"}]),
            ],
        )
        ids = {h.id for batch in handles for h in batch}
        page = await anyio.to_thread.run_sync(lambda: sync.list(limit=1000))
        connects = await anyio.to_thread.run_sync(sync.run, connections)
    assert connects == 1  # 24 threads' first publishes at once: one publishing connection
    assert len(ids) == 3 * THREADS
    assert {r.id for r in page.jobs} == ids
    assert {r.state for r in page.jobs} == {JobState.PENDING}
    assert sorted(await waiting(broker, server, queue, len(ids))) == sorted(ids)


@ON_ASYNCIO
@pytest.mark.parametrize("broker", BROKERS)
async def test_threads_calling_into_an_apps_loop_on_a_broker_get_every_job_run(
    broker: str, queue: str, request: pytest.FixtureRequest
) -> None:
    server = broker_server(broker, request)
    jobs = JobQueue(case(broker, server).backend, queue=queue)  # records in this loop

    @jobs.task
    async def double(n: int) -> int:
        return 2 * n

    sync = SyncJobQueue(jobs)  # a memory store: the calls come to this loop
    async with working(jobs):
        results = await from_threads(
            THREADS, lambda n: sync.enqueue(double, n).result(timeout=WAIT)
        )
    assert results == [2 * n for n in range(THREADS)]
    await jobs.backend.close()


@ON_ASYNCIO
@pytest.mark.parametrize("broker", BROKERS)
async def test_a_broker_that_is_down_fails_the_enqueue_clearly_and_reserves_nothing(
    broker: str,
) -> None:
    port = free_port()  # nothing listens there
    backend: Any = (
        RabbitMQBackend(f"amqp://guest:hunter2@127.0.0.1:{port}/")
        if broker == "rabbitmq"
        else RedisBackend(f"redis://:hunter2@127.0.0.1:{port}/0")
    )
    jobs = JobQueue(backend, queue="down")

    @jobs.task
    async def send(to: str) -> None: ...

    def attempt() -> list[str]:
        with own_client(jobs) as sync:
            errors = []
            for _ in range(2):  # the same key twice: the first left it free
                try:
                    sync.enqueue(send.options(key="k", unique=True), "ada")
                except BrokerUnreachable as exc:
                    errors.append(str(exc))
            assert sync.list().jobs == ()
            assert sum(sync.counts().values()) == 0
            return errors

    errors = await anyio.to_thread.run_sync(attempt)
    assert len(errors) == 2
    name = "RabbitMQ" if broker == "rabbitmq" else "Redis"
    assert errors[0].startswith(f"cannot connect to {name} at ")
    assert f"127.0.0.1:{port}" in errors[0]
    assert all("hunter2" not in e for e in errors)


@ON_ASYNCIO
async def test_close_stops_the_thread_and_later_calls_say_closed(redis: RedisServer) -> None:
    jobs = JobQueue(RedisBackend(redis.url), queue=f"q-{uuid.uuid4().hex[:8]}")

    @jobs.task
    async def send(to: str) -> None: ...

    def loop_threads() -> int:
        return sum(t.name == "foxactors-sync-jobs" for t in threading.enumerate())

    def use() -> tuple[int, int, int, str]:
        sync = own_client(jobs)
        before = loop_threads()  # started on first use, not before
        sync.enqueue(send, "ada")
        during = loop_threads()
        sync.close()
        sync.close()  # twice is fine
        try:
            sync.enqueue(send, "bob")
        except fa.ConfigurationError as exc:
            return before, during, loop_threads(), str(exc)
        return before, during, loop_threads(), ""

    before, during, after, error = await anyio.to_thread.run_sync(use)
    assert (before, during, after) == (0, 1, 0)
    assert "closed" in error


def test_a_script_that_never_closes_its_client_still_exits(redis: RedisServer) -> None:
    script = f"""
import foxactors.jobs as fj
from foxactors.backends import RedisBackend

jobs = fj.JobQueue(RedisBackend({redis.url!r}), queue="exit-{uuid.uuid4().hex[:8]}")

@jobs.task
async def send(to: str) -> None: ...

sync = fj.SyncJobQueue(jobs, store=fj.MemoryJobStore)
print(sync.enqueue(send, "ada").status().state.value)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "pending\n", "")


# -- with the Redis job store: a client's loop and a worker's share the records ----------


@ON_ASYNCIO
@pytest.mark.parametrize("broker", BROKERS)
async def test_jobs_from_the_clients_own_loop_run_on_a_worker_and_read_back(
    broker: str, queue: str, request: pytest.FixtureRequest, redis: RedisServer
) -> None:
    server = broker_server(broker, request)
    store_class = foxactors.jobs.RedisJobStore
    prefix = f"fx:test:{uuid.uuid4().hex[:8]}"
    jobs = JobQueue(
        case(broker, server).backend, store=store_class(redis.url, prefix=prefix), queue=queue
    )

    @jobs.task
    async def double(n: int) -> int:
        return 2 * n

    def produce(n: int) -> tuple[str, bool, int]:
        keyed = sync.enqueue(double.options(key="shared"), 1000)
        return keyed.id, keyed.created, sync.enqueue(double, n).result(timeout=WAIT)

    with SyncJobQueue(jobs, store=lambda: store_class(redis.url, prefix=prefix)) as sync:
        async with working(jobs):
            got = await from_threads(THREADS, produce)
            shared = await jobs.handle(got[0][0]).result(timeout=WAIT)
    assert [doubled for _, _, doubled in got] == [2 * n for n in range(THREADS)]
    assert len({job_id for job_id, _, _ in got}) == 1
    assert sum(created for _, created, _ in got) == 1
    assert shared == 2000
    counts = await jobs.counts()
    assert counts[JobState.SUCCEEDED] == THREADS + 1
    assert sum(counts.values()) == THREADS + 1
    await jobs.close()
    await jobs.backend.close()


@ON_ASYNCIO
async def test_a_broker_down_leaves_no_record_and_no_key_in_the_redis_store(
    redis: RedisServer,
) -> None:
    store_class = foxactors.jobs.RedisJobStore
    prefix = f"fx:test:{uuid.uuid4().hex[:8]}"
    down = JobQueue(RabbitMQBackend(f"amqp://guest:guest@127.0.0.1:{free_port()}/"), queue="q")
    up = JobQueue(RedisBackend(redis.url), queue=f"q-{uuid.uuid4().hex[:8]}")
    sends = []
    for jobs in (down, up):

        @jobs.task
        async def send(to: str) -> None: ...

        sends.append(send)

    def attempt() -> tuple[int, bool]:
        with SyncJobQueue(down, store=lambda: store_class(redis.url, prefix=prefix)) as sync:
            with pytest.raises(BrokerUnreachable):
                sync.enqueue(sends[0].options(key="k", unique=True), "ada")
            left = len(sync.list().jobs)
        with SyncJobQueue(up, store=lambda: store_class(redis.url, prefix=prefix)) as sync:
            return left, sync.enqueue(sends[1].options(key="k", unique=True), "ada").created

    assert await anyio.to_thread.run_sync(attempt) == (0, True)  # the key was left free
