"""Jobs end to end on the memory backend: a task, its records, and the worker that runs it.

Every test enqueues through `JobQueue`, runs a real job worker app (`jobs.worker`) on
the memory backend with a `MemoryJobStore`, and reads the records back. They run on
asyncio and trio in virtual time, with the records' clock on the loop's clock, so
delays, backoffs, leases and the reaper cost no wall-clock time. Plain ``def`` tasks
run on threads, which a jumping clock would race: their tests run in real time.
"""

from __future__ import annotations

import datetime
import itertools
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pydantic
import pytest
import structlog

import foxactors as fa
from foxactors.backends import QueueStatistics
from foxactors.jobs import (
    JOB_ID_HEADER,
    CancelKind,
    CancelSignals,
    Exponential,
    JobAlreadyExists,
    JobArgumentsError,
    JobCancelled,
    JobContext,
    JobError,
    JobFailed,
    JobHandle,
    JobNotFound,
    JobQueue,
    JobRecord,
    JobRecordError,
    JobState,
    Linear,
    MemoryJobStore,
    OutcomeReader,
    Reject,
    Retry,
    Started,
    StartKind,
    SyncJobContext,
    UnknownTask,
)

from .helpers import KeptSources, receive_one

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
        while not check(record := await handle.status()):  # noqa: ASYNC110 - a reader's poll
            await anyio.sleep(0.01)
    return record


def broker(jobs: JobQueue) -> fa.MemoryBackend:
    """The memory backend under ``jobs``, to look into its queues."""
    assert isinstance(jobs.backend, fa.MemoryBackend)
    return jobs.backend


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
        seen.append((ctx.job_id, ctx.task, ctx.queue, ctx.attempt, ctx.max_attempts, ctx.tenant))
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
    assert dead_letter_reasons(broker(jobs)) == [record.reason]


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


async def test_records_are_listed_by_queue_state_and_tenant_and_counted() -> None:
    jobs = queue_of()

    @jobs.task(max_attempts=1)
    async def send(to: str) -> str:
        if to == "bad":
            raise ValueError(to)
        return to

    handles = [await send.options(tenant="acme").enqueue(f"user{n}") for n in range(5)]
    bad = await send.enqueue("bad")
    other = await send.options(queue="other", tenant="acme").enqueue("elsewhere")
    async with working(jobs):
        for handle in handles:
            await handle.result(timeout=WAIT)
        with pytest.raises(JobFailed):
            await bad.result(timeout=WAIT)
    first = await jobs.list(queue=QUEUE, state="succeeded", tenant="acme", limit=3)
    assert [r.id for r in first.jobs] == [h.id for h in reversed(handles)][:3]  # newest first
    assert first.cursor is not None
    rest = await jobs.list(queue=QUEUE, state=JobState.SUCCEEDED, limit=3, cursor=first.cursor)
    assert [r.id for r in rest.jobs] == [handles[1].id, handles[0].id]
    assert rest.cursor is None
    assert [r.id for r in (await jobs.list(state="dead")).jobs] == [bad.id]
    assert [r.id for r in (await jobs.list(queue="other")).jobs] == [other.id]
    counts = await jobs.counts(tenant="acme")
    assert {s: n for s, n in counts.items() if n} == {JobState.SUCCEEDED: 5, JobState.PENDING: 1}
    with pytest.raises(fa.ConfigurationError, match="state must be one of"):
        await jobs.list(state="done")


async def test_finished_records_and_their_keys_expire_after_the_retention() -> None:
    jobs = queue_of(store=MemoryJobStore(retention=60), reap_interval=10)

    @jobs.task
    async def snapshot(day: str) -> str:
        return day

    handle = await snapshot.options(key="snap").enqueue("monday")
    async with working(jobs):
        assert await handle.result(timeout=WAIT) == "monday"
        finished = (await handle.status()).finished_at
        assert (await handle.status()).expires_at == finished + 60  # type: ignore[operator]
        await anyio.sleep(50)
        assert (await handle.status()).state is JobState.SUCCEEDED  # kept for 60 s
        await anyio.sleep(25)  # past the retention, and one reap later
        with pytest.raises(JobNotFound):
            await handle.status()
        again = await snapshot.options(key="snap", unique=True).enqueue("tuesday")  # key free
        assert again.created
        assert await again.result(timeout=WAIT) == "tuesday"


async def test_an_enqueue_whose_producer_died_before_publishing_is_dropped_with_its_key() -> None:
    jobs = queue_of(abandon_after=30, reap_interval=5)

    @jobs.task
    async def send(to: str) -> None: ...

    half = JobRecord(  # created, never published: its producer died in between
        id="half", task="send", queue=QUEUE, args={"to": "ada"}, key="welcome", enqueued_at=now()
    )
    assert (await jobs.store.create(half))[1]
    async with working(jobs):
        with pytest.raises(JobAlreadyExists):  # it holds its key meanwhile
            await send.options(key="welcome", unique=True).enqueue("ada")
        await anyio.sleep(40)
        with pytest.raises(JobNotFound):
            await jobs.get("half")
        handle = await send.options(key="welcome", unique=True).enqueue("ada")
        await handle.result(timeout=WAIT)


async def test_a_dead_or_cancelled_job_retried_runs_again_from_its_first_attempt() -> None:
    jobs = queue_of()
    runs: list[tuple[str, int]] = []

    @jobs.task(max_attempts=1)
    async def sync_account(ctx: JobContext, user: str) -> str:
        runs.append((user, ctx.attempt))
        if len(runs) == 1:
            raise ConnectionError("mail server down")
        return user

    dead = await sync_account.enqueue("alice")
    cancelled = await sync_account.enqueue("bob")
    await cancelled.cancel()
    async with working(jobs, concurrency=1):
        with pytest.raises(JobFailed):
            await dead.result(timeout=WAIT)
        retried = await jobs.retry(dead.id)
        assert (await retried.status()).attempt == 0
        with pytest.raises(JobError, match="only dead or cancelled jobs can be retried"):
            await jobs.retry(dead.id)  # live again: once is enough
        assert await retried.result(timeout=WAIT) == "alice"
        again = await jobs.retry(cancelled.id)
        assert await again.result(timeout=WAIT) == "bob"
    assert runs == [("alice", 1), ("alice", 1), ("bob", 1)]
    record = await dead.status()
    assert (record.state, record.attempt, record.result) == (JobState.SUCCEEDED, 1, "alice")


# -- 4. cancel wins --------------------------------------------------------------------


async def test_a_cancelled_pending_scheduled_or_retrying_job_never_runs_again() -> None:
    jobs = queue_of()
    calls: list[tuple[str, int]] = []
    failed_once = anyio.Event()

    @jobs.task
    async def note(label: str) -> str:
        calls.append((label, len(calls)))
        if label == "retrying":
            failed_once.set()
            raise Retry(delay=60, reason="later")
        return label

    pending = await note.enqueue("pending")
    scheduled = await note.options(delay=5).enqueue("scheduled")
    for handle in (pending, scheduled):
        cancelled = await handle.cancel()
        assert cancelled.kind is CancelKind.CANCELLED
        assert (cancelled.record.state, cancelled.record.attempt) == (JobState.CANCELLED, 0)
    retrying = await note.enqueue("retrying")
    kept = await note.enqueue("kept")
    async with working(jobs, concurrency=1):
        await failed_once.wait()
        record = await wait_for(retrying, lambda r: r.state is JobState.RETRYING)
        assert (await retrying.cancel()).kind is CancelKind.CANCELLED
        assert await kept.result(timeout=WAIT) == "kept"
        await broker(jobs).join(QUEUE)  # every delivery settled: the delayed ones came due too
    assert [label for label, _ in calls] == ["retrying", "kept"]
    for handle in (pending, scheduled, retrying):
        with pytest.raises(JobCancelled):
            await handle.result(timeout=0)
        record = await handle.status()
        assert (record.state, record.result, record.reason) == (
            JobState.CANCELLED,
            None,
            "cancelled",
        )
    assert (await retrying.status()).attempt == 1
    assert broker(jobs).dead_letters(QUEUE) == []  # settled unrun, not dead-lettered


async def test_cancelling_a_running_async_task_stops_it_at_its_next_await() -> None:
    jobs = queue_of()
    started = anyio.Event()
    reached: list[str] = []

    @jobs.task
    async def summarise(ctx: JobContext, emails: int) -> str:
        await ctx.progress(10, "gathering")
        started.set()
        try:
            await anyio.sleep(3600)  # a long step: the cancel interrupts it here
        except anyio.get_cancelled_exc_class():
            reached.append("cancelled at its await")
            raise
        reached.append("went on")
        return "never returned"

    handle = await summarise.enqueue(5)
    began = anyio.current_time()
    async with working(jobs):
        await started.wait()
        cancelled = await handle.cancel()
        assert (cancelled.kind, cancelled.record.state) == (CancelKind.REQUESTED, JobState.RUNNING)
        with pytest.raises(JobCancelled):
            await handle.result(timeout=WAIT)
        assert anyio.current_time() - began < 3600  # it did not sleep its hour out
    assert reached == ["cancelled at its await"]
    record = await handle.status()
    assert (record.state, record.result, record.attempt, record.lease_until) == (
        JobState.CANCELLED,
        None,
        1,
        None,
    )
    assert broker(jobs).queue_statistics(QUEUE) == type(broker(jobs).queue_statistics(QUEUE))(
        0, 0, 0, 0
    )


async def test_whatever_a_task_returns_after_its_cancel_is_dropped() -> None:
    jobs = queue_of()
    started, finish = anyio.Event(), anyio.Event()
    saw: list[bool] = []

    @jobs.task
    async def stubborn(ctx: JobContext) -> str:
        with anyio.CancelScope(shield=True):  # it will not be interrupted...
            started.set()
            await finish.wait()
        saw.append(ctx.cancel_requested)
        return "done anyway"  # ...but its result does not count

    handle = await stubborn.enqueue()
    async with working(jobs):
        await started.wait()
        assert (await handle.cancel()).kind is CancelKind.REQUESTED
        finish.set()
        with pytest.raises(JobCancelled):
            await handle.result(timeout=WAIT)
    assert saw == [True]
    record = await handle.status()
    assert (record.state, record.result) == (JobState.CANCELLED, None)


@REAL_TIME
async def test_a_running_sync_task_learns_of_its_cancel_through_its_context() -> None:
    jobs = queue_of()
    started, go = threading.Event(), threading.Event()
    saw: list[bool] = []

    @jobs.task
    def crunch(ctx: SyncJobContext) -> str:
        saw.append(ctx.cancel_requested)
        started.set()
        go.wait(WAIT)
        saw.append(ctx.cancel_requested)
        return "finished anyway"

    handle = await crunch.enqueue()
    async with working(jobs):
        await anyio.to_thread.run_sync(started.wait, WAIT)
        assert (await handle.cancel()).kind is CancelKind.REQUESTED
        go.set()
        with pytest.raises(JobCancelled):
            await handle.result(timeout=WAIT)
    assert saw == [False, True]
    record = await handle.status()
    assert (record.state, record.result) == (JobState.CANCELLED, None)


class PollingStore(MemoryJobStore):
    """A store that does not signal cancels: running jobs learn of them on lease renewal."""

    on_cancel = None  # type: ignore[assignment]


async def test_without_cancel_signals_a_running_job_hears_of_its_cancel_within_the_poll() -> None:
    jobs = queue_of(store=PollingStore(), cancel_poll=2)
    assert not isinstance(jobs.store, CancelSignals)
    started = anyio.Event()

    @jobs.task
    async def summarise() -> str:
        started.set()
        await anyio.sleep(3600)
        return "never returned"

    handle = await summarise.enqueue()
    async with working(jobs):
        await started.wait()
        asked = anyio.current_time()
        assert (await handle.cancel()).kind is CancelKind.REQUESTED
        with pytest.raises(JobCancelled):
            await handle.result(timeout=WAIT)
        assert anyio.current_time() - asked < jobs.cancel_poll + 1  # one renewal, not the hour
    assert (await handle.status()).state is JobState.CANCELLED


class WholeRecords(MemoryJobStore):
    """A store without the `OutcomeReader` capability: results are read from records."""

    outcome = None  # type: ignore[assignment]


async def test_a_store_without_outcome_reads_still_gives_results_and_failures() -> None:
    jobs = queue_of(store=WholeRecords())
    assert not isinstance(jobs.store, OutcomeReader)

    @jobs.task
    async def send(to: str) -> str:
        if to.endswith(".invalid"):
            raise Reject("no such domain")
        return f"sent to {to}"

    sent = await send.enqueue("ada@example.com")
    lost = await send.enqueue("bob@example.invalid")
    never = await send.options(delay=60).enqueue("eve@example.com")
    await never.cancel()
    async with working(jobs):
        assert await sent.result(timeout=WAIT) == "sent to ada@example.com"
        with pytest.raises(JobFailed, match="no such domain") as failed:
            await lost.result(timeout=WAIT)
        assert failed.value.record.state is JobState.DEAD
        with pytest.raises(JobCancelled):
            await never.result(timeout=WAIT)


class CancelBeforeCompletion(MemoryJobStore):
    """A store where a cancel is committed just before each completion: the race, staged."""

    def __init__(self) -> None:
        super().__init__()
        self.completions: list[JobState] = []

    async def complete(self, job_id: str, attempt: int, now: float, result: Any) -> JobState:
        await self.cancel(job_id, now)
        state = await super().complete(job_id, attempt, now, result)
        self.completions.append(state)
        return state


async def test_a_cancel_recorded_before_the_completion_wins() -> None:
    store = CancelBeforeCompletion()
    jobs = queue_of(store=store)

    @jobs.task
    async def quick() -> str:
        return "result"

    handle = await quick.enqueue()
    with structlog.testing.capture_logs() as logs:
        async with working(jobs):
            with pytest.raises(JobCancelled):
                await handle.result(timeout=WAIT)
    assert store.completions == [JobState.CANCELLED]  # the worker that completed is told
    assert {"event": "job.cancelled", "after": "completion"}.items() <= next(
        entry for entry in logs if entry["event"] == "job.cancelled"
    ).items()
    record = await handle.status()
    assert (record.state, record.result, record.attempt) == (JobState.CANCELLED, None, 1)
    assert broker(jobs).dead_letters(QUEUE) == []


async def test_cancelling_a_finished_job_changes_nothing_and_says_so() -> None:
    jobs = queue_of()

    @jobs.task(max_attempts=1)
    async def echo(text: str) -> str:
        if text == "fail":
            raise ValueError(text)
        return text

    done, dead = await echo.enqueue("ok"), await echo.enqueue("fail")
    cancelled = await echo.enqueue("cancelled")
    await cancelled.cancel()
    async with working(jobs):
        await done.result(timeout=WAIT)
        with pytest.raises(JobFailed):
            await dead.result(timeout=WAIT)
    for handle in (done, dead, cancelled):
        before = await handle.status()
        answer = await handle.cancel()
        assert answer.kind is CancelKind.FINISHED
        assert answer.record == before == await handle.status()
    assert (await done.result(timeout=0)) == "ok"


# -- 5. idempotency keys ---------------------------------------------------------------


async def test_a_key_returns_the_job_that_holds_it_or_refuses_when_asked() -> None:
    jobs = queue_of()
    runs: list[str] = []

    @jobs.task
    async def snapshot(day: str) -> str:
        runs.append(day)
        return day

    first = await snapshot.options(key="snap:2026-12-02").enqueue("2026-12-02")
    again = await snapshot.options(key="snap:2026-12-02").enqueue("another day")
    assert (first.created, again.created, again.id) == (True, False, first.id)
    with pytest.raises(JobAlreadyExists) as exists:
        await snapshot.options(key="snap:2026-12-02", unique=True).enqueue("2026-12-02")
    assert exists.value.job_id == first.id
    async with working(jobs):
        assert await again.result(timeout=WAIT) == "2026-12-02"  # the holder's arguments
    kept = await snapshot.options(key="snap:2026-12-02").enqueue("2026-12-02")  # finished, kept
    assert (kept.created, kept.id) == (False, first.id)
    assert runs == ["2026-12-02"]
    assert sum((await jobs.counts()).values()) == 1


async def test_concurrent_producers_with_one_key_make_exactly_one_job() -> None:
    jobs = queue_of()
    runs: list[int] = []

    @jobs.task
    async def receipt(producer: int) -> int:
        runs.append(producer)
        return producer

    handles: list[JobHandle[int]] = []

    async def produce(n: int) -> None:
        await anyio.lowlevel.checkpoint()  # all of them start before any enqueues
        handles.append(await receipt.options(key="receipt-1042").enqueue(n))

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(produce, n)
    assert len(handles) == 20
    assert len({h.id for h in handles}) == 1
    assert sum(h.created for h in handles) == 1
    async with working(jobs):
        results = {await h.result(timeout=WAIT) for h in handles}
        await broker(jobs).join(QUEUE)
    assert len(runs) == 1
    assert results == set(runs)


async def test_keys_are_scoped_by_tenant() -> None:
    jobs = queue_of()

    @jobs.task
    async def invoice(number: int) -> int:
        return number

    acme = await invoice.options(key="invoice-7", tenant="acme").enqueue(7)
    umbrella = await invoice.options(key="invoice-7", tenant="umbrella").enqueue(7)
    nobody = await invoice.options(key="invoice-7").enqueue(7)
    acme_again = await invoice.options(key="invoice-7", tenant="acme").enqueue(8)
    assert len({acme.id, umbrella.id, nobody.id}) == 3
    assert (acme_again.id, acme_again.created) == (acme.id, False)
    with pytest.raises(JobNotFound):  # a tenant sees its own jobs only
        await jobs.handle(acme.id, tenant="umbrella").status()
    assert (await jobs.counts(tenant="acme"))[JobState.PENDING] == 1


class RefusingBackend(fa.MemoryBackend):
    """A memory backend whose next publishes fail, as a broker that is down."""

    refuse = 0

    async def publish(self, queue: str, payload: Any, **options: Any) -> str:
        if self.refuse:
            self.refuse -= 1
            raise fa.BackendError("the broker is down")
        return await super().publish(queue, payload, **options)


async def test_a_failed_enqueue_leaves_no_record_and_no_key_behind() -> None:
    backend = RefusingBackend()
    jobs = queue_of(backend)

    @jobs.task
    async def welcome(to: str) -> str:
        return to

    backend.refuse = 1
    with pytest.raises(fa.BackendError, match="the broker is down"):
        await welcome.options(key="welcome:ada").enqueue("ada")
    assert sum((await jobs.counts()).values()) == 0
    handle = await welcome.options(key="welcome:ada", unique=True).enqueue("ada")  # key free
    assert handle.created
    backend.refuse = 1
    with pytest.raises(fa.BackendError):
        await welcome.enqueue_many([{"to": "bob"}, {"to": "grace"}])
    async with working(jobs):
        assert await handle.result(timeout=WAIT) == "ada"
    assert dict((await jobs.counts()).items()) == {
        state: int(state is JobState.SUCCEEDED) for state in JobState
    }


# -- 6. priorities and schedules -------------------------------------------------------


async def test_higher_priorities_run_first_and_one_level_in_enqueue_order() -> None:
    jobs = queue_of()
    ran: list[str] = []

    @jobs.task
    async def alert(text: str) -> None:
        ran.append(text)

    for text, priority in [
        ("low 1", "low"),
        ("normal 1", None),
        ("critical 1", "critical"),
        ("normal 2", "normal"),
        ("high 1", fa.Priority.HIGH),
        ("low 2", 0),
        ("critical 2", 9),
        ("normal 3", 3),
    ]:
        await alert.options(priority=priority).enqueue(text)
    async with working(jobs, concurrency=1):  # started after every enqueue
        await broker(jobs).join(QUEUE)
    assert ran == [
        "critical 1",
        "critical 2",
        "high 1",
        "normal 1",
        "normal 2",
        "normal 3",
        "low 1",
        "low 2",
    ]


async def test_run_at_and_delay_hold_a_job_until_it_is_due() -> None:
    jobs = queue_of()
    started: dict[str, float] = {}

    @jobs.task
    async def remind(label: str) -> None:
        started[label] = now()

    enqueued = now()
    at = await remind.options(run_at=moment(enqueued + 30)).enqueue("run_at")
    later = await remind.options(delay=10).enqueue("delay")
    soon = await remind.enqueue("now")
    for handle, due in ((at, 30), (later, 10)):
        record = await handle.status()
        assert record.state is JobState.SCHEDULED
        assert record.scheduled_at == pytest.approx(enqueued + due, abs=0.01)
    assert (await soon.status()).scheduled_at is None
    assert broker(jobs).queue_statistics(QUEUE).delayed == 2  # held by the broker
    await anyio.sleep(15)  # due, no worker yet: it reads pending; the other one waits
    assert (await later.status()).state is JobState.PENDING
    assert (await at.status()).state is JobState.SCHEDULED
    async with working(jobs):
        for handle in (soon, later, at):
            await handle.result(timeout=WAIT + 30)
    # due to the microsecond: a datetime's timestamp rounds at this size (1e-7 s)
    assert started["run_at"] >= enqueued + 30 - 1e-6
    assert started["delay"] >= enqueued + 10 - 1e-6
    assert started["now"] < enqueued + 30 < started["run_at"] + 1


async def test_a_schedule_must_be_an_aware_datetime_or_a_delay() -> None:
    jobs = queue_of()

    @jobs.task
    async def remind(label: str) -> None: ...

    naive = datetime.datetime(2027, 1, 1, 9, 0)
    with pytest.raises(fa.ConfigurationError, match="run_at must be an aware datetime"):
        await remind.options(run_at=naive).enqueue("x")
    with pytest.raises(fa.ConfigurationError, match="delay or run_at, not both"):
        await remind.options(delay=1, run_at=moment(now() + 1)).enqueue("x")
    with pytest.raises(fa.ConfigurationError, match="delay"):
        await remind.options(delay=-1).enqueue("x")
    with pytest.raises(fa.ConfigurationError, match="run_at"):
        await jobs.enqueue("remind", {"label": "x"}, run_at="2027-01-01T09:00:00Z")
    assert sum((await jobs.counts()).values()) == 0


# -- 7. retries ------------------------------------------------------------------------


async def test_a_task_runs_at_most_its_max_attempts_then_is_dead() -> None:
    jobs = queue_of()
    attempts: list[tuple[str, int]] = []

    @jobs.task(max_attempts=3, backoff=Linear(step=1))
    async def flaky(ctx: JobContext, label: str) -> None:
        attempts.append((label, ctx.attempt))
        raise ValueError(f"boom {ctx.attempt}")

    handle = await flaky.enqueue("task's")
    once = await flaky.options(max_attempts=1).enqueue("enqueue's")
    async with working(jobs, concurrency=1):
        for job in (handle, once):
            with pytest.raises(JobFailed):
                await job.result(timeout=WAIT)
    assert sorted(attempts) == [("enqueue's", 1), ("task's", 1), ("task's", 2), ("task's", 3)]
    record = await handle.status()
    assert (record.state, record.attempt, record.max_attempts) == (JobState.DEAD, 3, 3)
    assert record.reason == "failed after 3 attempts: ValueError: boom 3"
    assert record.error is not None
    assert (record.error.type, record.error.message) == ("ValueError", "boom 3")
    assert "flaky" in record.error.traceback
    assert (await once.status()).reason == "failed after 1 attempt: ValueError: boom 1"
    assert sorted(dead_letter_reasons(broker(jobs))) == [
        "failed after 1 attempt: ValueError: boom 1",
        "failed after 3 attempts: ValueError: boom 3",
    ]


class GatewayTimeout(Exception):
    """A failure worth another attempt."""


async def test_only_the_exceptions_in_retry_on_are_retried() -> None:
    jobs = queue_of()
    attempts: list[int] = []

    @jobs.task(max_attempts=5, retry_on=GatewayTimeout, backoff=Linear(step=1))
    async def send_sms(ctx: JobContext, to: str) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise GatewayTimeout("no answer")
        raise KeyError(to)  # not in retry_on: dead at once

    handle = await send_sms.enqueue("+15550111")
    async with working(jobs):
        with pytest.raises(JobFailed) as failed:
            await handle.result(timeout=WAIT)
    assert attempts == [1, 2]
    record = failed.value.record
    assert (record.state, record.attempt) == (JobState.DEAD, 2)
    assert record.reason == "not retried: KeyError: '+15550111'"
    assert record.error is not None
    assert record.error.type == "KeyError"


async def test_retry_runs_again_after_its_delay_and_the_record_says_when() -> None:
    jobs = queue_of()
    started: list[tuple[int, float]] = []

    @jobs.task(max_attempts=3, backoff=Linear(step=1000))
    async def fetch(ctx: JobContext) -> int:
        started.append((ctx.attempt, now()))
        if ctx.attempt == 1:
            raise Retry(delay=7, reason="rate limited")
        return ctx.attempt

    handle = await fetch.enqueue()
    async with working(jobs):
        record = await wait_for(handle, lambda r: r.state is not JobState.PENDING)
        assert record.state in (JobState.RUNNING, JobState.RETRYING)
        record = await wait_for(handle, lambda r: r.state is JobState.RETRYING)
        assert (record.attempt, record.reason) == (1, "rate limited")
        assert record.next_run_at == pytest.approx(started[0][1] + 7, abs=0.1)
        assert record.error is None  # a Retry is control flow, not an error
        assert await handle.result(timeout=WAIT) == 2
    (_, first), (_, second) = started
    assert second >= first + 7  # held for its delay (not the backoff's 1000 s)
    assert second < first + 1000


async def test_retry_after_the_last_attempt_is_dead() -> None:
    jobs = queue_of()

    @jobs.task(max_attempts=2)
    async def poll(ctx: JobContext) -> None:
        raise Retry(delay=1, reason="not ready")

    handle = await poll.enqueue()
    async with working(jobs):
        with pytest.raises(JobFailed) as failed:
            await handle.result(timeout=WAIT)
    assert failed.value.record.attempt == 2
    assert failed.value.record.reason == ("retry asked after the last attempt (2 of 2): not ready")


async def test_reject_makes_the_job_dead_at_once_with_its_reason() -> None:
    jobs = queue_of()
    attempts: list[int] = []

    @jobs.task(max_attempts=5)
    async def send_email(ctx: JobContext, to: str) -> None:
        attempts.append(ctx.attempt)
        raise Reject(f"no such domain: {to.split('@')[1]}")

    handle = await send_email.enqueue("grace@example.invalid")
    async with working(jobs):
        with pytest.raises(JobFailed) as failed:
            await handle.result(timeout=WAIT)
    assert attempts == [1]
    record = failed.value.record
    assert (record.state, record.reason) == (JobState.DEAD, "no such domain: example.invalid")
    assert dead_letter_reasons(broker(jobs)) == ["no such domain: example.invalid"]


async def test_a_retry_with_a_bad_delay_fails_its_attempt_like_any_error() -> None:
    jobs = queue_of()
    attempts: list[int] = []

    @jobs.task(max_attempts=2, backoff=Linear(step=1))
    async def poll(ctx: JobContext, delay: Any) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise Retry(delay=delay)
        return ctx.attempt

    handles = [await poll.enqueue(delay) for delay in (-5, "soon")]
    async with working(jobs, concurrency=1):
        assert [await h.result(timeout=WAIT) for h in handles] == [2, 2]
    assert sorted(attempts) == [1, 1, 2, 2]
    with pytest.raises(fa.ConfigurationError, match=r"Retry\(delay=...\) must be seconds >= 0"):
        Retry(delay=float("inf"))
    assert broker(jobs).dead_letters(QUEUE) == []


def broken_backoff(attempt: int) -> float:
    raise ZeroDivisionError("no rate configured")


@pytest.mark.parametrize(
    ("backoff", "why"),
    [
        (
            lambda attempt: -3.0,
            "ConfigurationError: a backoff's delay must be seconds >= 0, got -3.0",
        ),
        (broken_backoff, "ZeroDivisionError: no rate configured"),
    ],
    ids=["negative", "raises"],
)
async def test_a_backoff_that_gives_no_delay_makes_the_job_dead_saying_why(
    backoff: Callable[[int], float], why: str
) -> None:
    jobs = queue_of()

    @jobs.task(max_attempts=3, backoff=backoff)
    async def flaky() -> None:
        raise GatewayTimeout("again")

    @jobs.task(max_attempts=3, backoff=backoff)
    async def polled() -> None:
        raise Retry(reason="not ready")

    handles = [await flaky.enqueue(), await polled.enqueue()]
    async with working(jobs):
        for handle in handles:
            with pytest.raises(JobFailed) as failed:
                await handle.result(timeout=WAIT)
            record = failed.value.record
            assert (record.state, record.attempt) == (JobState.DEAD, 1)
            assert record.reason is not None
            assert record.reason.startswith("its backoff ")
            assert record.reason.endswith(f"gave no delay after attempt 1: {why}")
        await broker(jobs).join(QUEUE)  # nothing left waiting: record and broker agree
    assert len(broker(jobs).dead_letters(QUEUE)) == 2


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        (Linear(step=2), [2, 4, 6]),
        (Exponential(initial=1, multiplier=3, jitter=0), [1, 3, 9]),
        (lambda attempt: 0.5 + attempt, [1.5, 2.5, 3.5]),
    ],
    ids=["linear", "exponential", "custom"],
)
async def test_the_backoff_spaces_the_attempts(
    backoff: Callable[[int], float], delays: list[float]
) -> None:
    jobs = queue_of()
    started: list[float] = []

    @jobs.task(max_attempts=4, backoff=backoff)
    async def flaky() -> None:
        started.append(now())
        raise GatewayTimeout("again")

    handle = await flaky.enqueue()
    async with working(jobs):
        with pytest.raises(JobFailed):
            await handle.result(timeout=WAIT)
    gaps = [later - earlier for earlier, later in itertools.pairwise(started)]
    assert gaps == pytest.approx(delays, abs=0.1)


async def test_an_attempt_past_its_timeout_fails_and_is_retried() -> None:
    jobs = queue_of()
    attempts: list[int] = []

    @jobs.task(max_attempts=2, timeout=5, backoff=Linear(step=1))
    async def slow(ctx: JobContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            await anyio.sleep(3600)
        return ctx.attempt

    @jobs.task(max_attempts=1, timeout=5)
    async def slower() -> None:
        await anyio.sleep(3600)

    handle, never = await slow.enqueue(), await slower.enqueue()
    async with working(jobs):
        assert await handle.result(timeout=WAIT) == 2
        with pytest.raises(JobFailed) as failed:
            await never.result(timeout=WAIT)
    assert attempts == [1, 2]
    assert failed.value.record.reason == "failed after 1 attempt: timed out after 5 s"
    assert failed.value.record.error is not None
    assert failed.value.record.error.type == "TimeoutError"


# -- 8. leases -------------------------------------------------------------------------


class Charges:
    """A ``charge`` task on ``jobs`` that runs until ``finish`` is set, noting attempts."""

    def __init__(self, jobs: JobQueue) -> None:
        self.started, self.finish = anyio.Event(), anyio.Event()
        self.runs: list[int] = []

        @jobs.task
        async def charge(ctx: JobContext, cents: int) -> int:
            self.runs.append(ctx.attempt)
            self.started.set()
            await self.finish.wait()
            return cents

        self.task = charge

    @staticmethod
    def copy_of(handle: JobHandle[Any]) -> fa.MessageProperties:
        """The properties of another delivery of the job (as a broker sends again)."""
        return fa.MessageProperties(message_type="charge", headers={JOB_ID_HEADER: handle.id})


async def test_a_job_delivered_again_while_its_attempt_runs_here_waits_for_it() -> None:
    """No second attempt beside a running one in the same app.

    The broker can deliver a job again while its attempt still runs: after a lost
    connection (RabbitMQ requeues what it held), or as a duplicate publish. Here a
    second delivery of the job's own message arrives mid-attempt; it waits, finds
    the job succeeded, and is acked. Before, it started attempt 2 beside attempt 1.
    """
    jobs = queue_of()
    charges = Charges(jobs)
    handle = await charges.task.enqueue(500)
    async with working(jobs, concurrency=4):
        await charges.started.wait()
        await broker(jobs).publish(QUEUE, {"cents": 500}, properties=charges.copy_of(handle))
        await wait_for_idle(broker(jobs))  # the second delivery is out, waiting
        charges.finish.set()
        assert await handle.result(timeout=WAIT) == 500
        await wait_for_idle(broker(jobs), settled=True)
    assert charges.runs == [1]
    record = await handle.status()
    assert (record.state, record.attempt) == (JobState.SUCCEEDED, 1)
    assert dead_letter_reasons(broker(jobs)) == []


class StartsSeen(MemoryJobStore):
    """A memory store that keeps what each start answered."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: list[StartKind] = []

    async def start(self, job_id: str, now: float, lease_until: float) -> Started:
        started = await super().start(job_id, now, lease_until)
        self.answers.append(started.kind)
        return started


async def test_a_job_delivered_to_another_worker_while_its_attempt_runs_waits_for_it() -> None:
    """No second attempt beside a running one in another worker app (another process).

    A worker cut off from its broker runs on, and renews its lease through the
    store, while the broker delivers the job to another worker. That one finds the
    attempt running under a live lease and defers the delivery past it (nothing
    counted); when the job has ended, the copy finds it so and is acked. Before, the
    other worker started attempt 2 beside attempt 1: a card charged twice.
    """
    store = StartsSeen()
    jobs = queue_of(store=store, lease=1.0)  # renewed every third of it while it runs
    charges = Charges(jobs)
    handle = await charges.task.enqueue(500)
    async with working(jobs):
        await charges.started.wait()
        async with working(jobs, "elsewhere"):  # the other worker, with the job's copy
            copy = charges.copy_of(handle)
            await broker(jobs).publish("elsewhere", {"cents": 500}, properties=copy)
            with anyio.fail_after(WAIT):  # past the lease three times: it was renewed
                while store.answers.count(StartKind.BUSY) < 3:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            assert charges.runs == [1]
            record = await handle.status()
            assert (record.state, record.attempt) == (JobState.RUNNING, 1)
            charges.finish.set()
            assert await handle.result(timeout=WAIT) == 500
            with anyio.fail_after(WAIT):  # the copy comes back once more, and is acked
                while store.answers[-1] is StartKind.BUSY:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            await wait_for_idle(broker(jobs), settled=True)
    assert store.answers[0] is StartKind.RUN
    assert set(store.answers[1:-1]) == {StartKind.BUSY}
    assert store.answers[-1] is StartKind.FINISHED
    assert charges.runs == [1]
    record = await handle.status()
    assert (record.state, record.attempt) == (JobState.SUCCEEDED, 1)
    assert dead_letter_reasons(broker(jobs)) == []
    assert broker(jobs).queue_statistics("elsewhere") == QueueStatistics(0, 0, 0, 0)


async def test_a_copy_deferred_past_a_running_attempt_does_not_take_its_retry_early() -> None:
    """The copy that waited out another worker's attempt finds the job retrying later.

    It waits for the retry to be due, as the retry's own delivery does (whichever
    comes first runs it; the other finds it running, or ended). Before, it ran the
    retry as soon as it came back, a backoff early.
    """
    store = StartsSeen()
    jobs = queue_of(store=store, lease=1.0)
    started, go_on = anyio.Event(), anyio.Event()
    starts: list[tuple[int, float]] = []

    @jobs.task(max_attempts=2)
    async def charge(ctx: JobContext, cents: int) -> int:
        starts.append((ctx.attempt, now()))
        if ctx.attempt == 1:
            started.set()
            await go_on.wait()
            raise Retry(delay=100)  # say, the provider asked to come back later
        return cents

    handle = await charge.enqueue(500)
    async with working(jobs):
        await started.wait()
        async with working(jobs, "elsewhere"):
            again = fa.MessageProperties(message_type="charge", headers={JOB_ID_HEADER: handle.id})
            await broker(jobs).publish("elsewhere", {"cents": 500}, properties=again)
            with anyio.fail_after(WAIT):
                while StartKind.BUSY not in store.answers:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            go_on.set()
            assert await handle.result(timeout=200) == 500
            await wait_for_idle(broker(jobs), settled=True)
    (first, first_at), (second, second_at) = starts
    assert (first, second) == (1, 2)
    assert second_at >= first_at + 100  # not a moment before the retry was due
    assert StartKind.NOT_DUE in store.answers  # the copy came back early, and waited
    assert dead_letter_reasons(broker(jobs)) == []


class Sources(KeptSources):
    """A memory backend whose newest consumer's connection a test can cut."""

    async def lose_connection(self) -> None:
        """Cut the newest source's connection; return once the consumer opened another."""
        count = len(self.sources)
        self.sources[-1].lose_connection("cut by the test")
        with anyio.fail_after(WAIT):
            while len(self.sources) == count:  # noqa: ASYNC110 - nothing signals it
                await anyio.sleep(0.01)


async def test_copies_of_a_running_job_whose_connection_went_wait_in_no_worker_slot() -> None:
    """Each lost connection gives the running job's delivery back: a new copy waits.

    The copy before it is stale (its consumer is gone); it stops waiting and frees
    its worker slot, so one running job never holds more than one waiting copy, and
    other jobs still run. Before, every cut added a copy waiting for the whole run.
    """
    backend = Sources()
    jobs = queue_of(backend)
    started, finish = anyio.Event(), anyio.Event()
    runs: list[tuple[str, int]] = []

    @jobs.task
    async def long(ctx: JobContext) -> int:
        runs.append(("long", ctx.attempt))
        started.set()
        await finish.wait()
        return 1

    @jobs.task
    async def short(ctx: JobContext) -> int:
        runs.append(("short", ctx.attempt))
        return 2

    slow = await long.enqueue()
    async with working(jobs, concurrency=3):
        await started.wait()
        for _ in range(3):
            await backend.lose_connection()
            await wait_for_idle(backend)  # the copy is out, waiting
        quick = await short.enqueue()
        assert await quick.result(timeout=WAIT) == 2  # while the long job still runs
        finish.set()
        assert await slow.result(timeout=WAIT) == 1
    assert runs == [("long", 1), ("short", 1)]  # the long job ran once


async def test_a_copy_waiting_when_its_app_stops_goes_back_unrun() -> None:
    """Stopping, the consumer goes first: the waiting copy is stale when the running
    attempt is cut and lets the job go; it starts no attempt of its own (the drain
    returns every delivery no worker started)."""
    jobs = queue_of()
    started = anyio.Event()
    runs: list[int] = []

    @jobs.task
    async def charge(ctx: JobContext, cents: int) -> int:
        runs.append(ctx.attempt)
        started.set()
        await anyio.sleep_forever()
        return cents

    @jobs.task
    async def warm() -> None:
        pass

    app = jobs.worker(QUEUE, concurrency=2).with_drain_timeout(1)
    async with fa.open_system(app.build()):
        # the first worker runs a job first: the charge goes to the second, its copy
        # to the first, which the stop reaches first, while the copy still waits
        await (await warm.enqueue()).result(timeout=WAIT)
        handle = await charge.enqueue(500)
        await started.wait()
        again = fa.MessageProperties(message_type="charge", headers={JOB_ID_HEADER: handle.id})
        await broker(jobs).publish(QUEUE, {"cents": 500}, properties=again)
        await wait_for_idle(broker(jobs))  # the copy is out, waiting
    assert runs == [1]
    record = await handle.status()
    assert (record.state, record.attempt) == (JobState.PENDING, 1)
    assert broker(jobs).queue_statistics(QUEUE).ready == 2  # both deliveries went back


async def test_a_copy_that_waited_for_an_attempt_that_retries_later_is_dropped() -> None:
    """The attempt it waited for asked to retry in 2 s, with a delivery of its own for
    then: the copy is acked, instead of taking the retry early (and every later retry
    coming twice)."""
    jobs = queue_of()
    started, finish = anyio.Event(), anyio.Event()
    runs: list[tuple[int, float]] = []

    @jobs.task(max_attempts=5)
    async def charge(ctx: JobContext) -> int:
        runs.append((ctx.attempt, anyio.current_time()))
        if ctx.attempt == 1:
            started.set()
            await finish.wait()
        if ctx.attempt < 3:
            raise Retry(delay=2)
        return ctx.attempt

    handle = await charge.enqueue()
    async with working(jobs, concurrency=4):
        await started.wait()
        again = fa.MessageProperties(message_type="charge", headers={JOB_ID_HEADER: handle.id})
        await broker(jobs).publish(QUEUE, {}, properties=again)
        await wait_for_idle(broker(jobs))  # the copy is out, waiting
        ended = anyio.current_time()
        finish.set()
        assert await handle.result(timeout=WAIT) == 3
        await wait_for_idle(broker(jobs), settled=True)
    assert [attempt for attempt, _ in runs] == [1, 2, 3]
    assert runs[1][1] - ended >= 1.99  # the retry's own delivery, when it was due (2 s)
    assert broker(jobs).queue_statistics(QUEUE).ready == 0


async def test_a_copy_whose_attempt_retried_on_a_lost_connection_brings_the_retry() -> None:
    """The attempt it waited for asked to retry, but its consumer was gone: the retry
    reached no broker. The copy (the message given back) is then the job's delivery:
    it comes back when the retry is due, and the job goes on."""
    backend = Sources()
    jobs = queue_of(backend)
    started, finish = anyio.Event(), anyio.Event()
    runs: list[int] = []

    @jobs.task(max_attempts=3)
    async def charge(ctx: JobContext) -> int:
        runs.append(ctx.attempt)
        if ctx.attempt == 1:
            started.set()
            await finish.wait()
            raise Retry(delay=2)
        return ctx.attempt

    handle = await charge.enqueue()
    async with working(jobs, concurrency=4):
        await started.wait()
        await backend.lose_connection()
        await wait_for_idle(backend)  # the message given back is out, waiting
        finish.set()
        assert await handle.result(timeout=WAIT) == 2
    assert runs == [1, 2]


async def wait_for_idle(backend: fa.MemoryBackend, *, settled: bool = False) -> None:
    """Until nothing of the queue is ready (and, if ``settled``, nothing is in flight)."""
    with anyio.fail_after(WAIT):
        while True:
            stats = backend.queue_statistics(QUEUE)
            if stats.ready == 0 and (not settled or stats.in_flight == 0):
                return
            await anyio.sleep(0.01)


class MortalStore(MemoryJobStore):
    """A store shared with a worker that can die: once ``dying``, it writes nothing more."""

    dying = False

    async def release(self, job_id: str, attempt: int, now: float) -> JobState:
        if self.dying:  # the process is gone before it could put the job back
            return JobState.RUNNING
        return await super().release(job_id, attempt, now)


async def stop(jobs: JobQueue, started: anyio.Event, store: MortalStore | None = None) -> None:
    """Run a job worker until ``started`` is set, then stop it (its running job unfinished).

    Its consumer goes away, so the broker has the job's delivery again; with a
    ``store``, the worker dies first: it writes nothing more to the records.
    """
    async with fa.open_system(jobs.worker(QUEUE).with_drain_timeout(1).build()):
        await started.wait()
        if store is not None:
            store.dying = True


async def test_a_job_whose_worker_died_runs_again_as_a_new_attempt() -> None:
    store = MortalStore()
    jobs = queue_of(store=store, lease=1.0)  # the new attempt waits for the lease
    started = anyio.Event()
    attempts: list[int] = []

    @jobs.task(max_attempts=3)
    async def cleanup(ctx: JobContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            started.set()
            await anyio.sleep_forever()
        return ctx.attempt

    handle = await cleanup.enqueue()
    await stop(jobs, started, store)
    record = await handle.status()
    assert (record.state, record.attempt) == (JobState.RUNNING, 1)  # what the dead left
    assert broker(jobs).queue_statistics(QUEUE).ready == 1  # the broker has it again
    store.dying = False
    async with working(jobs):
        assert await handle.result(timeout=WAIT) == 2
    assert attempts == [1, 2]
    record = await handle.status()
    assert (record.state, record.attempt) == (JobState.SUCCEEDED, 2)


async def test_a_job_whose_worker_stopped_is_pending_again_and_runs_again() -> None:
    jobs = queue_of()
    started = anyio.Event()

    @jobs.task(max_attempts=3)
    async def cleanup(ctx: JobContext) -> int:
        if ctx.attempt == 1:
            started.set()
            await anyio.sleep_forever()
        return ctx.attempt

    handle = await cleanup.enqueue()
    await stop(jobs, started)  # it puts its job back as it goes
    record = await handle.status()
    assert (record.state, record.attempt, record.lease_until) == (JobState.PENDING, 1, None)
    assert broker(jobs).queue_statistics(QUEUE).ready == 1
    async with working(jobs):
        assert await handle.result(timeout=WAIT) == 2
    assert broker(jobs).dead_letters(QUEUE) == []


async def test_a_worker_cancelled_outright_puts_its_running_job_back_not_dead() -> None:
    jobs = queue_of()
    started = anyio.Event()

    @jobs.task
    async def cleanup() -> None:
        started.set()
        await anyio.sleep_forever()

    handle = await cleanup.enqueue()
    with anyio.CancelScope() as scope:
        async with working(jobs):
            await started.wait()
            scope.cancel()  # not a failure of the job: its attempt is released
    record = await handle.status()
    assert (record.state, record.attempt, record.error, record.reason) == (
        JobState.PENDING,
        1,
        None,
        None,
    )
    assert broker(jobs).dead_letters(QUEUE) == []


async def test_deliveries_past_max_attempts_make_the_job_dead_not_a_crash_loop() -> None:
    store = MortalStore()
    jobs = queue_of(store=store, lease=1.0)
    started = anyio.Event()
    attempts: list[int] = []

    @jobs.task(max_attempts=1)
    async def crashy(ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        started.set()
        await anyio.sleep_forever()

    handle = await crashy.enqueue()
    await stop(jobs, started, store)
    store.dying = False
    async with working(jobs):
        with pytest.raises(JobFailed) as failed:
            await handle.result(timeout=WAIT)
    assert attempts == [1]  # the second delivery is over max_attempts: never run
    assert failed.value.record.attempt == 2  # the start the record saw, not a run
    assert "started 2 times, over max_attempts=1" in str(failed.value.record.reason)
    assert dead_letter_reasons(broker(jobs)) == [failed.value.record.reason]


async def test_the_reaper_sets_a_dead_workers_job_back_within_lease_and_one_interval() -> None:
    jobs = queue_of(lease=3.5, reap_interval=1)

    @jobs.task
    async def cleanup(ctx: JobContext) -> int:
        return ctx.attempt

    handle = await cleanup.enqueue()
    source = await broker(jobs).open_source(QUEUE, prefetch=1)
    await receive_one(source)  # a worker took it, started it, and died:
    began = now()
    await jobs.store.start(handle.id, began, began + jobs.lease)
    async with working(jobs, "elsewhere"):  # a live worker (of any queue) reaps
        await anyio.sleep(jobs.lease - 0.25)
        assert (await handle.status()).state is JobState.RUNNING  # its lease holds
        await anyio.sleep(jobs.reap_interval + 0.25)  # lease + one reap interval in all
        record = await handle.status()
        assert (record.state, record.attempt, record.lease_until) == (JobState.PENDING, 1, None)
    await source.close()  # the broker notices the dead consumer: the delivery goes back
    async with working(jobs):
        assert await handle.result(timeout=WAIT) == 2
    assert (await handle.status()).attempt == 2


async def test_a_live_workers_lease_is_renewed_for_as_long_as_it_runs() -> None:
    jobs = queue_of(lease=3, reap_interval=1)

    @jobs.task
    async def slow(ctx: JobContext) -> int:
        await anyio.sleep(60)  # twenty leases long
        return ctx.attempt

    handle = await slow.enqueue()
    async with working(jobs):
        assert await handle.result(timeout=WAIT + 60) == 1
    record = await handle.status()
    assert (record.state, record.attempt) == (JobState.SUCCEEDED, 1)


# -- bad input -------------------------------------------------------------------------


async def test_an_unknown_task_names_the_registered_ones() -> None:
    jobs = queue_of()

    @jobs.task
    async def send_welcome(to: str) -> None: ...

    @jobs.task
    async def send_receipt(to: str) -> None: ...

    with pytest.raises(UnknownTask) as unknown:
        await jobs.enqueue("send_welcom", {"to": "ada"})
    assert str(unknown.value) == (
        "no task named 'send_welcom' is registered (registered: send_receipt, send_welcome)"
    )
    assert isinstance(unknown.value, fa.ConfigurationError)
    assert sum((await jobs.counts()).values()) == 0


async def test_arguments_that_do_not_fit_name_the_field_and_its_type_at_enqueue() -> None:
    jobs = queue_of()

    @jobs.task
    async def resize(path: str, width: int, sizes: list[int] | None = None) -> None: ...

    untyped: Any = resize  # the mistakes a type checker would catch, made at run time
    mistakes: list[tuple[Callable[[], Any], list[str]]] = [
        (lambda: untyped.enqueue("cat.png", width="wide"), ["width", "integer", "'wide'"]),
        (lambda: untyped.enqueue(["cat.png"], 10), ["path", "string"]),
        (lambda: untyped.enqueue("cat.png", 10, sizes=[1, "x"]), ["sizes.1", "integer"]),
        (lambda: untyped.enqueue("cat.png"), ["width"]),  # missing
        (lambda: untyped.enqueue("cat.png", 10, height=3), ["height"]),  # unexpected
        # all by name: validated without binding, unless a name is missing or unknown
        (lambda: untyped.enqueue(path="cat.png", width="wide"), ["width", "integer", "'wide'"]),
        (lambda: untyped.enqueue(path="cat.png"), ["missing", "width"]),
        (lambda: untyped.enqueue(path="cat.png", width=1, height=3), ["unexpected", "height"]),
        (lambda: untyped.enqueue_many([("cat.png", 10)]), ["must be a mapping", "tuple"]),
        (lambda: jobs.enqueue("resize", {"path": "cat.png", "width": 1.5}), ["width"]),
        (
            lambda: resize.enqueue_many([{"path": "a", "width": 1}, {"path": "b", "width": "x"}]),
            ["width", "integer"],
        ),
    ]
    for mistake, words in mistakes:
        with pytest.raises(JobArgumentsError) as wrong:
            await mistake()
        assert str(wrong.value).startswith("task 'resize'")
        for word in words:
            assert word in str(wrong.value)
    assert sum((await jobs.counts()).values()) == 0  # nothing was enqueued, not even half
    assert broker(jobs).queue_statistics(QUEUE).ready == 0
    by_name = await resize.enqueue(width=10, path="cat.png")  # any order, a default left out
    by_place = await resize.enqueue("cat.png", 10)
    assert (
        (await by_name.status()).args
        == (await by_place.status()).args
        == {
            "path": "cat.png",
            "width": 10,
        }
    )


async def test_bad_enqueue_options_are_refused_by_name() -> None:
    jobs = queue_of()

    @jobs.task
    async def send(to: str) -> None: ...

    bad_options: list[tuple[dict[str, Any], str]] = [
        ({"priority": "urgent"}, "urgent"),
        ({"priority": 10}, "10"),
        ({"unique": True}, "unique=True needs a key"),
        ({"key": ""}, "key must be a string"),
        ({"tenant": ""}, "tenant must be a string"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"queue": ""}, "queue must be a non-empty string"),
    ]
    for options, words in bad_options:
        with pytest.raises(fa.ConfigurationError, match=words):
            await send.options(**options).enqueue("ada")
    with pytest.raises(fa.ConfigurationError, match="an idempotency key names one job"):
        await send.options(key="k").enqueue_many([{"to": "a"}, {"to": "b"}])
    assert sum((await jobs.counts()).values()) == 0


async def test_a_task_that_cannot_be_typed_or_a_taken_name_is_refused_when_declared() -> None:
    jobs = queue_of()

    @jobs.task
    async def send(to: str) -> None: ...

    with pytest.raises(fa.ConfigurationError, match="already registered"):

        @jobs.task(name="send")
        async def other(to: str) -> None: ...

    with pytest.raises(fa.ConfigurationError, match="parameter 'emails' is variadic positional"):

        @jobs.task
        async def spread(*emails: str) -> None: ...

    with pytest.raises(fa.ConfigurationError, match="retry_on must be an exception class"):
        jobs.task(retry_on="ValueError")(send.func)
    assert list(jobs.tasks) == ["send"]


async def test_arguments_that_no_longer_fit_at_the_worker_dead_letter_with_the_reason() -> None:
    backend, store = fa.MemoryBackend(), MemoryJobStore()
    old = queue_of(backend, store=store)  # the producer, before the signature changed
    new = queue_of(backend, store=store)  # the worker, after
    runs: list[int] = []

    @old.task(name="resize")
    async def resize_before(width: str) -> None: ...

    @new.task(name="resize")
    async def resize_after(width: int) -> None:
        runs.append(width)

    stale, fresh = await resize_before.enqueue("wide"), await resize_before.enqueue("640")
    async with working(new):
        with pytest.raises(JobFailed) as failed:
            await new.handle(stale.id).result(timeout=WAIT)
        await new.handle(fresh.id).result(timeout=WAIT)  # "640" still fits an int
    assert runs == [640]
    record = failed.value.record
    assert (record.state, record.attempt) == (JobState.DEAD, 1)
    assert record.reason is not None
    assert record.reason.startswith("task 'resize': arguments do not fit its signature: width:")
    assert "'wide'" in record.reason
    assert dead_letter_reasons(backend) == [record.reason]


async def test_an_unknown_job_id_is_job_not_found_everywhere() -> None:
    jobs = queue_of()

    @jobs.task
    async def send(to: str) -> None: ...

    handle = jobs.handle("no-such-job")
    for read in (
        handle.status,
        lambda: handle.result(timeout=1),
        handle.cancel,
        lambda: jobs.get("no-such-job"),
        lambda: jobs.retry("no-such-job"),
    ):
        with pytest.raises(JobNotFound, match="no-such-job"):
            await read()


class UnreadableStore(MemoryJobStore):
    """A store holding one record it cannot read (corrupt, or another format version)."""

    unreadable = ""

    async def start(self, job_id: str, now: float, lease_until: float) -> Started:
        if job_id == self.unreadable:
            raise JobRecordError(f"job record {job_id!r} has format version 99; this reads 1")
        return await super().start(job_id, now, lease_until)


async def test_a_record_the_store_cannot_read_dead_letters_its_delivery_once() -> None:
    store = UnreadableStore()
    jobs = queue_of(store=store)
    runs: list[str] = []

    @jobs.task
    async def send(to: str) -> None:
        runs.append(to)

    bad = await send.enqueue("corrupt")
    store.unreadable = bad.id
    good = await send.enqueue("ada")
    async with working(jobs):
        await good.result(timeout=WAIT)  # the worker goes on
        await broker(jobs).join(QUEUE)  # and the bad one is settled: not retried in a loop
    assert runs == ["ada"]
    assert dead_letter_reasons(broker(jobs)) == [
        f"job record unreadable: job record {bad.id!r} has format version 99; this reads 1"
    ]


async def test_deliveries_that_are_not_jobs_or_have_no_record_are_dead_lettered() -> None:
    jobs = queue_of()

    @jobs.task
    async def send(to: str) -> None: ...

    backend = broker(jobs)
    typed = fa.MessageProperties(message_type="send")
    await backend.publish(QUEUE, {"to": "a"}, properties=typed)
    orphan = fa.MessageProperties(message_type="send", headers={JOB_ID_HEADER: "gone"})
    await backend.publish(QUEUE, {"to": "b"}, properties=orphan)
    async with working(jobs):
        await backend.join(QUEUE)
    no_header, no_record = sorted(dead_letter_reasons(backend), reverse=True)
    assert no_header == f"not a job: no {JOB_ID_HEADER} header"
    assert no_record.startswith("no record of job 'gone' in the job store")


async def test_a_replayed_dead_letter_of_a_dead_job_goes_back_unrun() -> None:
    jobs = queue_of()
    calls: list[int] = []

    @jobs.task(max_attempts=1)
    async def doomed() -> None:
        calls.append(1)
        raise RuntimeError("no such domain")

    handle = await doomed.enqueue()
    async with working(jobs):
        with pytest.raises(JobFailed):
            await handle.result(timeout=WAIT)
        (reason,) = dead_letter_reasons(broker(jobs))
        assert broker(jobs).replay_dead_letters(QUEUE) == 1  # by hand, the record still dead
        await broker(jobs).join(QUEUE)
    # not run again, not dropped: back in the dead letters with the job's reason
    assert calls == [1]
    assert dead_letter_reasons(broker(jobs)) == [reason]
    assert (await handle.status()).state is JobState.DEAD
