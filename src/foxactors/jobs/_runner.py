"""`JobRunner`: runs one delivery of a job: checks the record, runs the task, settles.

It is the handler the job worker app registers for each task (manual ack): the
record decides whether the task runs at all (cancel wins), the task's rules decide
retry or dead, and the delivery is settled to match the record.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import TYPE_CHECKING, Any

import anyio

from foxactors import _tracing
from foxactors._errors import EncodeError
from foxactors._logging import describe, get_logger, retry_in, traceback_of
from foxactors._message import Delivery
from foxactors._validate import require_seconds

from ._errors import JobArgumentsError, JobRecordError, Reject, Retry
from ._keeper import Attempt, Held, RunningAttempts
from ._record import ErrorInfo, JobRecord, JobState
from ._store import Started, StartKind

if TYPE_CHECKING:
    from foxactors._ack import AckHandle

    from ._client import JobQueue
    from ._task import Task

log = get_logger("foxactors.jobs")
_debug_on = logging.getLogger("foxactors.jobs").isEnabledFor  # one cached check per job

_STOPS = (KeyboardInterrupt, SystemExit)

STORE_DOWN_DELAY = 1.0
"""Seconds a delivery waits (not counted as an attempt) when the store cannot be reached."""
BUSY_RETRY = 0.5
"""Seconds at least before a delivery whose job runs elsewhere comes back: past the
lease it saw (renewed, it waits again), never sooner than this."""
NOT_DUE_RETRY = 0.001
"""Seconds at least before a delivery that came back before its retry was due comes
back again (a broker's clock may run a little ahead of the store's)."""


class ThreadLimit:
    """One capacity limiter for the plain ``def`` tasks of one worker app, made on first use."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self._limiter: anyio.CapacityLimiter | None = None

    def get(self) -> anyio.CapacityLimiter:
        """The limiter (made inside the event loop, where anyio needs it)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.tokens)
        return self._limiter


def error_info(exc: BaseException) -> ErrorInfo:
    """What an attempt raised, short enough to store."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    frames = traceback.format_exception(exc, limit=-8)
    return ErrorInfo(name, str(exc)[:1000], "".join(frames)[-4000:])


class JobRunner:
    """Runs deliveries of one task; settles each to agree with the job's record."""

    def __init__(
        self,
        jobs: JobQueue,
        task: Task[Any, Any],
        threads: ThreadLimit,
        running: RunningAttempts,
    ) -> None:
        self.jobs = jobs
        self.task = task
        self.threads = threads
        self.running = running

    async def run(self, delivery: Delivery) -> None:
        """Run one delivery: the manual-ack handler of the task's message type.

        One delivery of a job at a time in this app (`RunningAttempts.hold`): another
        delivery of a job whose attempt still runs here waits for it.
        """
        from ._client import JOB_ID_HEADER  # noqa: PLC0415 - the client imports this module

        handle = delivery.handle
        job_id = delivery.message.headers.get(JOB_ID_HEADER)
        if not isinstance(job_id, str):
            handle.dead_letter(f"not a job: no {JOB_ID_HEADER} header")
            return
        held = await self.running.hold(job_id, handle)
        if held is Held.GONE:  # its consumer is gone: the broker delivers it again
            return
        try:
            if held is Held.AFTER_SETTLED and await self._retrying_later(job_id):
                # the attempt it waited for got its retry to the broker: that retry has
                # a delivery of its own, and this copy is redundant (else every later
                # retry would come twice). Had it not (its consumer was gone), this copy
                # stands for the retry: start answers NOT_DUE until it is due.
                log.debug("job.copy_acked", job_id=job_id, why="retrying later")
                handle.ack()
            else:
                await self._run(delivery, job_id)
        finally:
            self.running.let_go(job_id, handle)

    async def _retrying_later(self, job_id: str) -> bool:
        """Whether the job is retrying, due later (False if the store cannot say)."""
        try:
            record = await self.jobs.store.get(job_id)
        except Exception:  # missing, or the store down: `_run` says which
            return False
        due = record.next_run_at
        return record.state is JobState.RETRYING and due is not None and due > self.jobs.clock()

    async def _run(self, delivery: Delivery, job_id: str) -> None:
        handle = delivery.handle
        jobs, store = self.jobs, self.jobs.store
        now = jobs.clock()
        try:
            started = await store.start(job_id, now, now + jobs.lease)
        except JobRecordError as exc:
            handle.dead_letter(f"job record unreadable: {exc}")
            return
        except Exception as exc:  # the store is down: the job waits, no attempt counted
            log.warning(
                "job.store_unreachable", job_id=job_id, error=f"{type(exc).__name__}: {exc}"
            )
            handle.defer(STORE_DOWN_DELAY)
            return
        if started.kind is StartKind.MISSING:  # kept, not dropped: an operator can look
            reason = (
                f"no record of job {job_id!r} in the job store: it expired, was deleted, or "
                "was enqueued with another store (a MemoryJobStore is one process's own)"
            )
            log.warning("job.record_missing", job_id=job_id, task=self.task.name)
            handle.dead_letter(reason)
            return
        if started.kind is not StartKind.RUN:
            self._not_run(handle, started, job_id, now)
            return
        record = started.record
        assert record is not None
        if record.attempt > record.max_attempts:  # its workers kept dying before an outcome
            reason = (
                f"started {record.attempt} times, over max_attempts={record.max_attempts}: its "
                "worker kept crashing or stopping"
            )
            await self._end(delivery, record, None, reason, dead=True)
            return
        try:
            arguments = self.task.signature.decode(record.args)
        except JobArgumentsError as exc:
            await self._end(delivery, record, error_info(exc), str(exc), dead=True, raised=exc)
            return
        await self._attempt(delivery, record, arguments)

    def _not_run(self, handle: AckHandle, started: Started, job_id: str, now: float) -> None:
        """Settle a delivery the store says not to run (cancelled, finished, busy, not due)."""
        record = started.record
        if started.kind is StartKind.BUSY:  # another worker's attempt runs, leased
            until = record.lease_until if record is not None else None
            wait = max((until or now) - now, BUSY_RETRY)
            log.info("job.attempt_running_elsewhere", job_id=job_id, retry_in=round(wait, 3))
            handle.defer(wait)
            return
        if started.kind is StartKind.NOT_DUE:  # a copy back before the retry is due
            due = record.next_run_at if record is not None else None
            wait = max((due or now) - now, NOT_DUE_RETRY)
            log.debug("job.retry_not_due", job_id=job_id, retry_in=round(wait, 3))
            handle.defer(wait)
            return
        log.debug("job.not_run", job_id=job_id, why=started.kind.value)
        if record is not None and record.state is JobState.DEAD:
            # the job died, but this delivery was not dead-lettered (the connection
            # that held it was lost): it goes where a dead job's delivery belongs
            handle.dead_letter(record.reason or "dead")
        else:
            handle.ack()

    async def _attempt(self, delivery: Delivery, record: JobRecord, arguments: Any) -> None:
        jobs, task = self.jobs, self.task
        if _tracing.ACTIVE is not None:  # the worker's span is this attempt's
            _tracing.ACTIVE.annotate(
                {"foxactors.job.id": record.id, "foxactors.job.attempt": record.attempt}
            )
        ctx = task.context_class()(record, jobs.store)
        scope = anyio.CancelScope()
        result: Any = None
        failure: BaseException | None = None
        running = Attempt(record.id, record.attempt, scope, ctx, task.is_async)
        self.running.add(running)
        start = time.perf_counter()
        try:
            with scope:
                try:
                    if task.defaults.timeout is None:
                        result = await task.call(ctx, arguments, self.threads.get())
                    else:
                        with anyio.fail_after(task.defaults.timeout):
                            result = await task.call(ctx, arguments, self.threads.get())
                except Exception as exc:
                    failure = exc
                except BaseException as exc:  # as the pipeline's workers: a failure, unless
                    # it stops the worker or the program, or is a cancel: ours (a recorded
                    # cancel) ends at `scope`; any other (the worker stopping or dying)
                    # must reach the release below, not become the attempt's failure
                    if isinstance(exc, (anyio.get_cancelled_exc_class(), *_STOPS)):
                        raise
                    failure = exc
        except (anyio.get_cancelled_exc_class(), *_STOPS):  # the delivery goes back
            with anyio.CancelScope(shield=True):
                await jobs.store.release(record.id, record.attempt, jobs.clock())
            raise
        finally:
            self.running.remove(running)
        if (ctx.cancel_requested and not isinstance(failure, TimeoutError)) or (
            scope.cancelled_caught
        ):
            await self._cancelled(delivery, record)
        elif failure is not None:
            await self._failed(delivery, record, failure)
        else:
            await self._succeeded(delivery, record, result, time.perf_counter() - start)

    async def _succeeded(
        self, delivery: Delivery, record: JobRecord, result: Any, duration: float
    ) -> None:
        jobs = self.jobs
        try:
            value = self.task.signature.encode_result(result)
            if value is not None:
                jobs.results.encode(value)  # JSON and within max_result_size, or refused
        except (EncodeError, ValueError, TypeError) as exc:
            limit = jobs.results.max_size
            if isinstance(exc, EncodeError) and str(exc).startswith("payload is"):
                reason = (
                    f"its result is over max_result_size ({limit} bytes of JSON): return a "
                    "reference to large data (a key, a URL), or raise "
                    "JobQueue(max_result_size=...)"
                )
            else:
                reason = f"its result cannot be stored: {exc}"
            await self._end(delivery, record, error_info(exc), reason, dead=True, raised=exc)
            return
        try:
            state = await jobs.store.complete(record.id, record.attempt, jobs.clock(), value)
        except Exception as exc:
            self._store_failed(delivery, record, exc)
            return
        if state is JobState.CANCELLED:
            log.info("job.cancelled", job_id=record.id, task=record.task, after="completion")
        elif _debug_on(logging.DEBUG):
            log.debug(
                "job.succeeded",
                job_id=record.id,
                task=record.task,
                attempt=record.attempt,
                max_attempts=record.max_attempts,
                duration=round(duration, 6),
            )
        delivery.handle.ack()

    async def _cancelled(self, delivery: Delivery, record: JobRecord) -> None:
        jobs = self.jobs
        try:
            await jobs.store.release(record.id, record.attempt, jobs.clock())
        except Exception as exc:
            self._store_failed(delivery, record, exc)
            return
        log.info("job.cancelled", job_id=record.id, task=record.task)
        delivery.handle.ack()

    async def _failed(self, delivery: Delivery, record: JobRecord, exc: BaseException) -> None:
        if _tracing.ACTIVE is not None:  # settled here, so the worker sees no failure
            _tracing.ACTIVE.fail(exc)
        options = self.task.defaults
        attempt, most = record.attempt, record.max_attempts
        if isinstance(exc, Reject):
            await self._end(delivery, record, None, exc.reason, dead=True)
            return
        if isinstance(exc, Retry):
            if attempt >= most:
                reason = f"retry asked after the last attempt ({attempt} of {most}): {exc.reason}"
                await self._end(delivery, record, None, reason, dead=True)
                return
            await self._retry(delivery, record, None, exc.reason, exc.delay)
            return
        if isinstance(exc, TimeoutError) and options.timeout is not None:
            what = f"timed out after {options.timeout} s"
        else:
            what = f"{type(exc).__name__}: {exc}"
        info = error_info(exc)
        if not isinstance(exc, options.retry_on):
            await self._end(delivery, record, info, f"not retried: {what}", dead=True, raised=exc)
        elif attempt >= most:
            reason = f"failed after {attempt} attempt{'s' if attempt > 1 else ''}: {what}"
            await self._end(delivery, record, info, reason, dead=True, raised=exc)
        else:
            await self._retry(delivery, record, info, what, None, raised=exc)

    async def _retry(
        self,
        delivery: Delivery,
        record: JobRecord,
        error: ErrorInfo | None,
        reason: str,
        delay: float | None,
        *,
        raised: BaseException | None = None,
    ) -> None:
        """Run the job again after ``delay`` seconds (None: the task's backoff decides).

        A custom backoff that raises or returns no delay would leave the record
        retrying with no delivery behind it: the job is dead instead, saying why.
        """
        if delay is None:
            backoff = self.task.defaults.backoff
            try:
                delay = require_seconds("a backoff's delay", backoff(record.attempt))
            except Exception as exc:
                reason = (
                    f"its backoff {backoff!r} gave no delay after attempt {record.attempt}: "
                    f"{type(exc).__name__}: {exc}"
                )
                await self._end(delivery, record, error, reason, dead=True, raised=raised)
                return
        await self._end(delivery, record, error, reason, dead=False, delay=delay, raised=raised)

    async def _end(
        self,
        delivery: Delivery,
        record: JobRecord,
        error: ErrorInfo | None,
        reason: str,
        *,
        dead: bool,
        delay: float = 0.0,
        raised: BaseException | None = None,
    ) -> None:
        """Record a failed attempt (retrying or dead), log it, then settle to agree.

        ``raised`` is what the attempt raised, if it raised an error (not `Retry` or
        `Reject`, which say what to do): its line is ``job.failed`` at warning, with
        the traceback. A retry the task asked for is ``job.retrying`` at info.
        """
        jobs = self.jobs
        now = jobs.clock()
        try:
            state = await jobs.store.fail(
                record.id,
                record.attempt,
                now,
                error,
                retry_at=None if dead else now + delay,
                reason=reason,
            )
        except Exception as exc:
            self._store_failed(delivery, record, exc)
            return
        handle = delivery.handle
        # settled first: the retry's delay runs from now, not from after the line
        # (a traceback takes a while to render)
        if state is JobState.RETRYING:
            handle.retry(delay)
            self._log_end(record, reason, retry_in(delay), raised)
        elif state is JobState.DEAD:
            handle.dead_letter(reason)
            self._log_end(record, reason, "dead-lettered", raised)
        else:  # cancelled meanwhile (a cancel wins), or already final
            handle.ack()

    def _log_end(
        self, record: JobRecord, reason: str, next: str, exc: BaseException | None
    ) -> None:
        """The one line of a failed (or retried) attempt: n of m, what comes next, why."""
        fields: dict[str, Any] = {
            "job_id": record.id,
            "task": record.task,
            "attempt": record.attempt,
            "max_attempts": record.max_attempts,
        }
        if exc is not None:
            fields["error"] = describe(exc)
            traceback = traceback_of(exc)
            if traceback is not None:
                fields["exc_info"] = traceback
        if reason != fields.get("error"):
            fields["reason"] = reason
        if exc is None and next != "dead-lettered":  # the task asked for it: no failure
            log.info("job.retrying", **fields, next=next)
        else:
            log.warning("job.failed", **fields, next=next)

    def _store_failed(self, delivery: Delivery, record: JobRecord, exc: Exception) -> None:
        """The store could not record the end: run the job again later (at least once)."""
        log.error(
            "job.store_unreachable",
            job_id=record.id,
            task=record.task,
            error=f"{type(exc).__name__}: {exc}",
        )
        delivery.handle.defer(STORE_DOWN_DELAY)
