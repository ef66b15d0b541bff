"""`Harness`: apps running on a memory backend, and what their handlers did.

A test publishes or enqueues, then `join` (wait, and raise the first handler
failure as it is) or `drain` (run everything, scheduled work included, and count
what became of it). Both wait on the memory backend, so in virtual time retry
delays and schedules pass at once.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from foxactors._errors import ConfigurationError
from foxactors._message import Outcome, OutcomeKind
from foxactors._system import ActorSystem, open_system
from foxactors.backends import MemoryBackend
from foxactors.pipeline import Stage, WorkerApp

from ._clock import require_virtual_time

if TYPE_CHECKING:
    from foxactors.jobs import JobQueue

RECORDER = "foxactors-testing"  # the name of the stage `running` adds to an app


@attrs.frozen
class DrainCounts:
    """What became of the work a `Harness.drain` ran.

    Attributes:
        succeeded: Messages (or jobs) handled successfully.
        failed: Failed attempts that will be tried again (retried).
        dead: Messages (or jobs) that ended dead: dead-lettered.
        cancelled: Jobs cancelled (messages are never cancelled).
    """

    succeeded: int = 0
    failed: int = 0
    dead: int = 0
    cancelled: int = 0


class _Watch:
    """What the handlers of one queue did: counts, and failures not reported yet."""

    def __init__(self) -> None:
        self.succeeded = 0
        self.failed = 0  # attempts retried
        self.raised = 0  # job attempts that raised (their fate is in the store)
        self.unreported: list[BaseException] = []
        self._failure: anyio.Event | None = None

    def failure(self, error: BaseException) -> None:
        self.unreported.append(error)
        if self._failure is not None:
            self._failure.set()
            self._failure = None

    async def wait_failure(self) -> None:
        while not self.unreported:
            if self._failure is None:
                self._failure = anyio.Event()
            await self._failure.wait()

    def raise_unreported(self) -> None:
        if self.unreported:
            first, self.unreported = self.unreported[0], []
            raise first


class _Recorder(Stage):
    """A stage that tells the harness each outcome, after the retry stage decided it."""

    def __init__(self, watch: _Watch) -> None:
        self._watch = watch

    async def on_outcome(self, outcome: Outcome) -> None:
        """Count the outcome and keep the handler's exception; pass the outcome on."""
        watch, kind = self._watch, outcome.kind
        if kind is OutcomeKind.SUCCEEDED:
            watch.succeeded += 1
        elif kind is OutcomeKind.RETRY and outcome.error is not None:
            watch.failed += 1
        if outcome.error is not None and kind is not OutcomeKind.REQUEUE:
            watch.failure(outcome.error)
        await self.reply(outcome)


class Harness:
    """Run apps on a memory backend and wait for, check and count their work.

    The pytest plugin's ``foxactors_harness`` fixture is one; outside pytest, make
    one yourself. Run it in virtual time (`anyio_backend_options`), so that retry
    delays and scheduled work pass at once.

    Args:
        backend: The memory backend apps run on (default: a new one). An app
            bound to a backend of its own (`WorkerApp.with_backend`, a job queue's
            worker) runs on that one.

    Example:
        ```python
        harness = Harness()
        async with harness.running(app, queue="emails"):
            await harness.backend.publish("emails", {"to": "ada@example.com"})
            await harness.join("emails")  # a handler's exception is raised here
        ```
    """

    def __init__(self, backend: MemoryBackend | None = None) -> None:
        self.backend = backend if backend is not None else MemoryBackend()
        self._watches: dict[str, _Watch] = {}
        self._backends: dict[str, MemoryBackend] = {}
        self._jobs: dict[str, JobQueue] = {}

    def _watch(self, queue: str) -> _Watch:
        return self._watches.setdefault(queue, _Watch())

    @contextlib.asynccontextmanager
    async def running(
        self, app: WorkerApp | JobQueue, queue: str | None = None
    ) -> AsyncIterator[ActorSystem]:
        """Run ``app`` consuming ``queue`` for the block; yield its `ActorSystem`.

        ``app`` is a `WorkerApp` (a copy of it runs, with a stage that reports each
        outcome to the harness) or a `JobQueue`, whose worker for ``queue`` runs
        (its tasks report each attempt that raises while the block runs).

        Raises:
            ConfigurationError: No queue (none given, none bound to the app), or the
                app is bound to a backend that is not a `MemoryBackend`.
        """
        if isinstance(app, WorkerApp):
            async with self._running_app(app, queue) as system:
                yield system
            return
        from foxactors.jobs import JobQueue  # noqa: PLC0415 - the jobs extra is optional

        if not isinstance(app, JobQueue):
            raise ConfigurationError(
                f"running() takes a WorkerApp or a JobQueue, got {type(app).__name__}: {app!r}"
            )
        jobs, name = app, queue or app.default_queue
        watch = self._watch(name)
        with _tasks_report_to(jobs, watch):
            self._jobs[name] = jobs
            try:
                async with self._running_app(jobs.worker(name), name) as system:
                    yield system
            finally:
                del self._jobs[name]

    @contextlib.asynccontextmanager
    async def _running_app(self, app: WorkerApp, queue: str | None) -> AsyncIterator[ActorSystem]:
        bound = app.options.backend
        backend = self.backend if bound is None else bound
        if not isinstance(backend, MemoryBackend):
            raise ConfigurationError(
                f"the harness runs apps on a MemoryBackend; this app is bound to {backend!r} "
                "(bind it to the harness's backend, or test on a broker without the harness)"
            )
        name = queue or app.options.queue
        if name is None:
            raise ConfigurationError(
                "running() needs a queue: pass queue=, or bind one with app.with_backend()"
            )
        watch = self._watch(name)
        watched = copy.copy(app).with_middleware(lambda: _Recorder(watch), name=RECORDER)
        self._backends[name] = backend
        async with open_system(watched.build(backend, name)) as system:
            yield system

    async def join(self, queue: str, *, fail_fast: bool = True) -> None:
        """Wait until ``queue`` has nothing ready, scheduled or in flight.

        With ``fail_fast`` (the default), the first handler exception not reported
        yet is raised as it is, as soon as the handler raises: retries and their
        delays are not waited for. With ``fail_fast=False``, failures show only as
        dead letters once the retries are spent, as `MemoryBackend.join` does.
        """
        backend = self._backends.get(queue, self.backend)
        watch = self._watch(queue)
        if not fail_fast:
            await backend.join(queue)
            return
        watch.raise_unreported()
        async with anyio.create_task_group() as tg:

            async def until(done: Callable[[], Awaitable[None]]) -> None:
                await done()
                tg.cancel_scope.cancel()

            tg.start_soon(until, lambda: backend.join(queue))
            tg.start_soon(until, watch.wait_failure)
        watch.raise_unreported()

    async def drain(self, queue: str, *, fail_fast: bool = False) -> DrainCounts:
        """Run every ready and scheduled message (or job) of ``queue`` until idle.

        In virtual time, the clock jumps to each next due time (a delayed message,
        a retry, a scheduled job), so a drain costs no wall-clock waiting. Returns
        what became of the work that ran during the drain.

        Raises:
            ConfigurationError: Not in virtual time (the drain would wait out every
                delay for real).
        """
        require_virtual_time("drain()")
        backend = self._backends.get(queue, self.backend)
        watch = self._watch(queue)
        jobs = self._jobs.get(queue)
        before = (watch.succeeded, watch.failed, watch.raised, len(backend.dead_letters(queue)))
        ended_before = await _ended(jobs, queue)
        await self.join(queue, fail_fast=fail_fast)
        succeeded = watch.succeeded - before[0]
        failed = watch.failed - before[1]
        dead = len(backend.dead_letters(queue)) - before[3]
        if jobs is None:
            return DrainCounts(succeeded, failed, dead, 0)
        ended = await _ended(jobs, queue)
        new = {kind: ended[kind] - ended_before.get(kind, set()) for kind in ended}
        # an attempt that raised was retried unless it made its job dead (a dead job
        # with an error: one rejected, or never run, has none)
        return DrainCounts(
            len(new["succeeded"]),
            watch.raised - before[2] - len(new["raised"]),
            len(new["dead"]),
            len(new["cancelled"]),
        )


async def _ended(jobs: JobQueue | None, queue: str) -> dict[str, set[str]]:
    """The ids of the finished jobs of ``queue`` by state, and of dead ones that raised.

    Ids, not counts: a record that expires during a drain (past the store's
    retention) is then missing from the counts instead of taking one off.
    """
    ended: dict[str, set[str]] = {"succeeded": set(), "dead": set(), "cancelled": set()}
    ended["raised"] = set()
    if jobs is None:
        return ended
    for state in ("succeeded", "dead", "cancelled"):
        cursor = None
        while True:
            page = await jobs.list(queue=queue, state=state, limit=1000, cursor=cursor)
            for record in page.jobs:
                ended[state].add(record.id)
                if state == "dead" and record.error is not None:
                    ended["raised"].add(record.id)
            cursor = page.cursor
            if cursor is None:
                break
    return ended


@contextlib.contextmanager
def _tasks_report_to(jobs: JobQueue, watch: _Watch) -> Iterator[None]:
    """While the block runs, each task of ``jobs`` reports an attempt that raises."""
    from foxactors.jobs import Reject, Retry  # noqa: PLC0415 - the jobs extra is optional

    patched = []
    for task in jobs.tasks.values():
        call = task.call

        async def reporting(*args: Any, _call: Any = call) -> Any:
            try:
                return await _call(*args)
            except (Retry, Reject):  # control flow: the task said what to do
                raise
            except Exception as exc:
                watch.raised += 1
                watch.failure(exc)
                raise

        task.call = reporting  # type: ignore[method-assign,assignment] # undone on exit
        patched.append(task)
    try:
        yield
    finally:
        for task in patched:
            del task.call  # the class's method again
