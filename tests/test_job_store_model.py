"""RedisJobStore against MemoryJobStore: random operations, the same answers and records.

The memory store applies `foxactors.jobs._transitions` directly; the Redis store runs
them again in Lua. A state machine drives both with the same operations (creates with
and without keys and tenants, every transition, reaps as time advances) and, after
each step, holds them to the same answer, the same records, listings and counts: any
difference between the Lua and the pure functions shows up here as a short example.

One event loop (a blocking portal) and one Redis client serve every example; each
example has a key prefix of its own.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, ClassVar

import pytest
import redis.asyncio as aioredis
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from foxactors.jobs import (
    ErrorInfo,
    JobError,
    JobRecord,
    JobState,
    JobStore,
    MemoryJobStore,
    RedisJobStore,
)
from foxactors.testing.servers import RedisServer

RETENTION = 100.0
NOW = 1_000_000.0
LIVE = [s for s in JobState if not s.final]
STARTABLE = [JobState.PENDING, JobState.SCHEDULED, JobState.RETRYING]

queues = st.sampled_from(["emails", "reports"])
tenants = st.sampled_from([None, "acme", "globex"])
keys = st.sampled_from([None, "k1", "k2"])
attempts = st.integers(1, 3)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
errors = st.none() | st.builds(ErrorInfo, texts, texts, texts)


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as portal:
        yield portal


@pytest.fixture(scope="module")
def client(redis: RedisServer, portal: BlockingPortal) -> Iterator[aioredis.Redis]:
    async def connect() -> aioredis.Redis:
        return aioredis.Redis.from_url(redis.url)

    client = portal.call(connect)
    yield client
    portal.call(client.aclose)


def outcome(portal: BlockingPortal, call: Callable[[], Awaitable[Any]]) -> Any:
    """What a call answered, or the type and text of what it raised."""
    try:
        return ("answered", portal.call(call))
    except JobError as exc:
        return ("raised", type(exc), str(exc))


class SideBySide(RuleBasedStateMachine):
    """The same operations on both stores; every answer and record compared.

    Most operations pick a job in a state where they matter (by the memory store,
    the oracle): a running job to complete, a dead one to retry; a fifth of the time,
    any job ever named, gone or not.
    """

    portal: ClassVar[BlockingPortal]
    client: ClassVar[aioredis.Redis]

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"model:{uuid.uuid4().hex}"
        self.memory = MemoryJobStore(retention=RETENTION)
        self.redis = RedisJobStore(self.client, prefix=self.prefix, retention=RETENTION)
        self.stores: tuple[JobStore, JobStore] = (self.memory, self.redis)
        self.now = NOW
        self.ids: list[str] = []

    def both(self, call: Callable[[JobStore], Awaitable[Any]]) -> Any:
        memory, redis = (outcome(self.portal, functools.partial(call, s)) for s in self.stores)
        assert redis == memory
        return memory

    def record(self, queue: str, tenant: str | None, key: str | None, later: bool) -> JobRecord:
        job_id = f"job-{len(self.ids)}"  # the same in every replay; the prefix isolates runs
        self.ids.append(job_id)
        return JobRecord(
            id=job_id,
            task="send_email",
            queue=queue,
            args={"n": len(self.ids)},
            tenant=tenant,
            key=key,
            max_attempts=3,
            enqueued_at=self.now,
            state=JobState.SCHEDULED if later else JobState.PENDING,
            scheduled_at=self.now + 30 if later else None,
        )

    def pick(self, data: st.DataObject, *states: JobState) -> tuple[str, int]:
        """A job id (in one of ``states``, mostly) and an attempt (mostly its own)."""
        records = [
            r for r in self.portal.call(lambda: every_record(self.memory)) if r.state in states
        ]
        if records and data.draw(st.integers(0, 4), label="in state") > 0:
            record = data.draw(st.sampled_from(records), label="job")
            job_id, attempt = record.id, record.attempt
        elif self.ids:
            job_id, attempt = data.draw(st.sampled_from(self.ids), label="any job"), 1
        else:
            job_id, attempt = "never-created", 1
        if data.draw(st.integers(0, 5), label="own attempt") == 0:
            attempt = data.draw(attempts, label="other attempt")
        return job_id, attempt

    def running(self, data: st.DataObject) -> tuple[str, int]:
        """A running job and its attempt, mostly; starts one first if none runs."""
        records = self.portal.call(lambda: every_record(self.memory))
        if not any(r.state is JobState.RUNNING for r in records):
            ready = [r for r in records if r.state in STARTABLE]
            if ready and data.draw(st.integers(0, 4), label="start one") > 0:
                record = data.draw(st.sampled_from(ready), label="job to start")
                now = self.now
                self.both(lambda s: s.start(record.id, now, now + 30))
        return self.pick(data, JobState.RUNNING)

    # -- time -----------------------------------------------------------------------

    @rule(seconds=st.sampled_from([0.0, 0.001, 0.5, 1.0, 7.3, 30.0, 60.0, 100.0, 1000.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule(abandon_after=st.sampled_from([0.0, 10.0, 60.0, 100.5]))
    def reap(self, abandon_after: float) -> None:
        now = self.now
        self.both(lambda s: s.reap(now, abandon_after=abandon_after))

    # -- enqueue ----------------------------------------------------------------------

    @rule(queue=queues, tenant=tenants, key=keys, later=st.booleans())
    def create(self, queue: str, tenant: str | None, key: str | None, later: bool) -> None:
        record = self.record(queue, tenant, key, later)
        self.both(lambda s: s.create(record))

    @rule(specs=st.lists(st.tuples(queues, tenants, keys, st.booleans()), min_size=1, max_size=4))
    def create_many(self, specs: list[tuple[str, str | None, str | None, bool]]) -> None:
        records = [self.record(*spec) for spec in specs]
        self.both(lambda s: s.create_many(records))

    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        ids = [self.pick(data, *LIVE)[0] for _ in range(data.draw(st.integers(1, 3)))]
        self.both(lambda s: s.commit(ids))

    @rule(data=st.data())
    def discard(self, data: st.DataObject) -> None:
        ids = [self.pick(data, *JobState)[0] for _ in range(data.draw(st.integers(1, 2)))]
        self.both(lambda s: s.discard(ids))

    # -- workers ----------------------------------------------------------------------

    @rule(data=st.data(), lease=st.sampled_from([1.0, 30.0]))
    def start(self, data: st.DataObject, lease: float) -> None:
        job_id, _ = self.pick(data, *STARTABLE, JobState.RUNNING)  # running: a redelivery
        now = self.now
        self.both(lambda s: s.start(job_id, now, now + lease))

    @rule(data=st.data(), lease=st.sampled_from([1.0, 30.0]))
    def heartbeat(self, data: st.DataObject, lease: float) -> None:
        job_id, attempt = self.running(data)
        now = self.now
        self.both(lambda s: s.heartbeat(job_id, attempt, now + lease))

    @rule(data=st.data(), percent=st.floats(0, 100), message=st.none() | texts)
    def progress(self, data: st.DataObject, percent: float, message: str | None) -> None:
        job_id, attempt = self.running(data)
        self.both(lambda s: s.progress(job_id, attempt, percent, message))

    @rule(data=st.data(), result=json_values)
    def complete(self, data: st.DataObject, result: Any) -> None:
        job_id, attempt = self.running(data)
        now = self.now
        self.both(lambda s: s.complete(job_id, attempt, now, result))

    @rule(
        data=st.data(),
        error=errors,
        retry_in=st.none() | st.sampled_from([0.5, 10.0]),
        reason=texts,
    )
    def fail(
        self,
        data: st.DataObject,
        error: ErrorInfo | None,
        retry_in: float | None,
        reason: str,
    ) -> None:
        job_id, attempt = self.running(data)
        now = self.now
        retry_at = None if retry_in is None else now + retry_in
        self.both(lambda s: s.fail(job_id, attempt, now, error, retry_at=retry_at, reason=reason))

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        job_id, attempt = self.running(data)
        now = self.now
        self.both(lambda s: s.release(job_id, attempt, now))

    # -- operators ----------------------------------------------------------------------

    @rule(data=st.data(), tenant=tenants)
    def cancel(self, data: st.DataObject, tenant: str | None) -> None:
        job_id, _ = self.pick(data, *LIVE)
        now = self.now
        self.both(lambda s: s.cancel(job_id, now, tenant=tenant))

    @rule(data=st.data(), tenant=tenants)
    def retry(self, data: st.DataObject, tenant: str | None) -> None:
        job_id, _ = self.pick(data, JobState.DEAD, JobState.CANCELLED)
        now = self.now
        self.both(lambda s: s.retry(job_id, now, tenant=tenant))

    @rule(data=st.data(), tenant=tenants)
    def get(self, data: st.DataObject, tenant: str | None) -> None:
        job_id, _ = self.pick(data, *JobState)
        self.both(lambda s: s.get(job_id, tenant=tenant))

    @rule(
        queue=st.none() | queues,
        state=st.none() | st.sampled_from(JobState),
        tenant=tenants,
        limit=st.integers(1, 4),
    )
    def list_pages(
        self, queue: str | None, state: JobState | None, tenant: str | None, limit: int
    ) -> None:
        self.both(lambda s: every_page(s, queue=queue, state=state, tenant=tenant, limit=limit))

    @rule(queue=st.none() | queues, tenant=tenants)
    def counts(self, queue: str | None, tenant: str | None) -> None:
        self.both(lambda s: s.counts(queue=queue, tenant=tenant))

    @invariant()
    def same_records(self) -> None:
        ids = list(self.ids)

        async def everything(store: JobStore) -> Any:
            records: list[JobRecord | type[JobError]] = []
            for job_id in ids:
                try:
                    records.append(await store.get(job_id))
                except JobError as exc:
                    records.append(type(exc))
            return records, await every_page(store, limit=7), await store.counts()

        self.both(everything)

    def teardown(self) -> None:
        async def clean() -> None:
            found = [key async for key in self.client.scan_iter(match=f"{self.prefix}:*")]
            if found:
                await self.client.delete(*found)

        self.portal.call(clean)


async def every_record(store: JobStore) -> list[JobRecord]:
    return [record for page in await every_page(store, limit=100) for record in page]


async def every_page(store: JobStore, **filters: Any) -> list[tuple[JobRecord, ...]]:
    """Every page of a listing, following the store's own cursors."""
    pages = []
    cursor = None
    while True:
        page = await store.list(**filters, cursor=cursor)
        pages.append(page.jobs)
        if page.cursor is None:
            return pages
        cursor = page.cursor


def test_the_redis_store_answers_as_the_memory_store(
    portal: BlockingPortal, client: aioredis.Redis
) -> None:
    SideBySide.portal = portal
    SideBySide.client = client
    run_state_machine_as_test(
        SideBySide,
        settings=settings(
            max_examples=50, stateful_step_count=50, deadline=None, report_multiple_bugs=False
        ),
    )


async def lease_runs_out_exactly(store: JobStore) -> Any:
    await store.create(JobRecord(id="a", task="t", queue="q", enqueued_at=NOW))
    await store.start("a", NOW, NOW + 30.0)
    at_the_end = await store.reap(NOW + 30.0, abandon_after=1000)
    after = await store.reap(NOW + 30.0 + 1e-9, abandon_after=1000)
    return at_the_end, after, await store.get("a")


async def retention_ends_exactly(store: JobStore) -> Any:
    await store.create(JobRecord(id="a", task="t", queue="q", enqueued_at=NOW, key="k"))
    await store.commit(["a"])
    await store.start("a", NOW + 0.1, NOW + 30.0)
    await store.complete("a", 1, NOW + 0.3, "r")
    before = await store.reap(NOW + 0.3 + RETENTION - 1e-9, abandon_after=0)
    at_the_end = await store.reap(NOW + 0.3 + RETENTION, abandon_after=0)
    return before, at_the_end, await store.create(JobRecord(id="b", task="t", queue="q", key="k"))


async def enqueue_abandoned_exactly(store: JobStore) -> Any:
    await store.create(JobRecord(id="a", task="t", queue="q", enqueued_at=NOW + 0.1))
    before = await store.reap(NOW + 0.1 + 7.3 - 1e-9, abandon_after=7.3)
    at_the_end = await store.reap(NOW + 0.1 + 7.3, abandon_after=7.3)
    return before, at_the_end


async def redelivered_after_a_cancel(store: JobStore) -> Any:
    await store.create(JobRecord(id="a", task="t", queue="q", enqueued_at=NOW))
    await store.start("a", NOW, NOW + 30.0)
    cancelled = await store.cancel("a", NOW + 1)
    return cancelled, await store.start("a", NOW + 2, NOW + 32), await store.get("a")


async def released_by_reap_with_retention_zero(store: JobStore) -> Any:
    store.retention = 0.0
    await store.create(JobRecord(id="a", task="t", queue="q", enqueued_at=NOW))
    await store.start("a", NOW, NOW + 1.0)
    await store.cancel("a", NOW + 0.5)
    return await store.reap(NOW + 2, abandon_after=60), await store.get("a")


@pytest.mark.parametrize(
    "scenario",
    [
        lease_runs_out_exactly,
        retention_ends_exactly,
        enqueue_abandoned_exactly,
        redelivered_after_a_cancel,
        released_by_reap_with_retention_zero,
    ],
)
def test_edges_agree(
    portal: BlockingPortal,
    client: aioredis.Redis,
    scenario: Callable[[JobStore], Awaitable[Any]],
) -> None:
    redis = RedisJobStore(client, prefix=f"edge:{uuid.uuid4().hex}", retention=RETENTION)
    memory = MemoryJobStore(retention=RETENTION)
    assert portal.call(scenario, redis) == portal.call(scenario, memory)
