"""`RedisJobStore`: job records in Redis, each transition one Lua script (one round trip).

The scripts (``lua/``) are the transitions of `_transitions` written again in Lua; the
suite holds the two to the same answers (``tests/test_job_store.py``, and a model test
that runs random operations on this store and the memory store side by side). What is
stored, which indexes, and what each operation costs: docs/jobs-redis-store.md.
"""

from __future__ import annotations

import builtins
import contextlib
import itertools
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
import attrs

from foxactors._errors import BackendError, ConfigurationError
from foxactors._validate import require_seconds

from . import _redis_scripts as scripts
from ._errors import JobError, JobNotFound, JobRecordError, JobStoreError
from ._memory_store import DEFAULT_RETENTION
from ._periodic_ledger import RedisPeriodicLedger
from ._record import FINAL, FORMAT, ErrorInfo, JobRecord, JobState
from ._redis_form import (
    ENDING,
    PUSH,
    ending_of,
    fields_of,
    record_of,
    record_of_reply,
    scalar,
    slot_of,
    text,
)
from ._store import CancelKind, Cancelled, JobOutcome, JobPage, Reaped, Started, StartKind

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ._redis_inbox import Inbox, Pushed
    from ._redis_link import RedisLink
    from ._redis_listener import Subscription

T = TypeVar("T")

REAP_BATCH = 500
"""Records one reap script changes at most; a reap runs as many as it needs."""
FRESH_MOST = 10_000
"""Jobs created here whose result read may skip reading the record, at most (the
newest; see `RedisJobStore.outcome`)."""
WAKE_CHECK = 5.0
"""Seconds a waiter listens before it reads the record anyway (a missed message)."""


def _not_found(job_id: str, tenant: str | None) -> JobNotFound:
    return JobNotFound(f"no job {job_id!r}" + (f" for tenant {tenant!r}" if tenant else ""))


def _refused(record: JobRecord, stream: str, why: str) -> BackendError:
    fix = "; pick another stream name" if why.startswith("WRONGTYPE") else ""
    return BackendError(
        f"publishing job {record.id!r} to stream {stream!r} failed: Redis refused it ({why}){fix}"
    )


class RedisJobStore(RedisPeriodicLedger):
    """Job records in Redis: every transition one atomic Lua script, one round trip.

    Many processes share one store (workers, producers, the CLI): its transitions are
    atomic in Redis, so N producers with one idempotency key make one job, and a
    cancel and a completion racing resolve as the contract says. Runs on asyncio
    only (redis-py). One Redis server (or a primary with replicas); not Redis Cluster.

    Args:
        url_or_client: A ``redis://``, ``rediss://`` or ``unix://`` URL (the store
            makes a client and `close` closes it), or a ``redis.asyncio.Redis`` of
            yours (left open; its ``decode_responses`` may be either).
        prefix: Every key of the store starts with ``prefix:``.
        retention: Seconds a finished record (result, error, key) is kept.
        push_results: Have the end of each job this store creates pushed to it, for
            a producer that waits for its results: `JobHandle.result` then takes a
            success from memory instead of reading Redis, and waits without a
            SUBSCRIBE per job (see docs/jobs-redis-store.md, "Pushed results").

    Attributes:
        retention: Seconds a finished record (result, error, key) is kept.
        prefix: The prefix of its keys.

    Example:
        ```python
        store = RedisJobStore("redis://localhost:6379/0", retention=3600)
        record = await store.get(job_id)
        await store.close()
        ```
    """

    def __init__(
        self,
        url_or_client: str | aioredis.Redis,
        *,
        prefix: str = "fx:jobs",
        retention: float = DEFAULT_RETENTION,
        push_results: bool = False,
    ) -> None:
        self.retention = require_seconds("retention", retention)
        if not isinstance(push_results, bool):
            raise ConfigurationError(f"push_results must be True or False, got {push_results!r}")
        if not isinstance(prefix, str) or not prefix:
            raise ConfigurationError(f"prefix must be a non-empty string, got {prefix!r}")
        self.prefix = prefix
        try:
            from ._redis_link import RedisLink  # noqa: PLC0415 - only with the redis extra
        except ImportError as exc:
            raise ImportError(
                "RedisJobStore needs redis-py: pip install 'foxactors[redis]'"
            ) from exc
        self._link: RedisLink = RedisLink(url_or_client)
        self._inbox: Inbox | None = None
        self._push: tuple[str, ...] = ()  # the field and value each created record gets
        if push_results:
            from ._redis_inbox import Inbox  # noqa: PLC0415 - with RedisLink, for the same reason

            self._inbox = Inbox(self._link, self._key("push", uuid.uuid4().hex))
            self._push = (PUSH, scalar(self._inbox.channel))
        self._fresh: dict[str, tuple[int, int]] = {}  # job id -> inbox mark at creation
        self._head = (prefix, str(FORMAT))
        self._token = uuid.uuid4().hex + ":"  # and a count: each start call's own token
        self._starts = itertools.count()

    def __repr__(self) -> str:
        return f"RedisJobStore({self._link.where!r}, prefix={self.prefix!r})"

    async def _call(self, script: scripts.Script, *args: Any) -> Any:
        return await self._link.call(script, *self._head, *args)

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @staticmethod
    def _status(reply: builtins.list[Any], job_id: str) -> str:
        """The first element of a script's reply; an unreadable record raises."""
        status = text(reply[0])
        if status == "corrupt":
            raise JobRecordError(
                f"job record {job_id!r} cannot be read: {text(reply[1])}; fix or delete it"
            )
        return status

    # -- reads ----------------------------------------------------------------------

    async def get(self, job_id: str, *, tenant: str | None = None) -> JobRecord:
        """Return the job's record (one HGETALL).

        Raises:
            JobNotFound: No such job (for this tenant).
            JobRecordError: The stored record cannot be read.
        """
        fields = await self._link.hgetall(self._key("job", job_id), "reading a job")
        if not fields:
            raise _not_found(job_id, tenant)
        record = record_of(fields)
        if tenant is not None and record.tenant != tenant:
            raise _not_found(job_id, tenant)
        return record

    async def list(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        tenant: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        """Return up to ``limit`` records, newest first, filtered by what is given.

        Raises:
            JobRecordError: A record on the page cannot be read.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"limit must be an int >= 1, got {limit!r}")
        if cursor is not None and not cursor.isdigit():
            raise ConfigurationError(
                f"cursor {cursor!r} is not one this store returned; pass JobPage.cursor back"
            )
        states = [state.value] if state is not None else [s.value for s in JobState]
        by_queue = [self._key("qs", f"{queue}:{s}") for s in states] if queue is not None else []
        by_tenant = [self._key("ts", f"{tenant}:{s}") for s in states] if tenant is not None else []
        sources = by_queue or by_tenant or [self._key("s", s) for s in states]
        other = by_tenant if by_queue and by_tenant else []
        both = bool(other)
        reply = await self._call(
            scripts.LIST,
            limit,
            cursor or "",
            10 * limit + 1000,
            scalar(queue) if both else "",
            scalar(tenant) if both else "",
            len(sources),
            *sources,
            len(other),
            *other,
        )
        jobs = tuple(record_of(fields) for fields in reply[2:])
        return JobPage(jobs, text(reply[0]) or None)

    async def counts(
        self, *, queue: str | None = None, tenant: str | None = None
    ) -> Mapping[JobState, int]:
        """Return how many jobs are in each state (7 ZCARDs, or one HGETALL)."""
        if queue is not None and tenant is not None:
            key = self._key("c", f"{len(queue.encode())}:{queue}{tenant}")
            tally = await self._link.hgetall(key, "counting jobs")
            found = {text(k): int(v) for k, v in tally.items()}
            return {state: found.get(state.value, 0) for state in JobState}
        if queue is not None:
            keys = [self._key("qs", f"{queue}:{s.value}") for s in JobState]
        elif tenant is not None:
            keys = [self._key("ts", f"{tenant}:{s.value}") for s in JobState]
        else:
            keys = [self._key("s", s.value) for s in JobState]
        return dict(zip(JobState, await self._link.zcards(keys), strict=True))

    async def wait(
        self, job_id: str, *, timeout: float | None, tenant: str | None = None
    ) -> JobRecord:
        """Wait until the job is final (`_when_final`); return its record.

        Raises:
            JobNotFound: No such job (for this tenant).
            TimeoutError: Not final within ``timeout`` seconds.
        """

        async def read() -> JobRecord | None:
            record = await self.get(job_id, tenant=tenant)
            return record if record.state in FINAL else None

        return await self._when_final(job_id, timeout, read)

    async def outcome(
        self, job_id: str, *, timeout: float | None, tenant: str | None = None
    ) -> JobOutcome:
        """`wait`, reading six fields of the record rather than all of it (one HMGET).

        A dead job's whole record is read too, once (its error says why). With
        ``push_results``, a success pushed to this store is taken without a read; a
        job this store created while its inbox listened, read once and not final, is
        waited for there without reading again, while the inbox vouches for it
        (`Inbox.mark`); after any wake-up that brings no kept success, it is read.

        Raises:
            JobNotFound: No such job (for this tenant).
            JobRecordError: The stored record cannot be read.
            TimeoutError: Not final within ``timeout`` seconds.
        """
        inbox = self._inbox
        mark = self._fresh.pop(job_id, None)  # good for one call: the next one reads

        def taken() -> JobOutcome | None:
            pushed = inbox.take(job_id) if inbox is not None else None
            return self._pushed(job_id, tenant, pushed) if pushed is not None else None

        if (found := taken()) is not None:
            return found  # no read: no timeout to set
        key = self._key("job", job_id)
        pushed_here = False

        async def read() -> JobOutcome | None:
            nonlocal pushed_here
            if (found := taken()) is not None:
                return found
            ending = ending_of(job_id, await self._link.hmget(key, ENDING, "reading a job"))
            if ending is None or (tenant is not None and ending[3] != tenant):
                raise _not_found(job_id, tenant)
            state, task, result, _, push = ending
            pushed_here = inbox is not None and push == inbox.channel
            if state is JobState.DEAD:  # its error says why; a retry since: not final
                record = await self.get(job_id, tenant=tenant)
                return JobOutcome.of(record) if record.state in FINAL else None
            return JobOutcome(state, task, result) if state in FINAL else None

        def heard_all_since() -> bool:
            # created while the inbox listened, and it let no end go since: an end
            # after the first read came to the inbox, and `take` has it if it is kept
            return mark is not None and inbox is not None and inbox.still(mark)

        return await self._when_final(
            job_id, timeout, read, lambda: pushed_here, heard_all_since=heard_all_since, taken=taken
        )

    @staticmethod
    def _pushed(job_id: str, tenant: str | None, pushed: Pushed) -> JobOutcome:
        if tenant is not None and pushed.tenant != tenant:
            raise _not_found(job_id, tenant)
        return JobOutcome(JobState.SUCCEEDED, pushed.task, pushed.result)

    async def _when_final(
        self,
        job_id: str,
        timeout: float | None,
        read: Callable[[], Awaitable[T | None]],
        pushed_here: Callable[[], bool] = lambda: False,
        *,
        heard_all_since: Callable[[], bool] = lambda: False,
        taken: Callable[[], T | None] = lambda: None,
    ) -> T:
        """What ``read`` returns once it is not None: once the job is final.

        Reads; if the job is not final, subscribes to the job's channel
        (``prefix:done:<id>``, published by the change to a final state), then reads
        again: a change between the two is not missed. Every `WAKE_CHECK` seconds it
        reads anyway, in case a message was lost; a subscription whose connection
        failed is made again (on a new connection), and read after as before. A job
        whose end is pushed to this store (``pushed_here()``, after a read) is
        listened for there instead while that subscription is confirmed; if the
        store's inbox vouches for it (``heard_all_since()``), without the read after
        subscribing: what ``taken()`` finds kept, or the next wake-up, tells.
        """
        with anyio.fail_after(timeout):
            found = await read()
            if found is not None:  # the common case of a late reader: no subscription
                return found
            while True:  # again when the connection failed under a subscription
                inbox = self._inbox
                listening: contextlib.AbstractAsyncContextManager[Subscription]
                listening_here = inbox is not None and inbox.live and pushed_here()
                if listening_here:
                    assert inbox is not None
                    listening = inbox.watching(job_id)
                else:
                    listening = self._link.subscription(self._key("done", job_id))
                async with listening as subscription:
                    if listening_here and heard_all_since():
                        # the inbox vouches for the job: an end since the read above
                        # is kept there (`taken`) or woke us, so no read before the
                        # wake-up; after it, `read` takes a kept success or reads
                        if (found := taken()) is not None:
                            return found
                        await subscription.message(WAKE_CHECK)
                    while (found := await read()) is None and not subscription.lost:
                        await subscription.message(WAKE_CHECK)
                    if found is not None:
                        return found

    async def renew(
        self, attempts: builtins.list[tuple[str, int]], lease_until: float
    ) -> builtins.list[str]:
        """Renew the leases of running attempts in one script; return the cancelled ids."""
        if not attempts:
            return []
        flat = [part for job_id, attempt in attempts for part in (job_id, scalar(attempt))]
        reply = await self._call(scripts.RENEW, scalar(lease_until), *flat)
        return [text(job_id) for job_id in reply]

    # -- changes ----------------------------------------------------------------------

    def _row(
        self, record: JobRecord, entry: builtins.list[str] | str = ""
    ) -> builtins.list[builtins.list[str] | str]:
        slot = slot_of(record.tenant, record.key) if record.key is not None else ""
        return [record.id, slot, entry, *fields_of(record), *self._push]

    async def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        """Insert ``record`` (uncommitted), unless a job of its tenant holds its key.

        Creating a job id that exists already changes nothing and answers as the
        first call did (a retried call after a lost reply is harmless).
        """
        (answer,) = await self.create_many([record])
        return answer

    async def create_many(
        self, records: builtins.list[JobRecord]
    ) -> builtins.list[tuple[JobRecord, bool]]:
        """`create` for each record, in order, in one script call."""
        answers = await self._create(records, [""] * len(records))
        return cast("builtins.list[tuple[JobRecord, bool]]", answers)  # no entry: no refusal

    def adds_entries_of(self, backend: object) -> bool:
        """Whether `create_published` can add ``backend``'s stream entries.

        True for a `RedisBackend` on this store's Redis server and database.
        """
        same_server = getattr(backend, "same_server", None)
        return (
            callable(same_server)
            and callable(getattr(backend, "entry_command", None))
            and bool(same_server(self._link.client))
        )

    async def create_published(
        self, records: builtins.list[JobRecord], entries: builtins.list[builtins.list[str]]
    ) -> builtins.list[tuple[JobRecord, bool] | BackendError]:
        """`create_many`, adding each created record's stream entry in the same script.

        ``entries``: the XADD arguments of each record's delivery
        (`RedisBackend.entry_command`), for a backend this store `adds_entries_of`.
        A record and its entry exist together or not at all, so the records are
        written committed: nothing is left to commit.

        Returns per record what `create` returns, or the error of an entry Redis
        refused (its record and key are gone again).
        """
        return await self._create(records, entries)

    async def _create(
        self,
        records: builtins.list[JobRecord],
        entries: Sequence[builtins.list[str] | str],
    ) -> builtins.list[tuple[JobRecord, bool] | BackendError]:
        if not records:
            return []
        mark = None
        if self._inbox is not None:
            self._link.require_asyncio("create")  # before the inbox starts its task
            self._inbox.open()
            mark = self._inbox.mark()  # live before the records exist: it hears their ends
        rows = [
            scalar(self._row(record, entry)) for record, entry in zip(records, entries, strict=True)
        ]
        replies = await self._link.call_joined(scripts.CREATE, self._head, rows)
        answers: builtins.list[tuple[JobRecord, bool] | BackendError] = []
        for record, entry, reply in zip(records, entries, replies, strict=True):
            status = text(reply[0])
            if status == "created":
                answers.append((record, True))
                if mark is not None:
                    self._remember(record.id, mark)
            elif status == "refused":
                answers.append(_refused(record, entry[0], text(reply[1])))
            else:
                answers.append((record_of_reply(reply[1], reply[2]), False))
        return answers

    def _remember(self, job_id: str, mark: tuple[int, int]) -> None:
        """Note that ``job_id`` was created while the inbox stood at ``mark`` (see `outcome`)."""
        fresh = self._fresh
        fresh[job_id] = mark
        if len(fresh) > FRESH_MOST:
            del fresh[next(iter(fresh))]  # the oldest: its result read costs a read

    async def commit(self, job_ids: builtins.list[str]) -> None:
        """Mark enqueues finished."""
        if job_ids:
            await self._link.call_joined(scripts.COMMIT, self._head, job_ids)

    async def discard(self, job_ids: builtins.list[str]) -> None:
        """Delete uncommitted records and free their keys."""
        if job_ids:
            await self._call(scripts.DISCARD, *job_ids)

    async def _joined_row(self, script: scripts.Script, *row: str) -> builtins.list[Any]:
        """Run ``script`` on one row (joined with this turn's rows of it); its reply."""
        (reply,) = await self._link.call_joined(script, self._head, list(row))
        if text(reply[0]) == "error":
            raise self._link.refused(script.name, reply[1])
        return reply  # type: ignore[no-any-return]

    async def start(self, job_id: str, now: float, lease_until: float) -> Started:
        """Lease the job's next attempt if it may run.

        The starts of one event-loop turn (a worker's deliveries) go as one script call.
        """
        reply = await self._joined_row(
            scripts.START,
            job_id,
            scalar(now),
            scalar(lease_until),
            scalar(now + self.retention),
            f"{self._token}{next(self._starts)}",  # this call's own: see lua/start.lua
        )
        status = self._status(reply, job_id)
        if status == "missing":
            return Started(StartKind.MISSING)
        return Started(StartKind(status), record_of_reply(reply[1], reply[2], job_id))

    async def _beat(self, job_id: str, attempt: int, lease_until: float) -> str:
        reply = await self._call(scripts.HEARTBEAT, job_id, scalar(attempt), scalar(lease_until))
        return self._status(reply, job_id)

    async def heartbeat(self, job_id: str, attempt: int, lease_until: float) -> bool:
        """Renew the lease; return True if a cancel was recorded."""
        return await self._beat(job_id, attempt, lease_until) == "cancel"

    async def progress(
        self, job_id: str, attempt: int, percent: float, message: str | None
    ) -> bool:
        """Record progress; return True if a cancel was recorded."""
        reply = await self._call(
            scripts.PROGRESS,
            job_id,
            scalar(attempt),
            scalar(percent),
            scalar(message) if message is not None else "",
        )
        return self._status(reply, job_id) == "cancel"

    async def _end(
        self, script: scripts.Script, job_id: str, attempt: int, now: float, *more: str
    ) -> JobState:
        reply = await self._call(
            script, job_id, scalar(now), scalar(now + self.retention), *more, scalar(attempt)
        )
        return self._ended(reply, job_id)

    def _ended(self, reply: builtins.list[Any], job_id: str) -> JobState:
        """The state an ending script's ``{'ok', state}`` reply says."""
        if self._status(reply, job_id) == "missing":
            raise _not_found(job_id, None)
        return JobState(text(reply[1]))

    async def complete(self, job_id: str, attempt: int, now: float, result: Any) -> JobState:
        """Succeeded, unless a cancel was recorded first; return the final state.

        The completions of one event-loop turn go as one script call.

        Raises:
            JobStoreError: ``result`` cannot be stored as JSON (nothing changed).
        """
        try:
            encoded = scalar(result) if result is not None else ""
        except (TypeError, ValueError) as exc:
            raise JobStoreError(f"the result of job {job_id!r} is not JSON: {exc}") from None
        reply = await self._joined_row(
            scripts.COMPLETE,
            job_id,
            scalar(now),
            scalar(now + self.retention),
            encoded,
            scalar(attempt),
        )
        return self._ended(reply, job_id)

    async def fail(
        self,
        job_id: str,
        attempt: int,
        now: float,
        error: ErrorInfo | None,
        *,
        retry_at: float | None,
        reason: str,
    ) -> JobState:
        """Retrying or dead; a recorded cancel wins."""
        return await self._end(
            scripts.FAIL,
            job_id,
            attempt,
            now,
            scalar(attrs.asdict(error)) if error is not None else "",
            scalar(retry_at) if retry_at is not None else "",
            scalar(reason),
        )

    async def release(self, job_id: str, attempt: int, now: float) -> JobState:
        """Back to pending (or cancelled, if asked)."""
        return await self._end(scripts.RELEASE, job_id, attempt, now)

    async def cancel(self, job_id: str, now: float, *, tenant: str | None = None) -> Cancelled:
        """Record a cancel.

        Raises:
            JobNotFound: No such job (for this tenant).
        """
        reply = await self._call(
            scripts.CANCEL,
            job_id,
            scalar(now),
            scalar(now + self.retention),
            scalar(tenant) if tenant is not None else "",
        )
        status = self._status(reply, job_id)
        if status == "missing":
            raise _not_found(job_id, tenant)
        return Cancelled(CancelKind(status), record_of_reply(reply[1], reply[2], job_id))

    async def retry(self, job_id: str, now: float, *, tenant: str | None = None) -> JobRecord:
        """Dead or cancelled back to pending (uncommitted), attempts from zero.

        Raises:
            JobNotFound: No such job (for this tenant).
            JobError: The job is not dead or cancelled.
        """
        reply = await self._call(
            scripts.RETRY, job_id, scalar(now), scalar(tenant) if tenant is not None else ""
        )
        status = self._status(reply, job_id)
        if status == "missing":
            raise _not_found(job_id, tenant)
        if status == "live":
            raise JobError(
                f"job {job_id!r} is {text(reply[1])}: only dead or cancelled jobs can be retried"
            )
        return record_of_reply(reply[1], reply[2], job_id)

    async def reap(self, now: float, *, abandon_after: float) -> Reaped:
        """Expire leases, delete expired records and abandoned enqueues.

        Reads only what expired, from the indexes, `REAP_BATCH` records per script.
        """
        leases = records = abandoned = 0
        phase = 1
        while phase:
            reply = await self._call(
                scripts.REAP,
                scalar(now),
                scalar(now + self.retention),
                scalar(abandon_after),
                REAP_BATCH,
                phase,
            )
            leases += int(reply[0])
            records += int(reply[1])
            abandoned += int(reply[2])
            phase = int(reply[3])
        return Reaped(leases, records, abandoned)

    async def close(self) -> None:
        """Close the client, if the store made it from a URL.

        For good: every later call (and every waiter still waiting) raises
        `JobStoreError`, saying the store is closed.
        """
        self._link.require_asyncio("closing")
        await self._link.close()  # first: a waiter the inbox lets go finds it closed
        if self._inbox is not None:
            await self._inbox.close()
