"""Jobs end to end on the memory backend: a task, its records, and the worker that runs it.

Every test enqueues through `JobQueue`, runs a real job worker app (`jobs.worker`) on
the memory backend with a `MemoryJobStore`, and reads the records back. They run on
asyncio and trio in virtual time, with the records' clock on the loop's clock, so
delays, backoffs, leases and the reaper cost no wall-clock time. Plain ``def`` tasks
run on threads, which a jumping clock would race: their tests run in real time.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import pydantic
import pytest
import structlog

import foxactors as fa
from foxactors.jobs import (
    JOB_ID_HEADER,
    CancelKind,
    Exponential,
    JobAlreadyExists,
    JobArgumentsError,
    JobCancelled,
    JobContext,
    JobFailed,
    JobHandle,
    JobNotFound,
    JobQueue,
    JobRecord,
    JobRecordError,
    JobState,
    Linear,
    MemoryJobStore,
    Reject,
    Retry,
    Started,
    SyncJobContext,
    UnknownTask,
)

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0  # the records' wall clock at the loop's time zero (2027-01-15)
QUEUE = "jobs"
WAIT = 30.0  # seconds a test waits for a job's end before it fails (virtual, mostly)

REAL_TIME = pytest.mark.parametrize(
    "anyio_backend", [("asyncio", {}), ("trio", {})], ids=["asyncio", "trio"]
)
"""For tests with plain ``def`` tasks: their threads run in real time, so must the loop."""


def now() -> float:
    """The records' clock: wall-clock seconds that follow the loop's (virtual) clock."""
    return T0 + anyio.current_time()


def moment(seconds: float) -> datetime.datetime:
    """The aware datetime of the records' clock at ``seconds``."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def queue_of(backend: fa.MemoryBackend | None = None, **options: Any) -> JobQueue:
    """A job queue on the memory backend whose records follow the loop's clock."""
    options.setdefault("clock", now)
    return JobQueue(backend or fa.MemoryBackend(), queue=QUEUE, **options)


@asynccontextmanager
async def working(jobs: JobQueue, queue: str = QUEUE, **options: Any) -> AsyncIterator[None]:
    """A job worker app of ``queue`` running for the block."""
    async with fa.open_system(jobs.worker(queue, **options).build()):
        yield


async def wait_for(handle: JobHandle[Any], check: Callable[[JobRecord], bool]) -> JobRecord:
    """The job's record once ``check`` holds, read as a dashboard would (small steps)."""
    with anyio.fail_after(WAIT):
        while not check(record := await handle.status()):
            await anyio.sleep(0.01)
    return record


def dead_letter_reasons(backend: fa.MemoryBackend, queue: str = QUEUE) -> list[str]:
    return [letter.reason for letter in backend.dead_letters(queue)]


# -- 1. tasks --------------------------------------------------------------------------


async def test_an_async_task_returns_its_result_through_the_handle() -> None:
    jobs = queue_of()

    @jobs.task
    async def add(a: int, b: int = 1) -> int:
        return a + b

    handle = await add.enqueue(2, b=40)
    assert (await handle.status()).state is JobState.PENDING
    with pytest.raises(TimeoutError):
        await handle.result(timeout=1)  # no worker yet: it waits, then gives up
    async with working(jobs):
        assert await handle.result(timeout=WAIT) == 42
    record = await handle.status()
    assert (record.state, record.result, record.attempt, record.progress) == (
        JobState.SUCCEEDED,
        42,
        1,
        100.0,
    )
    assert record.enqueued_at <= record.started_at <= record.finished_at  # type: ignore[operator]


class Invoice(pydantic.BaseModel):
    number: int
    due: datetime.date


async def test_arguments_and_result_arrive_as_their_declared_types() -> None:
    jobs = queue_of()
    seen: list[Any] = []

    @jobs.task
    async def bill(invoice: Invoice, at: datetime.datetime) -> Invoice:
        seen.append((invoice, at))
        return invoice.model_copy(update={"number": invoice.number + 1})

    at = datetime.datetime(2026, 12, 2, 9, 30, tzinfo=datetime.UTC)
    handle = await bill.enqueue(Invoice(number=7, due=datetime.date(2027, 1, 31)), at=at)
    stored = (await handle.status()).args
    assert stored == {"invoice": {"number": 7, "due": "2027-01-31"}, "at": "2026-12-02T09:30:00Z"}
    async with working(jobs):
        result = await handle.result(timeout=WAIT)
    assert result == Invoice(number=8, due=datetime.date(2027, 1, 31))
    assert seen == [(Invoice(number=7, due=datetime.date(2027, 1, 31)), at)]
    assert (await handle.status()).result == {"number": 8, "due": "2027-01-31"}  # stored as JSON
    assert await jobs.handle(handle.id).result(timeout=0) == result  # by id: its task converts


async def test_a_task_by_name_and_many_at_once_run_like_any_other() -> None:
    jobs = queue_of()

    @jobs.task
    async def double(n: int) -> int:
        return 2 * n

    named = await jobs.enqueue("double", {"n": 5})
    many = await double.enqueue_many([{"n": 1}, {"n": 2}, {"n": 3}])
    assert len({h.id for h in (named, *many)}) == 4
    async with working(jobs):
        assert [await h.result(timeout=WAIT) for h in (named, *many)] == [10, 2, 4, 6]
    assert (await jobs.counts())[JobState.SUCCEEDED] == 4


@REAL_TIME
async def test_a_sync_task_runs_on_a_worker_thread_never_the_loop() -> None:
    jobs = queue_of()
    loop_thread = threading.get_ident()

    @jobs.task
    def where(ctx: SyncJobContext, label: str) -> list[Any]:
        ctx.progress(50, f"{label}: half way")  # from the thread, into the loop's store
        return [threading.get_ident(), ctx.attempt]

    handle = await where.enqueue("thumb")
    async with working(jobs):
        thread, attempt = await handle.result(timeout=WAIT)
    assert thread != loop_thread
    assert attempt == 1
    record = await handle.status()
    assert (record.state, record.progress_message) == (JobState.SUCCEEDED, "thumb: half way")


@REAL_TIME
async def test_sync_tasks_have_their_own_thread_limiter_sized_to_the_concurrency() -> None:
    jobs = queue_of()
    pair = threading.Barrier(2, timeout=WAIT)  # two run at once, or the job fails
    lock = threading.Lock()
    inside = most = 0

    @jobs.task(max_attempts=1)
    def meet(n: int) -> int:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        pair.wait()
        with lock:
            inside -= 1
        return n

    shared = anyio.to_thread.current_default_thread_limiter()
    shared.total_tokens = 1
    await shared.acquire()  # anyio's shared limiter is full: a task waiting on it never runs
    try:
        handles = [await meet.enqueue(n) for n in range(4)]
        async with working(jobs, concurrency=2):
            assert [await h.result(timeout=WAIT) for h in handles] == [0, 1, 2, 3]
    finally:
        shared.release()
    assert most == 2


class ResizeImage:
    """A job type declared as a class: its defaults are class attributes."""

    name = "resize_image"
    queue = "images"
    priority = "high"
    max_attempts = 2
    timeout = 30.0
    retry_on = (ConnectionError,)
    backoff = Linear(step=4)

    async def run(self, ctx: JobContext, path: str, width: int) -> dict[str, Any]:
        if ctx.attempt == 1:
            raise ConnectionError("storage busy")
        return {"path": path, "width": width, "attempt": ctx.attempt}


async def test_a_class_declares_a_task_with_its_defaults() -> None:
    jobs = queue_of()
    resize = jobs.task(ResizeImage)
    assert resize.defaults == type(resize.defaults)(
        "resize_image", "images", 6, 2, 30.0, (ConnectionError,), Linear(step=4)
    )
    assert jobs.tasks == {"resize_image": resize}
    handle = await resize.enqueue("cat.png", 200)
    record = await handle.status()
    assert (record.task, record.queue, record.priority, record.max_attempts) == (
        "resize_image",
        "images",
        6,
        2,
    )
    async with working(jobs, "images"):
        assert await handle.result(timeout=WAIT) == {"path": "cat.png", "width": 200, "attempt": 2}


async def test_options_given_to_the_decorator_win_over_the_class_attributes() -> None:
    jobs = queue_of()
    thumb = jobs.task(name="thumbnail", max_attempts=7, priority="low")(ResizeImage)
    assert (thumb.name, thumb.queue, thumb.defaults.max_attempts, thumb.defaults.priority) == (
        "thumbnail",
        "images",
        7,
        0,
    )
    assert thumb.defaults.retry_on == (ConnectionError,)


async def test_options_override_the_task_defaults_for_one_enqueue_only() -> None:
    jobs = queue_of()

    @jobs.task(priority="low", max_attempts=2)
    async def send(to: str) -> str:
        return to

    chosen = await send.options(
        priority="critical", max_attempts=5, queue="urgent", tenant="acme"
    ).enqueue("ada")
    plain = await send.enqueue("bob")
    record = await chosen.status()
    assert (record.priority, record.max_attempts, record.queue, record.tenant) == (
        9,
        5,
        "urgent",
        "acme",
    )
    other = await plain.status()
    assert (other.priority, other.max_attempts, other.queue, other.tenant) == (0, 2, QUEUE, None)
    async with working(jobs, "urgent"):
        assert await chosen.result(timeout=WAIT) == "ada"
    assert (await plain.status()).state is JobState.PENDING  # its queue has no worker yet


async def test_the_context_knows_its_job_and_reports_progress_while_it_runs() -> None:
    jobs = queue_of()
    reported, go = anyio.Event(), anyio.Event()
    seen: list[tuple[Any, ...]] = []

    @jobs.task
    async def look(ctx: JobContext, n: int) -> int:
        ctx.log.info("job.looked", n=n)
        await ctx.progress(40, "step 2 of 5")
        seen.append(
            (ctx.job_id, ctx.task, ctx.queue, ctx.attempt, ctx.max_attempts, ctx.tenant)
        )
        seen.append((ctx.cancel_requested,))
        reported.set()
        await go.wait()
        return n

    handle = await look.options(tenant="acme", max_attempts=4).enqueue(7)
    with structlog.testing.capture_logs() as logs:
        async with working(jobs):
            await reported.wait()
            record = await handle.status()
            assert (record.state, record.progress, record.progress_message) == (
                JobState.RUNNING,
                40.0,
                "step 2 of 5",
            )
            assert record.lease_until is not None
            assert record.lease_until > now()
            go.set()
            assert await handle.result(timeout=WAIT) == 7
    assert seen == [(handle.id, "look", QUEUE, 1, 4, "acme"), (False,)]
    (line,) = [entry for entry in logs if entry["event"] == "job.looked"]
    assert {k: line[k] for k in ("job_id", "task", "attempt", "tenant", "n")} == {
        "job_id": handle.id,
        "task": "look",
        "attempt": 1,
        "tenant": "acme",
        "n": 7,
    }


async def test_progress_out_of_range_is_refused_in_the_task() -> None:
    jobs = queue_of()

    @jobs.task(max_attempts=1)
    async def eager(ctx: JobContext) -> None:
        await ctx.progress(150, "more than done")

    handle = await eager.enqueue()
    async with working(jobs):
        with pytest.raises(JobFailed) as failed:
            await handle.result(timeout=WAIT)
    assert "progress must be a number from 0 to 100, got 150" in str(failed.value.record.reason)


# -- 3. results ------------------------------------------------------------------------


async def test_a_result_over_the_size_limit_fails_the_job_and_the_worker_goes_on() -> None:
    jobs = queue_of(max_result_size=64)

    @jobs.task(max_attempts=3)
    async def report(size: int) -> str:
        return "x" * size

    big, small = await report.enqueue(200), await report.enqueue(10)
    async with working(jobs, concurrency=1):
        with pytest.raises(JobFailed) as failed:
            await big.result(timeout=WAIT)
        assert await small.result(timeout=WAIT) == "x" * 10
    record = failed.value.record
    assert record.state is JobState.DEAD
    assert record.attempt == 1  # not retried: the same result would be refused again
    assert record.result is None
    assert "over max_result_size (64 bytes" in str(record.reason)
    assert dead_letter_reasons(jobs.backend) == [record.reason]  # type: ignore[arg-type]


async def test_a_result_that_cannot_be_encoded_fails_the_job_and_the_worker_goes_on() -> None:
    jobs = queue_of()

    @jobs.task
    async def odd(kind: str) -> Any:
        return {"set": {1, 2}, "object": object(), "ok": "fine"}[kind]

    bad, good = await odd.enqueue("object"), await odd.enqueue("ok")
    async with working(jobs, concurrency=1):
        with pytest.raises(JobFailed) as failed:
            await bad.result(timeout=WAIT)
        assert await good.result(timeout=WAIT) == "fine"
    record = failed.value.record
    assert (record.state, record.attempt, record.result) == (JobState.DEAD, 1, None)
    assert str(record.reason).startswith("its result cannot be stored: ")
    assert record.error is not None
