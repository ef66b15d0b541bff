"""What only the Redis job store has to prove: real concurrency, round trips, costs, bad data.

The contract itself is tests/test_job_store.py (every store); these run on asyncio in
real time against the suite's own redis-server. Costs are counted, never timed: Redis
counts the commands scripts run (INFO commandstats), so "reap reads only what
expired" is a number of HMGETs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

import anyio
import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

import foxactors as fa
from foxactors import ConfigurationError
from foxactors.backends import RedisBackend
from foxactors.jobs import (
    CancelKind,
    ErrorInfo,
    JobNotFound,
    JobOutcome,
    JobQueue,
    JobRecord,
    JobRecordError,
    JobState,
    JobStoreError,
    RedisJobStore,
    StartKind,
)
from foxactors.jobs import _redis_inbox as redis_inbox
from foxactors.jobs import _redis_listener as redis_listener
from foxactors.jobs import _redis_scripts as scripts
from foxactors.jobs import _redis_store as redis_store
from foxactors.jobs._record import FORMAT
from foxactors.jobs._redis_form import encode, fields_of
from foxactors.testing.servers import RedisServer, free_port, redis_server

from .helpers import until

pytestmark = pytest.mark.anyio

NOW = 1_000_000.0
RETENTION = 100.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis-py


@pytest.fixture
async def raw(redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain client: what an operator (or a bug) would do to the keys."""
    client = aioredis.Redis.from_url(redis.url)
    yield client
    await client.aclose()


class Counting(aioredis.Redis):
    """A client that notes the name of every command it sends (one per round trip)."""

    sent: list[str]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append(str(args[0]))
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


@pytest.fixture
async def counting(redis: RedisServer) -> AsyncIterator[Counting]:
    client = Counting(host="127.0.0.1", port=redis.port)
    client.sent = []
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis: RedisServer) -> AsyncIterator[RedisJobStore]:
    jobs = RedisJobStore(redis.url, prefix=f"t:{uuid.uuid4().hex}", retention=RETENTION)
    yield jobs
    await jobs.close()


def job(**changes: Any) -> JobRecord:
    fields: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "task": "send_email",
        "queue": "emails",
        "args": {"to": "ada@example.com"},
        "enqueued_at": NOW,
    }
    fields.update(changes)
    return JobRecord(**fields)


def done(**changes: Any) -> JobRecord:
    """A record already succeeded (at NOW, kept until NOW + RETENTION, unless changed)."""
    fields: dict[str, Any] = {
        "state": JobState.SUCCEEDED,
        "committed": True,
        "finished_at": NOW,
        "expires_at": NOW + RETENTION,
        "result": "ok",
    }
    return job(**{**fields, **changes})


async def calls(raw: aioredis.Redis, command: str) -> int:
    """How many times Redis has run ``command`` (scripts' calls included)."""
    stats = await raw.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


# -- one key, one job -------------------------------------------------------------------


async def test_fifty_producers_on_their_own_connections_make_one_job(redis: RedisServer) -> None:
    prefix = f"t:{uuid.uuid4().hex}"
    producers = [RedisJobStore(redis.url, prefix=prefix) for _ in range(50)]
    answers: list[tuple[JobRecord, bool]] = []

    async def enqueue(producer: RedisJobStore, n: int) -> None:
        record = job(key="daily-report", tenant="acme")
        if n % 2:
            answers.append(await producer.create(record))
        else:
            answers.extend(await producer.create_many([job(), record]))

    try:
        async with anyio.create_task_group() as tg:
            for n, producer in enumerate(producers):
                tg.start_soon(enqueue, producer, n)
        keyed = [(r, created) for r, created in answers if r.key == "daily-report"]
        assert sum(created for _, created in keyed) == 1
        assert len({r.id for r, _ in keyed}) == 1
        counts = await producers[0].counts(queue="emails", tenant="acme")
        assert counts[JobState.PENDING] == 1  # the other tenant-less jobs are not acme's
    finally:
        for producer in producers:
            await producer.close()


# -- round trips and costs --------------------------------------------------------------


async def test_each_transition_is_one_round_trip(counting: Counting) -> None:
    store = RedisJobStore(counting, prefix=f"t:{uuid.uuid4().hex}")

    async def life() -> None:
        record, _ = await store.create(job(key=uuid.uuid4().hex))
        await store.commit([record.id])
        await store.start(record.id, NOW, NOW + 30)
        await store.heartbeat(record.id, 1, NOW + 60)
        await store.complete(record.id, 1, NOW + 1, {"ok": True})
        await store.get(record.id)
        assert (await store.outcome(record.id, timeout=5)).result == {"ok": True}

    await life()  # a script Redis does not know yet costs one EVAL, once
    counting.sent.clear()
    await life()
    assert counting.sent == ["EVALSHA"] * 5 + ["HGETALL", "HMGET"]
    counting.sent.clear()
    await store.create_many([job() for _ in range(200)])
    assert counting.sent == ["EVALSHA"]


async def test_a_record_and_its_stream_entry_are_written_together_or_not_at_all(
    store: RedisJobStore, raw: aioredis.Redis
) -> None:
    stream, taken = f"s-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    await raw.set(taken, "not a stream")
    kept, refused = job(key="daily", committed=True), job(key="weekly", committed=True)
    kept_entry = [stream, "*", "payload", "1", "id", kept.id]
    answers = await store.create_published(
        [kept, refused], [kept_entry, [taken, "*", "payload", "2", "id", refused.id]]
    )
    assert answers[0] == (kept, True)
    assert isinstance(answers[1], fa.BackendError)
    assert f"stream {taken!r}" in str(answers[1])
    assert "WRONGTYPE" in str(answers[1])
    assert str(answers[1]).endswith("pick another stream name")
    # the refused job left nothing: no record, no index entry, no key
    with pytest.raises(JobNotFound):
        await store.get(refused.id)
    assert (await store.counts())[JobState.PENDING] == 1
    assert await raw.hget(f"{store.prefix}:keys", "0:weekly") is None
    assert await raw.hget(f"{store.prefix}:keys", "0:daily") == kept.id.encode()
    assert [fields for _, fields in await raw.xrange(stream) or ()] == [
        {b"payload": b"1", b"id": kept.id.encode()}
    ]
    assert (await store.get(kept.id)).committed  # nothing left to commit
    assert await raw.zcard(f"{store.prefix}:uncommitted") == 0
    # sent again (its reply lost): the record exists, and no second entry is added
    assert await store.create_published([kept], [kept_entry]) == [(kept, True)]
    assert await raw.xlen(stream) == 1
    # a key held: the holder answers, and its entry is not added either
    other = job(key="daily", committed=True)
    (answer,) = await store.create_published(
        [other], [[stream, "*", "payload", "3", "id", other.id]]
    )
    assert not isinstance(answer, fa.BackendError)
    assert (answer[0].id, answer[1]) == (kept.id, False)
    assert await raw.xlen(stream) == 1


async def test_concurrent_creates_and_commits_are_joined_and_answer_each_caller(
    store: RedisJobStore, raw: aioredis.Redis
) -> None:
    await store.commit([(await store.create(job()))[0].id])  # Redis knows the scripts now
    first = job(key="one")
    records = [first, job(), job(key="one"), job(key="one", tenant="acme")]
    before = await calls(raw, "evalsha")
    answers = await asyncio.gather(*(store.create(record) for record in records))
    await asyncio.gather(*(store.commit([record.id]) for record in records))
    assert await calls(raw, "evalsha") - before == 2  # one script call each, for all four
    assert [(stored.id, created) for stored, created in answers] == [
        (first.id, True),
        (records[1].id, True),
        (first.id, False),  # the key's holder, created earlier in the same call
        (records[3].id, True),  # another tenant's key
    ]
    assert [(await store.get(r.id)).committed for r in (first, records[1], records[3])] == [
        True
    ] * 3


async def test_a_joined_call_that_fails_answers_each_caller_as_its_own_call(
    store: RedisJobStore, raw: aioredis.Redis
) -> None:
    await raw.set(f"{store.prefix}:keys", "garbage")  # only a create with a key reads it
    plain, keyed, other = job(), job(key="k"), job()
    answers = await asyncio.gather(
        *(store.create(record) for record in (plain, keyed, other)), return_exceptions=True
    )
    assert answers[0] == (plain, True)
    assert isinstance(answers[1], JobRecordError)
    assert answers[2] == (other, True)
    assert (await store.get(other.id)).id == other.id
    with pytest.raises(JobNotFound):
        await store.get(keyed.id)


async def test_concurrent_starts_and_completions_are_joined_and_a_refused_row_fails_alone(
    store: RedisJobStore, raw: aioredis.Redis
) -> None:
    # A worker's deliveries of one turn start in one script call, and end in one; a row
    # Redis refuses (here: acme's running index holds a string) fails its caller alone,
    # as its own call would, and the rows beside it go through.
    records = [job(), job(tenant="acme"), job(), job()]
    for record in records:
        await store.create(record)
    warm, _ = await store.create(job())  # Redis knows the scripts now
    await store.complete(warm.id, 1, NOW, None)
    await store.start(warm.id, NOW, NOW + 30)
    await raw.set(f"{store.prefix}:ts:acme:running", "garbage")
    before = await calls(raw, "evalsha")
    starts = await asyncio.gather(
        *(store.start(r.id, NOW, NOW + 30) for r in records), return_exceptions=True
    )
    assert await calls(raw, "evalsha") - before == 1
    assert isinstance(starts[1], JobRecordError)
    assert "WRONGTYPE" in str(starts[1])
    ran = [records[i] for i in (0, 2, 3)]
    assert [starts[i].kind for i in (0, 2, 3)] == [StartKind.RUN] * 3  # type: ignore[union-attr]
    assert [starts[i].record for i in (0, 2, 3)] == [await store.get(r.id) for r in ran]  # type: ignore[union-attr]

    before = await calls(raw, "evalsha")
    ends = await asyncio.gather(*(store.complete(r.id, 1, NOW + 1, n) for n, r in enumerate(ran)))
    assert await calls(raw, "evalsha") - before == 1
    assert ends == [JobState.SUCCEEDED] * 3
    assert [(await store.get(r.id)).result for r in ran] == [0, 1, 2]


class LosesOneStartReply(aioredis.Connection):
    """A connection that drops the first reply to a START script the server ran."""

    lost: ClassVar[list[int]] = []  # replies lost so far (one at most)

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        packed = b"".join(command) if isinstance(command, list) else command
        self._start_sent = scripts.START.sha.encode() in packed
        await super().send_packed_command(command, check_health)

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        reply = await super().read_response(*args, **kwargs)
        if getattr(self, "_start_sent", False) and not self.lost:
            self.lost.append(1)  # the server ran it; the answer is lost on the way
            await self.disconnect()
            raise RedisConnectionError("connection lost after the command was sent")
        return reply


async def test_a_start_sent_again_after_its_reply_was_lost_counts_one_attempt(
    redis: RedisServer, raw: aioredis.Redis
) -> None:
    # redis-py sends a command once more on a fresh connection when the first fails,
    # also when the server had run it and only the reply was lost: the start knows its
    # own token, so the attempt is counted once (a job allowed one attempt would
    # otherwise go dead as if its worker had crashed).
    pool = aioredis.ConnectionPool(
        connection_class=LosesOneStartReply,
        host="127.0.0.1",
        port=redis.port,
        retry=Retry(NoBackoff(), 1),
    )
    client = aioredis.Redis(connection_pool=pool)
    store = RedisJobStore(client, prefix=f"t:{uuid.uuid4().hex}")
    try:
        record, _ = await store.create(job(max_attempts=1))
        await raw.script_load(scripts.START.source)  # an EVALSHA that runs it, not NOSCRIPT
        before = await calls(raw, "evalsha")
        started = await store.start(record.id, NOW, NOW + 30)
        assert LosesOneStartReply.lost == [1]
        assert await calls(raw, "evalsha") - before == 2  # the same start, run twice
        assert started.kind is StartKind.RUN
        assert started.record is not None
        assert started.record.attempt == 1
        assert (await store.get(record.id)).attempt == 1
        # a second delivery's start (another call, once the lease ran out) is another
        # attempt, as it should be
        assert (await store.start(record.id, NOW + 31, NOW + 61)).record.attempt == 2  # type: ignore[union-attr]
        assert await raw.hget(f"{store.prefix}:starts", record.id) is not None
        await store.complete(record.id, 2, NOW + 2, None)
        assert await raw.hget(f"{store.prefix}:starts", record.id) is None  # ended: forgotten
    finally:
        await store.close()
        await client.aclose()
        await pool.disconnect()


async def test_a_start_sent_again_after_a_cancel_answers_cancelled(
    store: RedisJobStore, raw: aioredis.Redis
) -> None:
    # the start ran, its reply was lost, a cancel came, then redis-py sent the start
    # again: no handler ran for it, so it must not run now
    record, _ = await store.create(job())
    start = (record.id, repr(NOW), repr(NOW + 30), repr(NOW + RETENTION), "token-1")
    head = (store.prefix, str(FORMAT))
    sha = await raw.script_load(scripts.START.source)
    first: Any = await raw.evalsha(sha, 0, *head, *start)
    assert first[0][0] == b"run"
    assert (await store.cancel(record.id, NOW + 1)).kind is CancelKind.REQUESTED
    again: Any = await raw.evalsha(sha, 0, *head, *start)
    assert again[0][0] == b"cancelled"
    assert (await store.get(record.id)).state is JobState.CANCELLED


async def test_closing_the_store_fails_the_commands_it_has_not_answered(
    redis: RedisServer,
) -> None:
    store = RedisJobStore(redis.url, prefix=f"t:{uuid.uuid4().hex}")
    with anyio.fail_after(5):  # none of them waits for an answer that will not come
        answers = await asyncio.gather(  # the reads queue their commands, then close runs
            store.get("a"), store.get("b"), store.close(), return_exceptions=True
        )
    assert [type(answer) for answer in answers] == [JobStoreError, JobStoreError, type(None)]
    assert "closed" in str(answers[0])


async def test_a_closed_store_sends_nothing_and_says_it_is_closed(
    store: RedisJobStore, counting: Counting
) -> None:
    closed = RedisJobStore(counting, prefix=store.prefix)
    record, _ = await closed.create(job())
    await closed.close()
    counting.sent.clear()
    for act in (
        closed.get(record.id),
        closed.outcome(record.id, timeout=5),
        closed.create(job()),
        closed.counts(),
    ):
        with pytest.raises(JobStoreError, match=r"is closed \(.*\); use one that is open"):
            await act
    assert counting.sent == []


def test_on_trio_the_store_says_it_runs_on_asyncio_only() -> None:
    """redis-py has no trio support: each call, and close, says so and what to use.

    Nothing listens at the store's address: a call that tried to connect would fail
    with a connection error instead.
    """
    trio = pytest.importorskip("trio")
    for push in (False, True):  # with pushes, create opens the inbox first
        store = RedisJobStore(f"redis://127.0.0.1:{free_port()}/0", prefix="t", push_results=push)
        said: list[str] = []

        async def main(store: RedisJobStore = store, said: list[str] = said) -> None:
            for act in (lambda: store.get("x"), lambda: store.create(job()), store.close):
                with pytest.raises(ConfigurationError) as caught:
                    await act()
                said.append(str(caught.value))

        trio.run(main)
        for text, doing in zip(said, ("reading a job", "create", "closing"), strict=True):
            for part in ("runs on asyncio only", "called on trio", "use MemoryJobStore", doing):
                assert part in text, text


async def test_a_waiter_when_the_store_closes_is_told_it_closed(redis: RedisServer) -> None:
    for push in (False, True):
        store = RedisJobStore(redis.url, prefix=f"t:{uuid.uuid4().hex}", push_results=push)
        record, _ = await store.create(job())
        await store.start(record.id, time.time(), time.time() + 30)
        failed: list[Exception] = []

        async def waiter(store: RedisJobStore, job_id: str, failed: list[Exception]) -> None:
            try:
                await store.outcome(job_id, timeout=30)
            except JobStoreError as exc:
                failed.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, store, record.id, failed)
            await anyio.wait_all_tasks_blocked()
            await store.close()
        assert len(failed) == 1
        assert "is closed (reading a job); use one that is open" in str(failed[0])


async def test_after_a_script_flush_the_joined_callers_load_it_once(
    store: RedisJobStore, raw: aioredis.Redis
) -> None:
    await store.create(job())  # the client connected, the script known
    await raw.script_flush()  # as a restarted server
    loads = await calls(raw, "script|load")
    created = await asyncio.gather(*(store.create(job()) for _ in range(50)))
    assert all(made for _, made in created)
    assert await calls(raw, "script|load") == loads + 1


@contextlib.asynccontextmanager
async def limited(
    raw: aioredis.Redis,
    redis: RedisServer,
    prefix: str,
    *,
    channels: str,
    commands: list[str],
    push_results: bool = False,
) -> AsyncIterator[RedisJobStore]:
    """A store of a Redis user of its own, allowed only ``channels`` and ``commands``."""
    user = f"limited-{uuid.uuid4().hex[:8]}"
    await raw.acl_setuser(
        user,
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        reset_channels=True,
        channels=[channels],
        commands=commands,
    )
    store = RedisJobStore(
        f"redis://{user}:pw@127.0.0.1:{redis.port}/0", prefix=prefix, push_results=push_results
    )
    try:
        yield store
    finally:
        await store.close()
        await raw.acl_deluser(user)


async def test_a_user_who_may_not_load_scripts_still_runs_them(
    store: RedisJobStore, redis: RedisServer, raw: aioredis.Redis
) -> None:
    rights = ["+@all", "-script|load"]
    async with limited(raw, redis, store.prefix, channels="*", commands=rights) as limited_store:
        await raw.script_flush()
        records = await asyncio.gather(*(limited_store.create(job()) for _ in range(5)))
        assert all(made for _, made in records)  # each sent as an EVAL of its own
        alone, made = await limited_store.create(job())
        assert made
        assert (await limited_store.start(alone.id, NOW, NOW + 30)).kind is StartKind.RUN


async def test_reap_reads_only_what_expired(store: RedisJobStore, raw: aioredis.Redis) -> None:
    kept = [done(finished_at=NOW + 50, expires_at=NOW + 50 + RETENTION) for _ in range(3000)]
    gone = [done() for _ in range(3)]
    for n in range(0, len(kept), 500):
        await store.create_many(kept[n : n + 500])
    await store.create_many(gone)
    before = await calls(raw, "hmget")
    reaped = await store.reap(NOW + RETENTION, abandon_after=60)
    assert (reaped.expired_records, reaped.expired_leases, reaped.abandoned) == (3, 0, 0)
    assert await calls(raw, "hmget") - before == 3  # one read per expired record, no more
    for record in gone:
        with pytest.raises(JobNotFound):
            await store.get(record.id)
    assert (await store.counts())[JobState.SUCCEEDED] == 3000
    assert await store.get(kept[0].id) == kept[0]


async def test_reap_works_through_more_than_a_batch(store: RedisJobStore) -> None:
    await store.create_many([done() for _ in range(1200)])  # REAP_BATCH is 500
    assert (await store.reap(NOW + RETENTION, abandon_after=60)).expired_records == 1200
    assert (await store.counts())[JobState.SUCCEEDED] == 0


async def test_a_list_with_two_filters_reads_the_smaller_index(
    store: RedisJobStore, raw: aioredis.Redis
) -> None:
    wanted = [job(queue="reports", tenant="acme") for _ in range(3)]
    await store.create_many(wanted)
    await store.create_many([job(queue="reports", tenant="globex") for _ in range(500)])
    before = await calls(raw, "hmget")
    page = await store.list(queue="reports", tenant="acme")
    assert {r.id for r in page.jobs} == {r.id for r in wanted}
    assert await calls(raw, "hmget") - before == 3  # acme's index, not the queue's 503


async def test_a_sparse_listing_comes_in_pages_cut_by_the_scan_budget(
    store: RedisJobStore,
) -> None:
    # Two matches at the old end of two large indexes: a page reads at most
    # 10 * limit + 1000 index entries, then hands back a cursor to go on from.
    wanted = [job(queue="reports", tenant="acme") for _ in range(2)]
    await store.create_many(wanted)
    for _ in range(3):
        await store.create_many([job(queue="reports", tenant="globex") for _ in range(500)])
        await store.create_many([job(queue="emails", tenant="acme") for _ in range(500)])
    first = await store.list(queue="reports", tenant="acme", limit=5)
    assert first.jobs == ()
    assert first.cursor is not None
    found: list[JobRecord] = []
    cursor: str | None = first.cursor
    while cursor is not None:
        page = await store.list(queue="reports", tenant="acme", limit=5, cursor=cursor)
        found += page.jobs
        cursor = page.cursor
    assert [r.id for r in found] == [r.id for r in reversed(wanted)]


# -- bad data ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda raw, key: raw.hset(key, "state", "{not json"), "not JSON"),
        (lambda raw, key: raw.hset(key, "v", "2"), "format version 2"),
        (lambda raw, key: raw.hset(key, "state", '"lost"'), "lost"),
        (lambda raw, key: raw.delete(key), None),  # gone from under its indexes
        (lambda raw, key: raw.set(key, "garbage"), "WRONGTYPE"),
    ],
    ids=["garbage-json", "other-version", "unknown-state", "deleted", "not-a-hash"],
)
async def test_a_spoilt_record_is_refused_clearly_and_the_rest_works(
    store: RedisJobStore,
    raw: aioredis.Redis,
    spoil: Callable[[aioredis.Redis, str], Any],
    message: str | None,
) -> None:
    spoilt = job(key="k")
    await store.create(spoilt)
    await store.commit([spoilt.id])
    await store.start(spoilt.id, NOW, NOW + 1)  # in the leases index, soon expired
    finished = await store.create(done())
    await spoil(raw, f"{store.prefix}:job:{spoilt.id}")

    if message is None:
        with pytest.raises(JobNotFound):
            await store.get(spoilt.id)
        with pytest.raises(JobNotFound):
            await store.outcome(spoilt.id, timeout=5)
        assert [r.id for r in (await store.list()).jobs] == [finished[0].id]
    else:
        with pytest.raises(JobRecordError, match=message):
            await store.get(spoilt.id)
        with pytest.raises(JobRecordError, match=message):
            await store.outcome(spoilt.id, timeout=5)
        with pytest.raises(JobRecordError):
            await store.list()
        with pytest.raises(JobRecordError):
            await store.start(spoilt.id, NOW, NOW + 30)
        with pytest.raises(JobRecordError):
            await store.cancel(spoilt.id, NOW)

    # Reaping goes on around it: the finished record expires, the spoilt one is left.
    reaped = await store.reap(NOW + RETENTION + 10, abandon_after=60)
    assert (reaped.expired_records, reaped.expired_leases) == (1, 0)
    with pytest.raises(JobNotFound):
        await store.get(finished[0].id)
    assert await raw.exists(f"{store.prefix}:job:{spoilt.id}") == (message is not None)
    assert (await store.reap(NOW + RETENTION + 20, abandon_after=60)).expired_leases == 0
    # Other jobs come and go as usual.
    other, created = await store.create(job())
    assert created
    assert (await store.start(other.id, NOW, NOW + 30)).record == await store.get(other.id)


async def test_a_lease_or_due_time_that_is_not_a_number_counts_as_passed(
    store: RedisJobStore, raw: aioredis.Redis
) -> None:
    # Not what foxactors writes; a start must not fail on it (it would forever).
    running, _ = await store.create(job())
    await store.start(running.id, NOW, NOW + 30)
    await raw.hset(f"{store.prefix}:job:{running.id}", "lease_until", '"soon"')
    assert (await store.start(running.id, NOW + 1, NOW + 31)).kind is StartKind.RUN
    retrying, _ = await store.create(job())
    await store.start(retrying.id, NOW, NOW + 30)
    await store.fail(retrying.id, 1, NOW + 1, None, retry_at=NOW + 100, reason="later")
    await raw.hset(f"{store.prefix}:job:{retrying.id}", "next_run_at", "[]")
    assert (await store.start(retrying.id, NOW + 2, NOW + 32)).kind is StartKind.RUN


@pytest.mark.parametrize(
    "spoilt_text",
    ["{not json", '1,"args":{"to":"mallory"}', '1],["x"'],
    ids=["not-json", "two-values", "closes-the-array"],
)
async def test_a_record_with_a_field_that_is_not_one_json_value_is_refused_by_every_reply(
    store: RedisJobStore, raw: aioredis.Redis, spoilt_text: str
) -> None:
    # Not a control field: the scripts do not read it, they reply with the record,
    # its fields' texts put together. No spoilt field may pass for others.
    spoilt = job(key="k")
    await store.create(spoilt)
    await raw.hset(f"{store.prefix}:job:{spoilt.id}", "progress_message", spoilt_text)
    with pytest.raises(JobRecordError, match="field 'progress_message' is not JSON"):
        await store.get(spoilt.id)
    with pytest.raises(JobRecordError, match=f"job record '{spoilt.id}' .* a field is not JSON"):
        await store.start(spoilt.id, NOW, NOW + 30)
    with pytest.raises(JobRecordError, match="a field is not JSON"):  # the key's holder
        await store.create(job(key="k"))
    with pytest.raises(JobRecordError, match="a field is not JSON"):
        await store.cancel(spoilt.id, NOW)


# -- the stored form ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        job(),
        job(
            state=JobState.DEAD,
            tenant="Zoë \u2028 \x00",
            priority=9,
            attempt=2,
            key='k "1"',
            enqueued_at=5,  # an int stays an int
            scheduled_at=NOW + 0.1,
            progress=float("inf"),
            progress_message="",
            result={"nested": [1, 2.5, None, True, "\U0001f600"]},
            error=ErrorInfo("ValueError", "bad", "Traceback ..."),
            reason="no such domain",
            cancel_requested=True,
            expires_at=NOW + 1e-7,
            committed=True,
        ),
    ],
    ids=["plain", "every-field"],
)
def test_the_hash_holds_to_dict_as_json_exactly(record: JobRecord) -> None:
    flat = fields_of(record)
    stored = dict(zip(flat[::2], flat[1::2], strict=True))
    expected = {k: v for k, v in record.to_dict().items() if v is not None}
    assert stored == {k: encode(v) for k, v in expected.items()}
    assert JobRecord.from_dict({k: json.loads(v) for k, v in stored.items()}) == record


# -- waiting ----------------------------------------------------------------------------


async def test_every_waiter_wakes_by_its_message(store: RedisJobStore) -> None:
    record, _ = await store.create(job())
    await store.start(record.id, NOW, NOW + 30)
    subscribed = 0
    all_subscribed = anyio.Event()
    subscription = store._link.subscription

    @contextlib.asynccontextmanager
    async def noted(channel: str, on_message: Any = None) -> AsyncIterator[Any]:
        nonlocal subscribed
        async with subscription(channel) as sub:
            subscribed += 1
            if subscribed == 3:
                all_subscribed.set()
            yield sub

    store._link.subscription = noted  # type: ignore[method-assign]
    seen: list[JobRecord] = []
    all_woke = anyio.Event()

    async def waiter() -> None:
        seen.append(await store.wait(record.id, timeout=30))
        if len(seen) == 3:
            all_woke.set()

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(waiter)
        with anyio.fail_after(5):
            await all_subscribed.wait()
        await anyio.wait_all_tasks_blocked()
        assert seen == []
        await store.complete(record.id, 1, NOW + 1, "done")
        # Well before the waiters' own look every 5 s: the message woke them.
        with anyio.fail_after(2):
            await all_woke.wait()
    assert [r.result for r in seen] == ["done"] * 3


async def test_a_waiter_whose_message_was_lost_reads_the_record_anyway(
    store: RedisJobStore, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store, "WAKE_CHECK", 0.05)
    record, _ = await store.create(job())
    listening, woke = anyio.Event(), anyio.Event()
    subscription = store._link.subscription

    @contextlib.asynccontextmanager
    async def noted(channel: str, on_message: Any = None) -> AsyncIterator[Any]:
        async with subscription(channel) as sub:
            message = sub.message

            async def listen(timeout: float) -> bool:
                listening.set()  # read the record once, found it unfinished
                return await message(timeout)

            sub.message = listen  # type: ignore[method-assign]
            yield sub

    store._link.subscription = noted  # type: ignore[method-assign]
    seen: list[JobRecord] = []

    async def waiter() -> None:
        seen.append(await store.wait(record.id, timeout=30))
        woke.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        with anyio.fail_after(5):
            await listening.wait()
        # Finished behind the store's back: nothing is published.
        await raw.hset(f"{store.prefix}:job:{record.id}", "state", '"dead"')
        with anyio.fail_after(5):
            await woke.wait()
    assert seen[0].state is JobState.DEAD


def heard_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiters learn of a job's end by its message or not at all (within a test).

    They neither read their records on their own nor go on unconfirmed.
    """
    monkeypatch.setattr(redis_store, "WAKE_CHECK", 60)
    monkeypatch.setattr(redis_listener, "CONFIRM_WAIT", 60)


async def test_many_waiters_share_one_connection_and_leave_no_subscription(
    store: RedisJobStore, raw: aioredis.Redis
) -> None:
    records = []
    for _ in range(200):
        record, _ = await store.create(job())
        await store.start(record.id, NOW, NOW + 30)
        records.append(record)
    seen: list[str] = []

    pattern = f"{store.prefix}:done:*"

    async def subscribed() -> bool:
        return len(await raw.pubsub_channels(pattern)) == len(records)

    async with anyio.create_task_group() as tg:
        for record in records:
            tg.start_soon(result_into, seen, store, record.id)
        tg.start_soon(result_into, seen, store, records[0].id)  # two waiters of one job
        await until("every waiter subscribed", subscribed)
        listening = [c for c in await raw.client_list() if "P" in c["flags"]]
        assert len(listening) == 1  # not a connection each
        for record in records:
            await store.complete(record.id, 1, NOW + 1, record.id)
    assert sorted(seen) == sorted([r.id for r in records] + [records[0].id])

    async def unsubscribed() -> bool:
        return not await raw.pubsub_channels(pattern)

    await until("every channel unsubscribed", unsubscribed)


async def test_an_outcome_of_a_dead_job_retried_meanwhile_waits_for_its_new_end(
    store: RedisJobStore, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    record, _ = await store.create(job())
    await store.start(record.id, NOW, NOW + 30)
    await store.fail(record.id, 1, NOW + 1, None, retry_at=None, reason="no such domain")
    get = store.get

    async def retried_first(job_id: str, **options: Any) -> JobRecord:
        monkeypatch.setattr(store, "get", get)
        await store.retry(job_id, NOW + 2)  # between its read of 'dead' and its record's
        return await get(job_id, **options)

    monkeypatch.setattr(store, "get", retried_first)
    seen: list[JobOutcome] = []

    async def waiter() -> None:
        seen.append(await store.outcome(record.id, timeout=30))

    async def subscribed() -> bool:
        return bool(await raw.pubsub_channels(f"{store.prefix}:done:*"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await until("the waiter waits for the retried job", subscribed)
        assert seen == []
        assert (await store.start(record.id, NOW + 3, NOW + 30)).kind is StartKind.RUN
        await store.complete(record.id, 1, NOW + 4, "sent")  # attempts count from zero again
    assert seen == [JobOutcome(JobState.SUCCEEDED, "send_email", "sent")]


async def test_a_failed_listener_wakes_its_waiters_who_listen_anew_on_a_new_connection(
    store: RedisJobStore, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store, "WAKE_CHECK", 60)  # no look of their own meanwhile
    first, _ = await store.create(job())
    second, _ = await store.create(job())
    for record in (first, second):
        await store.start(record.id, NOW, NOW + 30)
    listener = store._link._listener
    seen: list[str] = []

    async def waiter(record: JobRecord) -> None:
        seen.append((await store.outcome(record.id, timeout=10)).result)

    async def channels() -> int:
        return len(await raw.pubsub_channels(f"{store.prefix}:done:*"))

    listening = 0
    message = redis_listener.Subscription.message

    async def listen(self: redis_listener.Subscription, timeout: float) -> bool:
        nonlocal listening
        listening += 1  # read the record once subscribed, found it unfinished
        return await message(self, timeout)

    monkeypatch.setattr(redis_listener.Subscription, "message", listen)
    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, first)
        tg.start_soon(waiter, second)
        await until("both waiters listening", lambda: listening == 2)
        # One ends unheard (behind the store's back), then the connection fails.
        await raw.hset(f"{store.prefix}:job:{first.id}", mapping={"state": '"succeeded"'})
        broken = listener._connection
        assert broken is not None
        await raw.client_kill_filter(_type="pubsub")
        await until("the woken waiter read its record", lambda: len(seen) == 1)
        await until("the other subscribed again on a new connection", channels)
        assert store._link._listener._connection not in (None, broken)
        await store.complete(second.id, 1, NOW + 1, "second")  # heard, not polled
    assert seen == [None, "second"]


async def test_a_listener_nobody_uses_closes_and_the_next_waiter_opens_another(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store, "WAKE_CHECK", 60)  # heard, or not at all
    monkeypatch.setattr(redis_listener, "READ_WAIT", 0.05)
    listener = store._link._listener

    async def waiter(job_id: str, seen: list[str]) -> None:
        seen.append((await store.outcome(job_id, timeout=10)).result)

    for n in range(2):
        record, _ = await store.create(job())
        await store.start(record.id, NOW, NOW + 30)
        seen: list[str] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, record.id, seen)
            channel = f"{store.prefix}:done:{record.id}"
            await until("subscribed", lambda: channel in listener._channels)  # noqa: B023
            await until("confirmed", listener._channels[channel].confirmed.is_set)
            await store.complete(record.id, 1, NOW + 1, f"job {n}")
        assert seen == [f"job {n}"]
        await until("its reader done, nobody listening", lambda: listener._connection is None)


async def test_a_subscribe_left_unanswered_drops_the_silent_connection(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store, "WAKE_CHECK", 60)  # heard, or not at all
    monkeypatch.setattr(redis_listener, "CONFIRM_WAIT", 1.0)
    heard, silent = (await store.create(job()))[0], (await store.create(job()))[0]
    for record in (heard, silent):
        await store.start(record.id, NOW, NOW + 30)
    listener = store._link._listener
    seen: list[str] = []

    async def waiter(job_id: str) -> None:
        with contextlib.suppress(TimeoutError):
            seen.append((await store.outcome(job_id, timeout=5)).result)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, heard.id)
        channel = f"{store.prefix}:done:{heard.id}"
        await until("subscribed", lambda: channel in listener._channels)
        await until("confirmed", listener._channels[channel].confirmed.is_set)
        first = listener._connection
        assert first is not None
        send = first.redis.send_command

        async def swallowed(*args: Any, **options: Any) -> None:
            monkeypatch.setattr(first.redis, "send_command", send)  # this one only
            # as a path gone silent: the SUBSCRIBE never arrives, nothing is answered

        monkeypatch.setattr(first.redis, "send_command", swallowed)
        tg.start_soon(waiter, silent.id)
        await until("a new connection", lambda: listener._connection not in (None, first))
        await until("subscribed again", lambda: channel in listener._channels)
        await until("confirmed again", listener._channels[channel].confirmed.is_set)
        await store.complete(heard.id, 1, NOW + 1, "heard")  # on the new connection
        await until("heard", lambda: seen == ["heard"])
        await store.complete(silent.id, 1, NOW + 1, "silent")
        tg.cancel_scope.cancel()  # the silent job's waiter polls: not waited for
    assert first is not None
    assert first.closed


async def test_closing_while_the_first_connection_opens_lets_its_waiters_go(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_listener, "CONFIRM_WAIT", 60)  # no going on unconfirmed
    record, _ = await store.create(job())
    await store.start(record.id, NOW, NOW + 30)
    listener = store._link._listener
    pool = store._link.client.connection_pool
    make = pool.make_connection

    def never() -> Connection:
        made = make()

        async def hangs() -> None:
            await anyio.sleep_forever()

        made.connect = hangs
        return made  # type: ignore[no-any-return]

    monkeypatch.setattr(pool, "make_connection", never)
    listening = anyio.Event()
    message = redis_listener.Subscription.message

    async def listen(self: redis_listener.Subscription, timeout: float) -> bool:
        listening.set()  # out of the confirmation wait, reading its record
        return await message(self, timeout)

    monkeypatch.setattr(redis_listener.Subscription, "message", listen)

    async def waiter() -> None:
        await store.outcome(record.id, timeout=30)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        channel = f"{store.prefix}:done:{record.id}"
        await until("the first connection opening", lambda: channel in listener._channels)
        await listener.close()
        with anyio.fail_after(5):
            await listening.wait()
        assert listener._connection is None
        tg.cancel_scope.cancel()


async def test_a_subscribe_that_fails_leaves_its_waiter_to_read_the_record(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store, "WAKE_CHECK", 0.05)
    record, _ = await store.create(job())
    await store.start(record.id, NOW, NOW + 30)
    listening = anyio.Event()
    refused = 0
    send = Connection.send_command

    async def refuse(self: Connection, *args: Any, **options: Any) -> None:
        nonlocal refused
        if args[0] == "SUBSCRIBE":
            refused += 1
            listening.set()
            raise RedisConnectionError("connection lost")
        await send(self, *args, **options)

    monkeypatch.setattr(Connection, "send_command", refuse)
    seen: list[JobOutcome] = []

    async def waiter() -> None:
        seen.append(await store.outcome(record.id, timeout=10))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        with anyio.fail_after(10):
            await listening.wait()
        await store.complete(record.id, 1, NOW + 1, "sent")  # read by its poll
    assert [o.result for o in seen] == ["sent"]  # not a store error for a finished job
    assert refused == 1


async def test_a_first_waiter_cancelled_while_subscribing_still_subscribes_for_the_others(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard_only(monkeypatch)
    record, _ = await store.create(job())
    await store.start(record.id, NOW, NOW + 30)
    listener = store._link._listener
    channel = f"{store.prefix}:done:{record.id}"
    pool = store._link.client.connection_pool
    connecting, make = anyio.Event(), pool.make_connection

    def slow() -> Connection:
        made = make()
        connect = made.connect

        async def gated() -> None:
            await connecting.wait()  # the first waiter's SUBSCRIBE is under way
            await connect()

        made.connect = gated
        return made  # type: ignore[no-any-return]

    monkeypatch.setattr(pool, "make_connection", slow)
    seen: list[str] = []

    async def waiter(scope: anyio.CancelScope) -> None:
        with scope:
            seen.append((await store.outcome(record.id, timeout=10)).result)

    async with anyio.create_task_group() as tg:
        first = anyio.CancelScope()
        tg.start_soon(waiter, first)
        await until("the first waiter subscribing", lambda: channel in listener._channels)
        tg.start_soon(waiter, anyio.CancelScope())
        await until("two waiters", lambda: len(listener._channels[channel].waiters) == 2)
        first.cancel()  # its caller gave up
        connecting.set()
        await until("subscribed", listener._channels[channel].confirmed.is_set)
        await store.complete(record.id, 1, NOW + 1, "sent")
    assert seen == ["sent"]


async def test_a_channel_left_and_joined_again_before_its_unsubscribe_stays_subscribed(
    store: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard_only(monkeypatch)
    record, _ = await store.create(job())
    other, _ = await store.create(job())  # its waiter keeps the connection up
    for each in (record, other):
        await store.start(each.id, NOW, NOW + 30)
    listener = store._link._listener
    channel = f"{store.prefix}:done:{record.id}"
    seen: list[str] = []

    async def waiter(job_id: str, scope: anyio.CancelScope) -> None:
        with scope:
            seen.append((await store.outcome(job_id, timeout=10)).result)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, other.id, anyio.CancelScope())
        leaves = anyio.CancelScope()
        tg.start_soon(waiter, record.id, leaves)
        await until("subscribed", lambda: channel in listener._channels)
        await until("confirmed", listener._channels[channel].confirmed.is_set)
        connection = listener._connection
        assert connection is not None
        holding, go, read = anyio.Event(), anyio.Event(), connection.redis.read_response

        async def held(*args: Any, **options: Any) -> Any:
            holding.set()
            await go.wait()  # the reader sends nothing meanwhile
            return await read(*args, **options)

        monkeypatch.setattr(connection.redis, "read_response", held)
        await until("the reader held", holding.is_set)
        leaves.cancel()  # the channel's last waiter leaves: its UNSUBSCRIBE waits
        await until("left", lambda: channel not in listener._channels)
        tg.start_soon(waiter, record.id, anyio.CancelScope())  # and it is joined again
        await until("joined again", lambda: channel in listener._channels)
        go.set()
        await until("confirmed again", listener._channels[channel].confirmed.is_set)
        await store.complete(record.id, 1, NOW + 1, "sent")  # heard
        await until("heard", lambda: seen == ["sent"])
        await store.complete(other.id, 1, NOW + 1, "other")
    assert seen == ["sent", "other"]


async def test_renew_of_many_is_one_script_call(store: RedisJobStore) -> None:
    started = []
    for _ in range(3):
        record, _ = await store.create(job())
        await store.start(record.id, NOW, NOW + 30)
        started.append(record.id)
    await store.cancel(started[1], NOW + 1)
    assert await store.renew([(i, 1) for i in started], NOW + 90) == [started[1]]
    assert [(await store.get(i)).lease_until for i in started] == [NOW + 90] * 3


async def test_wait_on_an_unknown_job_is_not_found(store: RedisJobStore) -> None:
    with pytest.raises(JobNotFound):
        await store.wait("nope", timeout=5)
    with pytest.raises(JobNotFound):
        await store.outcome("nope", timeout=5)


# -- pushed results (push_results=True) ---------------------------------------------------


@pytest.fixture
async def pushing(redis: RedisServer) -> AsyncIterator[RedisJobStore]:
    """A producer's store that has its jobs' ends pushed to it."""
    jobs = RedisJobStore(redis.url, prefix=f"t:{uuid.uuid4().hex}", push_results=True)
    yield jobs
    await jobs.close()


def inbox_of(store: RedisJobStore) -> redis_inbox.Inbox:
    assert store._inbox is not None
    return store._inbox


async def running(store: RedisJobStore, **changes: Any) -> JobRecord:
    """A job of ``store``'s, started now (pushed ends carry real expiry times)."""
    record, _ = await store.create(job(**changes))
    await store.start(record.id, time.time(), time.time() + 30)
    return record


async def result_into(seen: list[Any], store: RedisJobStore, job_id: str) -> None:
    """Wait (30 s at most) for the job's end, and note its result in ``seen``."""
    seen.append((await store.outcome(job_id, timeout=30)).result)


async def test_a_pushed_success_is_read_without_a_round_trip(counting: Counting) -> None:
    store = RedisJobStore(counting, prefix=f"t:{uuid.uuid4().hex}", push_results=True)
    inbox = inbox_of(store)
    record = await running(store, tenant="acme")
    await until("the inbox subscribed", lambda: inbox.live)
    await store.complete(record.id, 1, time.time(), {"sent": 1})
    await until("the end pushed", lambda: record.id in inbox._kept)
    counting.sent.clear()
    expected = JobOutcome(JobState.SUCCEEDED, "send_email", {"sent": 1})
    assert await store.outcome(record.id, timeout=5, tenant="acme") == expected
    assert counting.sent == []  # taken from the inbox
    assert await store.outcome(record.id, timeout=5) == expected  # taken: read from Redis
    assert counting.sent == ["HMGET"]
    assert (await store.get(record.id)).result == {"sent": 1}  # the push field is the store's
    await store.close()


async def test_a_job_created_while_the_inbox_listens_is_waited_for_without_a_read(
    counting: Counting, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard_only(monkeypatch)
    store = RedisJobStore(counting, prefix=f"t:{uuid.uuid4().hex}", push_results=True)
    inbox = inbox_of(store)
    await running(store)  # the first create opens the inbox
    await until("the inbox subscribed", lambda: inbox.live)
    record = await running(store, tenant="acme")  # created while it listens: its end comes
    seen: list[Any] = []
    async with anyio.create_task_group() as tg:
        counting.sent.clear()
        tg.start_soon(result_into, seen, store, record.id)
        await until("the waiter in the inbox", lambda: record.id in inbox._waiters)
        assert counting.sent == ["HMGET"]  # one read, not a second: the inbox hears its end
        await store.complete(record.id, 1, time.time(), {"sent": 1})
    assert seen == [{"sent": 1}]
    assert counting.sent == ["HMGET", "EVALSHA"]  # and the complete; the result came pushed
    # read again (the inbox gave it away): read from the record, at once
    assert (await store.outcome(record.id, timeout=2)).result == {"sent": 1}
    assert counting.sent[2:] == ["HMGET"]
    await store.close()


async def test_a_second_waiter_of_a_job_the_inbox_vouches_for_reads_once_the_first_took_it(
    pushing: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard_only(monkeypatch)  # a waiter that waited for a message that came would wait 60 s
    inbox = inbox_of(pushing)
    await running(pushing)
    await until("the inbox subscribed", lambda: inbox.live)
    record = await running(pushing, tenant="acme")
    seen: list[Any] = []

    async def waiter() -> None:
        seen.append((await pushing.outcome(record.id, timeout=10, tenant="acme")).result)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        tg.start_soon(waiter)
        await until("both in the inbox", lambda: len(inbox._waiters.get(record.id, ())) == 2)
        await pushing.complete(record.id, 1, time.time(), "done")
    assert seen == ["done", "done"]  # one took it from the inbox, the other read it
    with pytest.raises(JobNotFound):  # a wrong tenant's call does not strand the next
        await pushing.outcome(record.id, timeout=2, tenant="other")
    assert (await pushing.outcome(record.id, timeout=2, tenant="acme")).result == "done"


async def test_a_job_created_while_the_inbox_listens_that_dies_is_read_at_once(
    pushing: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard_only(monkeypatch)  # a waiter that missed the end would wait 60 s
    inbox = inbox_of(pushing)
    await running(pushing)
    await until("the inbox subscribed", lambda: inbox.live)
    dead = await running(pushing)
    seen: list[JobOutcome] = []

    async def waiter() -> None:
        seen.append(await pushing.outcome(dead.id, timeout=10))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await until("the waiter in the inbox", lambda: dead.id in inbox._waiters)
        await pushing.fail(dead.id, 1, time.time(), None, retry_at=None, reason="no such domain")
    assert seen[0].state is JobState.DEAD  # its end is not kept: the record was read
    assert seen[0].record is not None
    assert seen[0].record.reason == "no such domain"


async def test_a_job_whose_pushed_end_the_inbox_let_go_is_read(
    pushing: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard_only(monkeypatch)
    monkeypatch.setattr(redis_inbox, "KEEP", 1)  # a second end pushes the first out
    inbox = inbox_of(pushing)
    await running(pushing)
    await until("the inbox subscribed", lambda: inbox.live)
    first, second = await running(pushing), await running(pushing)
    await pushing.complete(first.id, 1, time.time(), "first")
    await pushing.complete(second.id, 1, time.time(), "second")
    await until("both ends heard", lambda: second.id in inbox._kept)
    assert first.id not in inbox._kept
    assert (await pushing.outcome(first.id, timeout=10)).result == "first"  # read
    assert (await pushing.outcome(second.id, timeout=10)).result == "second"  # taken


async def test_an_inbox_that_subscribed_again_no_longer_vouches_for_its_earlier_jobs(
    pushing: RedisJobStore, raw: aioredis.Redis
) -> None:
    inbox = inbox_of(pushing)
    await running(pushing)
    await until("the inbox subscribed", lambda: inbox.live)
    mark = inbox.mark()
    assert mark is not None
    assert inbox.still(mark)
    lost = inbox._subscription
    await raw.client_kill_filter(_type="pubsub")
    await until(
        "the inbox subscribed again", lambda: inbox.live and inbox._subscription is not lost
    )
    assert not inbox.still(mark)  # ends published in between were not heard
    assert inbox.mark() != mark


async def test_a_waiter_hears_its_jobs_end_in_the_inbox_without_a_subscribe_of_its_own(
    pushing: RedisJobStore, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard_only(monkeypatch)
    inbox = inbox_of(pushing)
    records = [await running(pushing) for _ in range(3)]
    await until("the inbox subscribed", lambda: inbox.live)
    seen: dict[str, Any] = {}

    async def waiter(record: JobRecord) -> None:
        seen[record.id] = (await pushing.outcome(record.id, timeout=30)).result

    async with anyio.create_task_group() as tg:
        for record in records:
            tg.start_soon(waiter, record)
        await until("every waiter in the inbox", lambda: len(inbox._waiters) == 3)
        assert await raw.pubsub_channels(f"{pushing.prefix}:done:*") == []
        assert await raw.pubsub_channels(f"{pushing.prefix}:push:*") == [inbox.channel.encode()]
        for n, record in enumerate(records):
            await pushing.complete(record.id, 1, time.time(), n)
    assert seen == {record.id: n for n, record in enumerate(records)}
    assert inbox._waiters == {}


async def test_a_pushed_failure_or_cancel_is_never_kept_and_the_waiter_reads_the_record(
    pushing: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard_only(monkeypatch)
    inbox = inbox_of(pushing)
    dead, cancelled = await running(pushing), await running(pushing)
    await until("the inbox subscribed", lambda: inbox.live)
    seen: dict[str, JobOutcome] = {}

    async def waiter(record: JobRecord) -> None:
        seen[record.id] = await pushing.outcome(record.id, timeout=30)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, dead)
        tg.start_soon(waiter, cancelled)
        await until("both waiters in the inbox", lambda: len(inbox._waiters) == 2)
        await pushing.fail(dead.id, 1, time.time(), None, retry_at=None, reason="no such domain")
        await pushing.cancel(cancelled.id, time.time())
        await pushing.complete(cancelled.id, 1, time.time(), "late")  # the cancel wins
    assert seen[dead.id].state is JobState.DEAD
    record = seen[dead.id].record
    assert record is not None
    assert record.reason == "no such domain"
    assert seen[cancelled.id].state is JobState.CANCELLED
    assert inbox._kept == {}  # a retry may revive either: only the record may say


async def test_when_the_inbox_connection_fails_its_waiters_fall_back_and_it_subscribes_again(
    pushing: RedisJobStore, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard_only(monkeypatch)
    inbox = inbox_of(pushing)
    first, second = await running(pushing), await running(pushing)
    await until("the inbox subscribed", lambda: inbox.live)
    seen: list[Any] = []

    async with anyio.create_task_group() as tg:
        tg.start_soon(result_into, seen, pushing, first.id)
        await until("the waiter in the inbox", lambda: first.id in inbox._waiters)
        lost = inbox._subscription
        await raw.client_kill_filter(_type="pubsub")
        channel = f"{pushing.prefix}:done:{first.id}".encode()
        await until("the waiter on its job's channel", lambda: raw.pubsub_channels(channel))
        await until("the inbox subscribed again", lambda: inbox.live)
        assert inbox._subscription is not lost
        await pushing.complete(first.id, 1, time.time(), "first")  # heard on its channel
        tg.start_soon(result_into, seen, pushing, second.id)
        await until("the next waiter in the inbox", lambda: second.id in inbox._waiters)
        await pushing.complete(second.id, 1, time.time(), "second")
    assert seen == ["first", "second"]


async def test_a_job_another_store_created_is_waited_for_on_its_own_channel(
    pushing: RedisJobStore, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard_only(monkeypatch)
    other = RedisJobStore(raw, prefix=pushing.prefix)  # no push: its jobs name no channel
    record = await running(other)
    await pushing.create(job())
    await until("the inbox subscribed", lambda: inbox_of(pushing).live)  # by a create of its own
    seen: list[Any] = []

    async with anyio.create_task_group() as tg:
        tg.start_soon(result_into, seen, pushing, record.id)
        channel = f"{pushing.prefix}:done:{record.id}".encode()
        await until("the waiter on its job's channel", lambda: raw.pubsub_channels(channel))
        assert inbox_of(pushing)._waiters == {}
        await other.complete(record.id, 1, time.time(), "theirs")
    assert seen == ["theirs"]
    await other.close()


def pushed_end(job_id: str, result: Any = 1, *, expires_at: float | None = None) -> list[Any]:
    """An end as the scripts push it (a success, with its result's size)."""
    size = len(json.dumps(result))
    return [job_id, "succeeded", "t", None, result, expires_at or time.time() + 60, size]


async def test_the_inbox_keeps_so_many_ends_and_bytes_each_counted_alone(
    pushing: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_inbox, "KEEP", 3)
    inbox = inbox_of(pushing)
    inbox._heard(json.dumps([pushed_end(f"j{n}") for n in range(5)]).encode())
    assert list(inbox._kept) == ["j2", "j3", "j4"]  # the oldest went first
    assert inbox._kept_bytes == 3 * (1 + redis_inbox.OVERHEAD)
    monkeypatch.setattr(redis_inbox, "KEEP_BYTES", 1_000 + 3 * redis_inbox.OVERHEAD)
    # One large result among small ones: each is counted by its own size.
    ends = [pushed_end("small1"), pushed_end("big", "x" * 998), pushed_end("small2")]
    inbox._heard(json.dumps(ends).encode())
    assert list(inbox._kept) == ["big", "small2"]
    assert inbox.take("small2") is not None
    assert inbox._kept_bytes == 1_000 + redis_inbox.OVERHEAD  # the big one, as it is


async def test_the_inbox_keeps_nothing_past_its_records_retention(
    pushing: RedisJobStore,
) -> None:
    inbox = inbox_of(pushing)
    gone = time.time() - 1
    inbox._heard(json.dumps([pushed_end("old", expires_at=gone), pushed_end("new")]).encode())
    assert list(inbox._kept) == ["new"]  # expired on arrival: never kept
    inbox._kept["new"].expires_at = gone  # its record expired since
    assert inbox.take("new") is None
    inbox._heard(json.dumps([pushed_end("a")]).encode())
    inbox._kept["a"].expires_at = gone
    inbox._heard(json.dumps([pushed_end("b")]).encode())
    assert list(inbox._kept) == ["b"]  # the expired one went when the next came


async def test_what_is_not_the_ends_of_jobs_is_ignored(pushing: RedisJobStore) -> None:
    inbox = inbox_of(pushing)
    deep = "[" * 100_000 + "]" * 100_000
    for data in (b"not json", b"{}", deep.encode(), b'[["j", "succeeded"], 3]'):
        inbox._heard(data)
    inbox._heard(json.dumps([["j", "succeeded", "t", None, 1, "soon", 1]]).encode())
    inbox._heard(json.dumps([[1, "succeeded", "t", None, 1, time.time() + 60, 1]]).encode())
    assert inbox._kept == {}


async def test_a_large_result_is_left_in_the_record_and_read_from_there(
    pushing: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard_only(monkeypatch)
    inbox = inbox_of(pushing)
    awaited, unread, small = [await running(pushing) for _ in range(3)]
    await until("the inbox subscribed", lambda: inbox.live)
    seen: list[Any] = []

    large = "x" * 20_000  # over 16 KiB: not on the shared connection
    async with anyio.create_task_group() as tg:
        tg.start_soon(result_into, seen, pushing, awaited.id)
        await until("the waiter in the inbox", lambda: awaited.id in inbox._waiters)
        await pushing.complete(awaited.id, 1, time.time(), large)
    assert seen == [large]  # woken by the push, read from the record
    await pushing.complete(unread.id, 1, time.time(), large)
    await pushing.complete(small.id, 1, time.time(), "x" * 16_000)
    await until("the small one pushed", lambda: small.id in inbox._kept)
    assert unread.id not in inbox._kept  # its end came first, without the result
    assert (await pushing.outcome(unread.id, timeout=5)).result == large


async def test_a_silent_connection_under_the_inbox_is_dropped_and_its_waiters_fall_back(
    pushing: RedisJobStore, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard_only(monkeypatch)
    monkeypatch.setattr(redis_listener, "READ_WAIT", 0.05)
    monkeypatch.setattr(redis_listener, "CONFIRM_WAIT", 0.5)  # for the idle PING's answer
    inbox = inbox_of(pushing)
    record = await running(pushing)
    await until("the inbox subscribed", lambda: inbox.live)
    listener = pushing._link._listener
    silent = listener._connection
    assert silent is not None
    seen: list[Any] = []

    async with anyio.create_task_group() as tg:
        tg.start_soon(result_into, seen, pushing, record.id)
        await until("the waiter in the inbox", lambda: record.id in inbox._waiters)

        async def swallowed(*args: Any, **options: Any) -> None:
            pass  # as a path gone silent: nothing sent arrives, nothing is answered

        monkeypatch.setattr(silent.redis, "send_command", swallowed)
        channel = f"{pushing.prefix}:done:{record.id}".encode()
        await until("the waiter on its job's channel", lambda: raw.pubsub_channels(channel))
        assert silent.closed
        await pushing.complete(record.id, 1, time.time(), "heard")
    assert seen == ["heard"]


async def test_an_idle_connection_that_answers_its_pings_is_kept(
    pushing: RedisJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_listener, "READ_WAIT", 0.02)
    monkeypatch.setattr(redis_listener, "CONFIRM_WAIT", 0.2)
    await pushing.create(job())
    await until("the inbox subscribed", lambda: inbox_of(pushing).live)
    connection = pushing._link._listener._connection
    assert connection is not None
    pings = 0
    send = connection.redis.send_command

    async def counted(*args: Any, **options: Any) -> None:
        nonlocal pings
        pings += args[0] == "PING"
        await send(*args, **options)

    monkeypatch.setattr(connection.redis, "send_command", counted)
    await until("pings for three times their answer's wait", lambda: pings >= 30)
    assert pushing._link._listener._connection is connection
    assert not connection.closed
    assert inbox_of(pushing).live


async def test_an_inbox_whose_connection_failed_subscribes_again_at_once(
    pushing: RedisJobStore, raw: aioredis.Redis
) -> None:
    inbox = inbox_of(pushing)
    await pushing.create(job())
    await until("the inbox subscribed", lambda: inbox.live)
    paused: list[float] = []

    async def pause(seconds: float) -> None:
        paused.append(seconds)
        await anyio.sleep(seconds)

    inbox._pause = pause  # type: ignore[assignment]
    first = inbox._subscription
    await raw.client_kill_filter(_type="pubsub")
    await until("subscribed again", lambda: inbox.live and inbox._subscription is not first)
    assert paused == []  # it had been confirmed: no pause before the next


async def test_the_ends_of_one_call_come_in_messages_of_bounded_size(
    pushing: RedisJobStore, raw: aioredis.Redis
) -> None:
    records = [await running(pushing) for _ in range(40)]
    await raw.script_flush()  # as a restarted server: the joined call is loaded, not split
    evals = await calls(raw, "eval")
    listening = raw.pubsub()
    await listening.subscribe(inbox_of(pushing).channel)
    now = time.time()
    async with anyio.create_task_group() as tg:  # one turn: one joined call
        for record in records:
            tg.start_soon(pushing.complete, record.id, 1, now, "x" * 15_000)
    sizes: list[int] = []
    ends = 0
    with anyio.fail_after(10):
        while ends < 40:
            message = await listening.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                sizes.append(len(message["data"]))
                ends += len(json.loads(message["data"]))
    await listening.aclose()
    assert ends == 40
    assert 2 <= len(sizes) <= 3  # 600 KB of results: not in one message, nor in 40
    assert max(sizes) < 300_000
    assert await calls(raw, "eval") == evals  # no caller sent its row on its own


async def test_a_worker_not_allowed_to_publish_to_the_push_channel_still_ends_jobs(
    pushing: RedisJobStore, redis: RedisServer, raw: aioredis.Redis
) -> None:
    # the jobs' own channels, not the producers':
    async with limited(raw, redis, pushing.prefix, channels="*:done:*", commands=["+@all"]) as (
        worker
    ):
        done, dead = await running(pushing), await running(pushing)
        assert await worker.complete(done.id, 1, time.time(), "ok") is JobState.SUCCEEDED
        assert await worker.fail(dead.id, 1, time.time(), None, retry_at=None, reason="no") is (
            JobState.DEAD
        )
        assert (await pushing.outcome(done.id, timeout=5)).result == "ok"
        # one created while the inbox listens, whose end the inbox never hears: the
        # record is read first, so it is found ended at once (not after WAKE_CHECK)
        await until("the inbox subscribed", lambda: inbox_of(pushing).live)
        later = await running(pushing)
        await worker.complete(later.id, 1, time.time(), "later")
        assert (await pushing.outcome(later.id, timeout=2)).result == "later"


async def test_an_end_the_inbox_cannot_keep_still_wakes_its_waiters(
    pushing: RedisJobStore,
) -> None:
    inbox = inbox_of(pushing)
    for end in (["j1", "succeeded", "t", None, 1, time.time() + 60], ["j1", "succeeded"]):
        async with inbox.watching("j1") as waiter:
            inbox._heard(json.dumps([end]).encode())  # of another version's shape
            assert await waiter.message(0)
    assert inbox._kept == {}


async def test_a_refused_subscription_leaves_the_connection_and_the_others_on_it(
    redis: RedisServer, raw: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    heard_only(monkeypatch)
    monkeypatch.setattr(redis_inbox, "RETRY_WAIT", 0.05)
    prefix = f"t:{uuid.uuid4().hex}"
    # An ACL that allows the jobs' own channels, not the producers' (its inbox's).
    async with limited(
        raw, redis, prefix, channels="*:done:*", commands=["+@all"], push_results=True
    ) as store:
        inbox = inbox_of(store)
        refusals: list[float] = []

        async def pause(seconds: float) -> None:
            refusals.append(seconds)
            await anyio.sleep(seconds)

        inbox._pause = pause  # type: ignore[assignment]
        record = await running(store)  # its inbox subscribes: refused
        seen: list[Any] = []

        async with anyio.create_task_group() as tg:
            tg.start_soon(result_into, seen, store, record.id)
            channel = f"{prefix}:done:{record.id}".encode()
            await until("the waiter on its job's channel", lambda: raw.pubsub_channels(channel))
            connection = store._link._listener._connection
            assert connection is not None
            await until("three refusals", lambda: len(refusals) >= 3)
            assert store._link._listener._connection is connection  # never dropped for them
            await store.complete(record.id, 1, time.time(), "heard")
        assert seen == ["heard"]
        assert not inbox.live


async def test_error_replies_are_matched_to_what_was_sent_in_order() -> None:
    listener = redis_listener.Listener(None, ResponseError)  # its bookkeeping alone
    states = {name: redis_listener._Channel() for name in ("x", "b", "c")}
    listener._channels.update(states)
    listener._unconfirmed.update(states.keys())
    ping = redis_listener._Sent.PING
    listener._sent.extend(["x", ping, "b", "c"])  # as sent, one after the other
    listener._dispatch([b"subscribe", b"x", 1])
    listener._refused(ResponseError("NOPERM: no ping for you"))  # the PING's: it speaks
    listener._refused(ResponseError("NOPERM: not channel b"))
    listener._dispatch([b"subscribe", b"c", 2])
    assert (states["x"].confirmed.is_set(), states["c"].confirmed.is_set()) == (True, True)
    assert set(listener._channels) == {"x", "c"}  # b's waiters let go, nobody else's
    assert not listener._sent
    listener._sent.extend([ping, ping, redis_listener._Sent.UNSUBSCRIBE])
    listener._dispatch(b"PONG")  # RESP3
    listener._dispatch([b"pong", b""])  # RESP2, subscribed
    listener._dispatch([b"unsubscribe", b"x", 1])
    assert not listener._sent
    listener._sent.extend([redis_listener._Sent.UNSUBSCRIBE] * 2)
    with pytest.raises(ConnectionError, match="UNSUBSCRIBE refused"):  # subscribed to what?
        listener._refused(ResponseError("NOPERM"))
    with pytest.raises(ConnectionError, match="nothing sent"):
        redis_listener.Listener(None, ResponseError)._refused(ResponseError("?"))


async def test_an_inbox_whose_subscription_fails_tries_again_ever_later() -> None:
    class Refused:
        """A link whose subscriptions are never confirmed (an ACL refuses them, say)."""

        @contextlib.asynccontextmanager
        async def subscription(self, channel: str, on_message: Any) -> AsyncIterator[Any]:
            yield redis_listener.Subscription(on_message)

    inbox = redis_inbox.Inbox(Refused(), "P:push:x")  # type: ignore[arg-type]
    waits: list[float] = []
    enough = anyio.Event()

    async def pause(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 9:
            enough.set()
        await anyio.sleep(0 if len(waits) < 9 else 3600)

    inbox._pause = pause  # type: ignore[assignment]
    inbox.open()
    with anyio.fail_after(5):
        await enough.wait()
    await inbox.close()
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert not inbox.live


async def test_a_pushed_success_of_another_tenant_is_not_found(pushing: RedisJobStore) -> None:
    inbox = inbox_of(pushing)
    record = await running(pushing, tenant="acme")
    await until("the inbox subscribed", lambda: inbox.live)
    await pushing.complete(record.id, 1, time.time(), "acme's")
    await until("the end pushed", lambda: record.id in inbox._kept)
    with pytest.raises(JobNotFound, match="globex"):
        await pushing.outcome(record.id, timeout=5, tenant="globex")


async def test_closing_a_pushing_store_unsubscribes_its_inbox(
    redis: RedisServer, raw: aioredis.Redis
) -> None:
    store = RedisJobStore(redis.url, prefix=f"t:{uuid.uuid4().hex}", push_results=True)
    await store.create(job())
    await until("the inbox subscribed", lambda: inbox_of(store).live)
    await store.close()
    assert not inbox_of(store).live
    await until(
        "no subscription left",
        lambda: _none(raw.pubsub_channels(f"{store.prefix}:push:*")),
    )
    inbox_of(store).open()  # closed for good: a later create subscribes nothing
    assert inbox_of(store)._task is None


async def _none(found: Awaitable[list[Any]]) -> bool:
    return not await found


async def test_jobs_on_the_redis_backend_read_their_pushed_results(redis: RedisServer) -> None:
    store = RedisJobStore(redis.url, prefix=f"t:{uuid.uuid4().hex}", push_results=True)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    jobs = JobQueue(RedisBackend(redis.url, group="g"), store=store, queue=queue)

    @jobs.task
    async def add(a: int, b: int) -> int:
        return a + b

    inbox = inbox_of(store)
    async with fa.open_system(jobs.worker(queue).build()):
        assert await (await add.enqueue(a=0, b=0)).result(timeout=30) == 0
        await until("the inbox subscribed", lambda: inbox.live)
        handles = [await add.enqueue(a=n, b=1) for n in range(20)]
        await until("every end pushed", lambda: all(h.id in inbox._kept for h in handles))
        reads = 0
        hmget = store._link.hmget

        async def counted(*args: Any) -> Any:
            nonlocal reads
            reads += 1
            return await hmget(*args)

        store._link.hmget = counted  # type: ignore[assignment,method-assign]
        assert [await handle.result(timeout=30) for handle in handles] == list(range(1, 21))
        assert reads == 0  # each taken from the inbox
    await jobs.close()
    await jobs.backend.close()


def test_push_results_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="push_results must be True or False, got 1"):
        RedisJobStore("redis://127.0.0.1:1", push_results=1)  # type: ignore[arg-type]


# -- connections, names, configuration ----------------------------------------------------


async def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    store = RedisJobStore(url)
    assert "hunter2" not in repr(store)
    with pytest.raises(JobStoreError) as caught:
        await store.get("x")
    text = str(caught.value)
    assert "cannot reach the job store at redis://:***@127.0.0.1" in text
    assert "hunter2" not in text
    assert caught.value.__cause__ is None or "hunter2" not in str(caught.value.__cause__)
    await store.close()


async def test_a_wrong_password_is_a_store_error_without_it() -> None:
    with redis_server(password="right-one") as locked:
        store = RedisJobStore(f"redis://:wrong-one@127.0.0.1:{locked.port}/0")
        with pytest.raises(JobStoreError) as caught:
            await store.create(job())
        assert "wrong-one" not in str(caught.value)
        await store.close()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("http://:pw@host/0",), "must start with redis://"),
        ((42,), "takes a redis:// URL or a redis.asyncio.Redis"),
    ],
)
def test_bad_arguments_are_refused_clearly(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as caught:
        RedisJobStore(*args)
    assert "pw@" not in str(caught.value)


def test_bad_options_are_refused_clearly() -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        RedisJobStore("redis://localhost/0", prefix="")
    with pytest.raises(ConfigurationError, match="retention"):
        RedisJobStore("redis://localhost/0", retention=-1)


async def test_a_callers_client_with_decoded_replies_works_and_stays_open(
    redis: RedisServer,
) -> None:
    client = aioredis.Redis.from_url(redis.url, decode_responses=True)
    store = RedisJobStore(client, prefix=f"t:{uuid.uuid4().hex}")
    record, _ = await store.create(job(key="k", tenant="acme", args={"name": "Zoë"}))
    again, created = await store.create(job(key="k", tenant="acme"))
    assert (again, created) == (record, False)
    assert await store.get(record.id) == record
    assert (await store.list(tenant="acme")).jobs == (record,)
    await store.start(record.id, NOW, NOW + 30)
    await store.complete(record.id, 1, NOW + 1, {"name": "Zoë"})
    assert await store.outcome(record.id, timeout=5, tenant="acme") == JobOutcome(
        JobState.SUCCEEDED, "send_email", {"name": "Zoë"}
    )
    assert "127.0.0.1" in repr(store)
    await store.close()
    assert await client.ping()  # the caller's client, left open
    await client.aclose()


async def test_every_key_is_under_the_prefix(store: RedisJobStore, raw: aioredis.Redis) -> None:
    before = {key async for key in raw.scan_iter()}
    record, _ = await store.create(job(key="k", tenant="acme"))
    await store.start(record.id, NOW, NOW + 30)
    await store.fail(record.id, 1, NOW + 1, None, retry_at=None, reason="no")
    made = {key async for key in raw.scan_iter()} - before
    assert made
    assert all(key.startswith(f"{store.prefix}:".encode()) for key in made)
