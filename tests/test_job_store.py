"""The job store contract, run against every store: memory (asyncio and trio) and Redis.

Memory cases run in virtual time, Redis in real time against the suite's own server.

Each transition of `foxactors.jobs._transitions` is checked through the store's own
methods, so a store that keeps the table elsewhere (Redis, in Lua) is held to it too.
A new store joins by adding a case to ``STORES`` and a branch to the ``store`` fixture.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import attrs
import pytest
from anyio import wait_all_tasks_blocked
from hypothesis import given
from hypothesis import strategies as st

from foxactors._ids import new_id
from foxactors.jobs import (
    CancelKind,
    CancelSignals,
    ErrorInfo,
    JobError,
    JobNotFound,
    JobOutcome,
    JobRecord,
    JobState,
    JobStore,
    MemoryJobStore,
    OutcomeReader,
    RedisJobStore,
    StartKind,
)
from foxactors.testing import anyio_backend_options
from foxactors.testing.servers import RedisServer

pytestmark = pytest.mark.anyio

STORES = [("memory", "asyncio"), ("memory", "trio"), ("redis", "asyncio")]
RETENTION = 100.0
NOW = 1_000_000.0


@pytest.fixture(params=STORES, ids=["-".join(case) for case in STORES])
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(case: tuple[str, str]) -> tuple[str, dict[str, Any]]:
    return anyio_backend_options(case[1]) if case[0] == "memory" else ("asyncio", {})


@pytest.fixture
async def store(case: tuple[str, str], request: pytest.FixtureRequest) -> AsyncIterator[JobStore]:
    if case[0] == "memory":
        yield MemoryJobStore(retention=RETENTION)
        return
    if case[0] == "redis":  # real time, a server of the suite's own, a prefix per test
        server: RedisServer = request.getfixturevalue("redis")
        redis_store = RedisJobStore(
            server.url, prefix=f"test:{uuid.uuid4().hex}", retention=RETENTION
        )
        yield redis_store
        await redis_store.close()
        return
    raise AssertionError(f"no store {case[0]!r}")  # pragma: no cover


def job(**changes: Any) -> JobRecord:
    fields: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "task": "send_email",
        "queue": "emails",
        "args": {"to": "ada@example.com"},
        "max_attempts": 3,
        "enqueued_at": NOW,
    }
    fields.update(changes)
    return JobRecord(**fields)


async def enqueued(store: JobStore, **changes: Any) -> JobRecord:
    record, created = await store.create(job(**changes))
    assert created
    await store.commit([record.id])
    return await store.get(record.id)


async def running(store: JobStore, attempt: int = 1, **changes: Any) -> JobRecord:
    """A job started ``attempt`` times, the last at NOW + 1 leased until NOW + 31.

    Each start after the first is a redelivery after the one before's lease ran out
    (under a live lease, start answers busy).
    """
    record = await enqueued(store, **changes)
    for earlier in reversed(range(attempt)):
        at = NOW + 1 - 31 * earlier
        started = await store.start(record.id, at, at + 30)
        assert started.kind is StartKind.RUN
    assert started.record is not None
    return started.record


async def test_a_created_record_reads_back_equal_and_uncommitted(store: JobStore) -> None:
    record = job(tenant="acme", priority=6, key="k1", scheduled_at=NOW + 60)
    stored, created = await store.create(record)
    assert created
    assert stored == record
    assert await store.get(record.id) == record
    assert not record.committed
    await store.commit([record.id])
    assert (await store.get(record.id)).committed


async def test_an_unknown_id_is_not_found(store: JobStore) -> None:
    with pytest.raises(JobNotFound, match="nope"):
        await store.get("nope")
    with pytest.raises(JobNotFound):
        await store.cancel("nope", NOW)
    assert (await store.start("nope", NOW, NOW + 30)).kind is StartKind.MISSING


async def test_another_tenants_job_is_not_found_and_unchanged(store: JobStore) -> None:
    record = await enqueued(store, tenant="acme")
    with pytest.raises(JobNotFound):
        await store.get(record.id, tenant="globex")
    with pytest.raises(JobNotFound):
        await store.cancel(record.id, NOW, tenant="globex")
    assert (await store.get(record.id, tenant="acme")).state is JobState.PENDING
    assert (await store.list(tenant="globex")).jobs == ()


async def test_a_taken_key_returns_the_holder_per_tenant(store: JobStore) -> None:
    first, created = await store.create(job(key="daily"))
    assert created
    again, created = await store.create(job(key="daily"))
    assert not created
    assert again.id == first.id
    other, created = await store.create(job(key="daily", tenant="acme"))
    assert created  # keys are scoped by tenant
    assert other.id != first.id


async def test_concurrent_creates_with_one_key_make_one_job(store: JobStore) -> None:
    results: list[tuple[JobRecord, bool]] = []

    async def create() -> None:
        results.append(await store.create(job(key="once")))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(create)
    assert sum(created for _, created in results) == 1
    assert len({record.id for record, _ in results}) == 1


async def test_create_many_reports_each(store: JobStore) -> None:
    taken = await enqueued(store, key="a")
    results = await store.create_many([job(key="a"), job(key="b"), job()])
    assert [created for _, created in results] == [False, True, True]
    assert results[0][0].id == taken.id


async def test_discard_deletes_an_uncommitted_enqueue_and_frees_its_key(store: JobStore) -> None:
    record, _ = await store.create(job(key="k"))
    await store.discard([record.id])
    with pytest.raises(JobNotFound):
        await store.get(record.id)
    _, created = await store.create(job(key="k"))
    assert created


async def test_discard_leaves_a_committed_job(store: JobStore) -> None:
    record = await enqueued(store, key="k")
    await store.discard([record.id])
    assert (await store.get(record.id)).state is JobState.PENDING


async def test_each_start_is_the_records_next_attempt_whatever_the_broker_counted(
    store: JobStore,
) -> None:
    record = await enqueued(store)
    assert record.attempt == 0  # a delivery given back unrun never reached start
    first = await store.start(record.id, NOW + 1, NOW + 31)
    assert first.record is not None
    assert first.record.attempt == 1
    await store.release(record.id, 1, NOW + 2)  # a run that began counts
    again = await store.start(record.id, NOW + 3, NOW + 33)
    assert again.record is not None
    assert again.record.attempt == 2


async def test_no_second_attempt_starts_while_one_runs_under_a_live_lease(
    store: JobStore,
) -> None:
    # A worker cut off from its broker runs on, renewing its lease through the
    # store, while the broker delivers the job to another worker: that one waits.
    record = await running(store)  # leased until NOW + 31
    busy = await store.start(record.id, NOW + 2, NOW + 32)
    assert busy.kind is StartKind.BUSY
    assert busy.record == record  # nothing counted, nothing changed
    assert await store.get(record.id) == record
    await store.heartbeat(record.id, 1, NOW + 61)  # the first worker is alive
    assert (await store.start(record.id, NOW + 40, NOW + 70)).kind is StartKind.BUSY
    later = await store.start(record.id, NOW + 62, NOW + 92)  # its lease ran out
    assert later.kind is StartKind.RUN
    assert later.record is not None
    assert (later.record.attempt, later.record.lease_until) == (2, NOW + 92)


async def test_a_retrying_job_does_not_start_before_it_is_due(store: JobStore) -> None:
    record = await running(store)
    await store.fail(record.id, 1, NOW + 2, None, retry_at=NOW + 100, reason="later")
    early = await store.start(record.id, NOW + 3, NOW + 33)  # a copy back early
    assert early.kind is StartKind.NOT_DUE
    assert early.record is not None
    assert (early.record.state, early.record.next_run_at) == (JobState.RETRYING, NOW + 100)
    assert (await store.get(record.id)).attempt == 1  # nothing counted
    due = await store.start(record.id, NOW + 100, NOW + 130)
    assert due.kind is StartKind.RUN
    assert due.record is not None
    assert due.record.attempt == 2


async def test_start_leases_the_attempt(store: JobStore) -> None:
    record = await running(store, attempt=2)
    assert record.state is JobState.RUNNING
    assert record.attempt == 2
    assert record.started_at == NOW + 1
    assert record.lease_until == NOW + 31
    assert await store.get(record.id) == record


async def test_a_finished_job_is_not_run_again(store: JobStore) -> None:
    record = await running(store)
    assert await store.complete(record.id, 1, NOW + 2, {"sent": True}) is JobState.SUCCEEDED
    again = await store.start(record.id, NOW + 3, NOW + 33)
    assert again.kind is StartKind.FINISHED
    assert (await store.get(record.id)).result == {"sent": True}


async def test_complete_stores_the_result_and_expiry(store: JobStore) -> None:
    record = await running(store)
    await store.complete(record.id, 1, NOW + 2, [1, "two"])
    done = await store.get(record.id)
    assert done.state is JobState.SUCCEEDED
    assert done.result == [1, "two"]
    assert done.finished_at == NOW + 2
    assert done.expires_at == NOW + 2 + RETENTION
    assert done.lease_until is None


async def test_cancel_before_start_means_it_never_runs(store: JobStore) -> None:
    record = await enqueued(store)
    cancelled = await store.cancel(record.id, NOW + 1)
    assert cancelled.kind is CancelKind.CANCELLED
    assert cancelled.record.state is JobState.CANCELLED
    assert (await store.start(record.id, NOW + 2, NOW + 32)).kind is StartKind.CANCELLED
    assert (await store.get(record.id)).state is JobState.CANCELLED


async def test_cancel_of_a_running_job_wins_over_its_completion(store: JobStore) -> None:
    record = await running(store)
    cancelled = await store.cancel(record.id, NOW + 2)
    assert cancelled.kind is CancelKind.REQUESTED
    assert await store.heartbeat(record.id, 1, NOW + 40)
    assert await store.complete(record.id, 1, NOW + 3, "too late") is JobState.CANCELLED
    done = await store.get(record.id)
    assert done.state is JobState.CANCELLED
    assert done.result is None


@pytest.mark.parametrize("how", ["fail", "retry", "release"])
async def test_cancel_of_a_running_job_wins_over_any_other_end(store: JobStore, how: str) -> None:
    record = await running(store)
    await store.cancel(record.id, NOW + 2)
    if how == "release":
        state = await store.release(record.id, 1, NOW + 3)
    else:
        retry_at = NOW + 10 if how == "retry" else None
        state = await store.fail(record.id, 1, NOW + 3, None, retry_at=retry_at, reason="boom")
    assert state is JobState.CANCELLED


async def test_cancel_of_a_finished_job_changes_nothing(store: JobStore) -> None:
    record = await running(store)
    await store.complete(record.id, 1, NOW + 2, 42)
    cancelled = await store.cancel(record.id, NOW + 3)
    assert cancelled.kind is CancelKind.FINISHED
    done = await store.get(record.id)
    assert done.state is JobState.SUCCEEDED
    assert done.result == 42


async def test_heartbeat_renews_only_the_current_attempt(store: JobStore) -> None:
    record = await running(store, attempt=2)
    assert not await store.heartbeat(record.id, 2, NOW + 100)
    assert (await store.get(record.id)).lease_until == NOW + 100
    await store.heartbeat(record.id, 1, NOW + 500)  # a stale attempt renews nothing
    assert (await store.get(record.id)).lease_until == NOW + 100


async def test_progress_is_recorded(store: JobStore) -> None:
    record = await running(store)
    assert not await store.progress(record.id, 1, 50.0, "step 2")
    seen = await store.get(record.id)
    assert (seen.progress, seen.progress_message) == (50.0, "step 2")


async def test_fail_with_retry_at_is_retrying(store: JobStore) -> None:
    record = await running(store)
    error = ErrorInfo("ValueError", "bad", "Traceback ...")
    state = await store.fail(record.id, 1, NOW + 2, error, retry_at=NOW + 12, reason="ValueError")
    assert state is JobState.RETRYING
    seen = await store.get(record.id)
    assert (seen.state, seen.next_run_at, seen.error) == (JobState.RETRYING, NOW + 12, error)
    again = await store.start(record.id, NOW + 12, NOW + 42)
    assert again.kind is StartKind.RUN
    assert again.record is not None
    assert (again.record.attempt, again.record.next_run_at) == (2, None)


async def test_fail_without_retry_is_dead_with_its_reason(store: JobStore) -> None:
    record = await running(store)
    state = await store.fail(record.id, 1, NOW + 2, None, retry_at=None, reason="no such domain")
    assert state is JobState.DEAD
    seen = await store.get(record.id)
    assert (seen.state, seen.reason, seen.finished_at) == (JobState.DEAD, "no such domain", NOW + 2)


@pytest.mark.parametrize("how", ["complete", "fail", "release"])
async def test_a_stale_attempt_cannot_end_a_later_one(store: JobStore, how: str) -> None:
    record = await running(store)  # attempt 1, leased until NOW + 31: its worker died
    assert (await store.start(record.id, NOW + 32, NOW + 62)).kind is StartKind.RUN
    if how == "complete":  # ... or it did not, and ends late
        state = await store.complete(record.id, 1, NOW + 33, "old")
    elif how == "fail":
        state = await store.fail(record.id, 1, NOW + 33, None, retry_at=None, reason="old")
    else:
        state = await store.release(record.id, 1, NOW + 33)
    assert state is JobState.RUNNING
    seen = await store.get(record.id)
    assert (seen.state, seen.attempt, seen.result) == (JobState.RUNNING, 2, None)
    assert await store.complete(record.id, 2, NOW + 34, "new") is JobState.SUCCEEDED


async def test_release_puts_a_running_job_back_to_pending(store: JobStore) -> None:
    record = await running(store)
    assert await store.release(record.id, 1, NOW + 2) is JobState.PENDING
    assert (await store.get(record.id)).lease_until is None


async def test_retry_sets_a_dead_job_pending_from_attempt_zero(store: JobStore) -> None:
    record = await running(store)
    await store.fail(record.id, 1, NOW + 2, None, retry_at=None, reason="boom")
    again = await store.retry(record.id, NOW + 3)
    assert (again.state, again.attempt, again.committed) == (JobState.PENDING, 0, False)
    assert await store.get(record.id) == again


async def test_retry_refuses_a_live_job(store: JobStore) -> None:
    record = await running(store)
    with pytest.raises(JobError, match="running"):
        await store.retry(record.id, NOW + 2)


async def test_list_pages_newest_first_with_filters(store: JobStore) -> None:
    ids = [(await enqueued(store, enqueued_at=NOW + i)).id for i in range(5)]
    other = await enqueued(store, queue="reports", tenant="acme")
    page = await store.list(queue="emails", limit=2)
    assert [r.id for r in page.jobs] == ids[:-3:-1]
    assert page.cursor is not None
    page2 = await store.list(queue="emails", limit=2, cursor=page.cursor)
    page3 = await store.list(queue="emails", limit=2, cursor=page2.cursor)
    assert [r.id for r in (*page2.jobs, *page3.jobs)] == ids[2::-1]
    assert page3.cursor is None
    assert [r.id for r in (await store.list(tenant="acme")).jobs] == [other.id]
    await store.cancel(ids[0], NOW + 10)
    assert [r.id for r in (await store.list(state=JobState.CANCELLED)).jobs] == [ids[0]]


async def test_counts_cover_every_state(store: JobStore) -> None:
    await enqueued(store)
    await enqueued(store)
    record = await running(store)
    await store.complete(record.id, 1, NOW + 2, None)
    await enqueued(store, queue="reports")
    counts = await store.counts(queue="emails")
    assert counts == {**dict.fromkeys(JobState, 0), JobState.PENDING: 2, JobState.SUCCEEDED: 1}
    assert (await store.counts())[JobState.PENDING] == 3


async def test_wait_returns_once_final(store: JobStore) -> None:
    record = await running(store)
    seen: list[JobRecord] = []

    async def waiter() -> None:
        seen.append(await store.wait(record.id, timeout=60))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        tg.start_soon(waiter)
        await wait_all_tasks_blocked()
        assert seen == []
        await store.complete(record.id, 1, NOW + 2, "done")
    assert [r.result for r in seen] == ["done", "done"]


async def test_wait_times_out(store: JobStore) -> None:
    record = await enqueued(store)
    with pytest.raises(TimeoutError):
        await store.wait(record.id, timeout=0.05)


async def test_an_outcome_waits_for_the_end_and_says_what_it_was(store: JobStore) -> None:
    assert isinstance(store, OutcomeReader)  # both stores have the capability
    succeeds, fails, cancelled = await running(store), await running(store), await enqueued(store)
    seen: list[JobOutcome] = []

    async def waiter() -> None:
        seen.append(await store.outcome(succeeds.id, timeout=60))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await wait_all_tasks_blocked()
        assert seen == []
        await store.complete(succeeds.id, 1, NOW + 2, {"sent": 3})
    assert seen == [JobOutcome(JobState.SUCCEEDED, "send_email", {"sent": 3})]

    error = ErrorInfo(type="LookupError", message="no such domain", traceback="")
    await store.fail(fails.id, 1, NOW + 2, error, retry_at=None, reason="no such domain")
    dead = await store.outcome(fails.id, timeout=60)
    assert (dead.state, dead.result) == (JobState.DEAD, None)
    assert dead.record == await store.get(fails.id)  # the whole record, to say why
    assert dead.record.error == error

    await store.cancel(cancelled.id, NOW + 2)
    assert await store.outcome(cancelled.id, timeout=60) == JobOutcome(
        JobState.CANCELLED, "send_email"
    )


async def test_an_outcome_of_no_job_or_another_tenants_is_not_found(store: JobStore) -> None:
    assert isinstance(store, OutcomeReader)
    record = await running(store, tenant="acme")
    await store.complete(record.id, 1, NOW + 2, "done")
    assert (await store.outcome(record.id, timeout=5, tenant="acme")).result == "done"
    with pytest.raises(JobNotFound):
        await store.outcome(record.id, timeout=5, tenant="globex")
    with pytest.raises(JobNotFound):
        await store.outcome("nope", timeout=5)
    with pytest.raises(TimeoutError):
        await store.outcome((await enqueued(store)).id, timeout=0.05)


async def test_renew_extends_running_leases_and_reports_cancels(store: JobStore) -> None:
    first = await running(store)
    second = await running(store)
    await store.cancel(second.id, NOW + 2)
    cancelled = await store.renew([(first.id, 1), (second.id, 1), ("gone", 1)], NOW + 100)
    assert cancelled == [second.id]
    assert (await store.get(first.id)).lease_until == NOW + 100
    assert await store.renew([], NOW + 100) == []


async def test_renew_of_a_stale_attempt_renews_nothing(store: JobStore) -> None:
    record = await running(store, attempt=2)
    assert await store.renew([(record.id, 1)], NOW + 500) == []
    assert (await store.get(record.id)).lease_until == NOW + 31


async def test_a_store_that_signals_cancels_calls_back_at_once(store: JobStore) -> None:
    if not isinstance(store, CancelSignals):
        pytest.skip("this store has no cancel signals: running jobs learn at renew")
    record = await running(store)
    other = await running(store)
    seen: list[str] = []
    stop = store.on_cancel(seen.append)
    await store.cancel(record.id, NOW + 2)
    assert seen == [record.id]
    stop()
    await store.cancel(other.id, NOW + 3)
    assert seen == [record.id]


async def test_reap_releases_expired_leases(store: JobStore) -> None:
    live = await running(store)
    lost = await running(store)
    await store.heartbeat(live.id, 1, NOW + 100)
    reaped = await store.reap(NOW + 50, abandon_after=60)
    assert reaped.expired_leases == 1
    assert (await store.get(lost.id)).state is JobState.PENDING
    assert (await store.get(live.id)).state is JobState.RUNNING


async def test_a_cancelled_job_still_running_under_a_live_lease_ends_by_its_own_worker(
    store: JobStore,
) -> None:
    # Another delivery of a job cancelled while it runs waits, as for any running
    # job: the running worker hears the cancel and ends the attempt (the record says
    # cancelled only once no handler runs), unless its lease runs out first (it died).
    record = await running(store)  # leased until NOW + 31
    await store.cancel(record.id, NOW + 2)
    busy = await store.start(record.id, NOW + 3, NOW + 33)
    assert busy.kind is StartKind.BUSY
    assert (await store.get(record.id)).state is JobState.RUNNING
    assert await store.complete(record.id, 1, NOW + 4, "late") is JobState.CANCELLED
    assert (await store.start(record.id, NOW + 5, NOW + 35)).kind is StartKind.CANCELLED
    other = await running(store)
    await store.cancel(other.id, NOW + 2)
    dead = await store.start(other.id, NOW + 40, NOW + 70)  # its worker died: lease ran out
    assert dead.kind is StartKind.CANCELLED
    assert (await store.get(other.id)).state is JobState.CANCELLED


async def test_reap_cancels_a_lost_attempt_whose_cancel_was_recorded(store: JobStore) -> None:
    record = await running(store)
    await store.cancel(record.id, NOW + 2)
    await store.reap(NOW + 50, abandon_after=60)
    assert (await store.get(record.id)).state is JobState.CANCELLED


async def test_reap_deletes_finished_records_after_retention_with_keys(store: JobStore) -> None:
    record = await running(store, key="k")
    await store.complete(record.id, 1, NOW + 2, "r")
    assert (await store.reap(NOW + 2 + RETENTION - 1, abandon_after=60)).expired_records == 0
    assert (await store.reap(NOW + 2 + RETENTION, abandon_after=60)).expired_records == 1
    with pytest.raises(JobNotFound):
        await store.get(record.id)
    _, created = await store.create(job(key="k"))
    assert created


async def test_reap_deletes_abandoned_enqueues(store: JobStore) -> None:
    abandoned, _ = await store.create(job(key="k"))
    fresh, _ = await store.create(job(enqueued_at=NOW + 50))
    reaped = await store.reap(NOW + 60, abandon_after=60)
    assert reaped.abandoned == 1
    with pytest.raises(JobNotFound):
        await store.get(abandoned.id)
    assert await store.get(fresh.id) == fresh
    _, created = await store.create(job(key="k"))
    assert created


async def test_records_round_trip_through_their_stored_form(store: JobStore) -> None:
    record = attrs.evolve(
        await running(store),
        error=ErrorInfo("KeyError", "'x'", "tb"),
        progress=12.5,
        result={"a": [1, 2]},
    )
    assert JobRecord.from_json(record.to_json()) == record


FIELD_NAMES = [field.name for field in attrs.fields(JobRecord)]


@given(st.data())
def test_a_changed_record_is_what_attrs_evolve_makes(data: st.DataObject) -> None:
    base = JobRecord(id="j1", task="send", queue="emails", args={"to": "ada"})
    names = data.draw(st.lists(st.sampled_from(FIELD_NAMES), unique=True))
    changes: dict[str, Any] = {
        name: data.draw(st.none() | st.integers() | st.text()) for name in names
    }
    changed = base.changed(**changes)
    assert changed == attrs.evolve(base, **changes)
    assert vars(changed) == vars(attrs.evolve(base, **changes))  # no field more or less
    assert base == JobRecord(id="j1", task="send", queue="emails", args={"to": "ada"})
    with pytest.raises(TypeError, match="JobRecord has no field colour, size"):
        base.changed(state=JobState.RUNNING, size=1, colour="red")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        changed.state = JobState.DEAD  # type: ignore[misc]


def test_ids_are_random_uuid4_hex() -> None:
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for ident in ids:
        parsed = uuid.UUID(ident)
        assert (parsed.hex, parsed.version, parsed.variant) == (ident, 4, uuid.RFC_4122)
