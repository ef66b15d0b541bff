"""`SyncJobQueue`: enqueue and read jobs from code without an event loop (Django, Flask, scripts).

Each call blocks its thread until the event loop that does the work answers; many
threads may call at once. Which loop, and on which connections, is `_sync_loop`'s
business: a loop thread of the client's own on a broker, the app's loop on memory.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Any, Generic, ParamSpec, TypeVar, overload

from foxactors._errors import ConfigurationError
from foxactors.backends import Backend, MemoryBackend

from ._client import EnqueueOptions, JobQueue, enqueue_options
from ._handle import JobHandle
from ._memory_store import MemoryJobStore
from ._record import JobRecord, JobState
from ._store import Cancelled, JobPage, JobStore
from ._sync_loop import AppLoop, Loop, OwnLoop, fresh_backend
from ._task import BoundTask, Task

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class SyncJobHandle(Generic[R]):
    """One job, read and changed from synchronous code (what `SyncJobQueue.enqueue` returns).

    Attributes:
        id: The job id.
        created: False when an idempotency key returned a job enqueued before.
        tenant: The tenant this handle reads as (None: any).
    """

    def __init__(
        self,
        client: SyncJobQueue,
        job_id: str,
        *,
        created: bool = True,
        tenant: str | None = None,
        handle: JobHandle[R] | None = None,
    ) -> None:
        self.client = client
        self.id = job_id
        self.created = created
        self.tenant = tenant
        self._handle = handle

    def _act(self, use: Callable[[JobHandle[R]], Coroutine[Any, Any, T]]) -> T:
        async def act(jobs: JobQueue) -> T:
            handle: JobHandle[R] = self._handle or jobs.handle(self.id, tenant=self.tenant)
            return await use(handle)

        return self.client.run(act)

    def status(self) -> JobRecord:
        """The job's record now: state, attempts, progress, result, error, times.

        Raises:
            JobNotFound: It expired (past the store's retention) or never existed.
        """
        return self._act(lambda handle: handle.status())

    def result(self, timeout: float | None = None) -> R:
        """Block until the job is final and return its result (see `JobHandle.result`).

        Raises:
            JobFailed: The job is dead; ``error.record`` says why.
            JobCancelled: The job was cancelled.
            TimeoutError: Not final within ``timeout`` seconds.
            JobNotFound: It expired or never existed.
        """
        return self._act(lambda handle: handle.result(timeout))

    def cancel(self) -> Cancelled:
        """Cancel the job (see `JobHandle.cancel`); returns what the cancel did."""
        return self._act(lambda handle: handle.cancel())

    def __repr__(self) -> str:
        return f"<SyncJobHandle {self.id!r}{'' if self.created else ' (existing)'}>"


class SyncJobQueue:
    """Enqueue and read jobs from code that runs no event loop: views, scripts, threads.

    The same calls as the async API, blocking; safe from any number of threads at once.

    On a broker, it runs an event loop in a thread of its own, started on first use,
    with a backend and a job store of its own, made there by ``backend`` and ``store``
    (broker clients belong to the loop that opened them, so the app's cannot be
    shared). ``close()`` (or the end of a ``with`` block, or the interpreter's exit)
    closes them and stops the thread.

    On the memory backend (or with a `MemoryJobStore`), there is nothing to copy: the
    calls run on the loop that runs the app. Make the client inside that loop (then any
    thread may use it), or call it from a worker thread of that loop.

    Example:
        ```python
        sync_jobs = SyncJobQueue(jobs, store=lambda: RedisJobStore(REDIS_URL))

        def signup_view(request):            # Django, Flask: no event loop here
            handle = sync_jobs.enqueue(send_email, request.POST["email"])
            sync_jobs.enqueue(send_email.options(delay=3600, key="reminder"), "ada@x.org")
            return {"job": handle.id, "state": handle.status().state.value}
        ```

    Args:
        jobs: The `JobQueue` whose tasks are enqueued (its default queue and clock too).
        backend: Makes the client's backend, once, in its thread (default: a fresh
            `RabbitMQBackend` or `RedisBackend` configured as ``jobs.backend``).
        store: Makes the client's job store, once, in its thread: the store the
            workers read, e.g. ``lambda: RedisJobStore(url)``. Needed with a broker.

    Raises:
        ConfigurationError: A broker backend without ``store``, a backend that cannot be
            copied without ``backend``, or factories with the memory backend.
    """

    def __init__(
        self,
        jobs: JobQueue,
        *,
        backend: Callable[[], Backend] | None = None,
        store: Callable[[], JobStore] | None = None,
    ) -> None:
        if not isinstance(jobs, JobQueue):
            raise ConfigurationError(f"jobs must be a JobQueue, got {jobs!r}")
        for name, factory in (("backend", backend), ("store", store)):
            if factory is not None and not callable(factory):
                raise ConfigurationError(
                    f"{name}= takes a function that makes one (called in the client's "
                    f"thread), got {factory!r}"
                )
        self.jobs = jobs
        self._loop = _choose_loop(jobs, backend, store)

    # -- enqueueing -----------------------------------------------------------------

    @overload
    def enqueue(
        self, task: Task[P, R] | BoundTask[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> SyncJobHandle[R]: ...
    @overload
    def enqueue(
        self, task: str, arguments: Mapping[str, Any] | None = None, /, **options: Any
    ) -> SyncJobHandle[Any]: ...

    def enqueue(self, task: Any, /, *args: Any, **kwargs: Any) -> SyncJobHandle[Any]:
        """Enqueue one job; block until it is recorded and published.

        ``enqueue(send_email, "ada@example.com", subject="hi")`` takes the task's
        arguments, typed by its signature; ``enqueue(send_email.options(delay=60), ...)``
        adds options for this enqueue (delay, run_at, priority, key, unique, tenant,
        max_attempts, queue: see `Task.options`); ``enqueue("send_email", {"to": ...},
        delay=60)`` names the task, as `JobQueue.enqueue` does.

        Raises:
            UnknownTask: No task has that name; the message lists the registered ones.
            JobArgumentsError: The arguments do not fit; nothing was enqueued.
            JobAlreadyExists: ``unique=True`` and the key is held by another job.
            BackendError: The broker refused or could not be reached; nothing was kept.
        """
        if isinstance(task, str):
            if len(args) > 1:
                raise ConfigurationError(
                    f"enqueue({task!r}, arguments, **options) takes the arguments as one "
                    "mapping; pass the task itself for positional arguments"
                )
            found = self._named(task)
            payload = found.signature.encode((), dict(args[0] if args and args[0] else {}))
            chosen: EnqueueOptions | None = enqueue_options(**kwargs)
        else:
            found, chosen = self._unbind(task)
            payload = found.signature.encode(args, kwargs)

        async def enqueue(jobs: JobQueue) -> JobHandle[Any]:
            return await jobs.enqueue_encoded(found, payload, chosen)

        return self._wrap(self.run(enqueue))

    @overload
    def enqueue_many(
        self, task: Task[P, R] | BoundTask[P, R], calls: Iterable[Mapping[str, Any]], /
    ) -> builtins.list[SyncJobHandle[R]]: ...
    @overload
    def enqueue_many(
        self, task: str, calls: Iterable[Mapping[str, Any]], /
    ) -> builtins.list[SyncJobHandle[Any]]: ...

    def enqueue_many(
        self, task: Any, calls: Iterable[Mapping[str, Any]], /
    ) -> builtins.list[SyncJobHandle[Any]]:
        """Enqueue one job per mapping of keyword arguments (see `Task.enqueue_many`).

        Every call is validated before anything is enqueued.
        """
        found, chosen = self._unbind(self._named(task) if isinstance(task, str) else task)
        payloads = [found.signature.encode((), call) for call in calls]

        async def enqueue(jobs: JobQueue) -> builtins.list[JobHandle[Any]]:
            return await jobs.enqueue_many_encoded(found, payloads, chosen)

        return [self._wrap(handle) for handle in self.run(enqueue)]

    def _named(self, name: str) -> Task[Any, Any]:
        return self.jobs._task(name)  # UnknownTask lists the registered ones

    def _unbind(self, task: object) -> tuple[Task[Any, Any], EnqueueOptions | None]:
        if isinstance(task, BoundTask):
            found, chosen = task.task, task.chosen
        elif isinstance(task, Task):
            found, chosen = task, None
        else:
            raise ConfigurationError(
                f"enqueue takes a task, task.options(...), or a task's name; got {task!r}"
            )
        if found.jobs is not self.jobs:
            raise ConfigurationError(
                f"task {found.name!r} is registered on another JobQueue than this client's"
            )
        return found, chosen

    def _wrap(self, handle: JobHandle[R]) -> SyncJobHandle[R]:
        return SyncJobHandle(
            self, handle.id, created=handle.created, tenant=handle.tenant, handle=handle
        )

    # -- reading and changing -------------------------------------------------------

    def handle(self, job_id: str, *, tenant: str | None = None) -> SyncJobHandle[Any]:
        """A handle for a job by id (no call is made until it is used)."""
        return SyncJobHandle(self, job_id, tenant=tenant)

    def get(self, job_id: str, *, tenant: str | None = None) -> JobRecord:
        """The job's record (see `JobQueue.get`).

        Raises:
            JobNotFound: No such job (for this tenant).
        """
        return self.run(lambda jobs: jobs.get(job_id, tenant=tenant))

    def list(
        self,
        *,
        queue: str | None = None,
        state: JobState | str | None = None,
        tenant: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of records, newest first (see `JobQueue.list`)."""
        return self.run(
            lambda jobs: jobs.list(
                queue=queue, state=state, tenant=tenant, limit=limit, cursor=cursor
            )
        )

    def counts(
        self, *, queue: str | None = None, tenant: str | None = None
    ) -> Mapping[JobState, int]:
        """How many jobs are in each state."""
        return self.run(lambda jobs: jobs.counts(queue=queue, tenant=tenant))

    def cancel(self, job_id: str, *, tenant: str | None = None) -> Cancelled:
        """Cancel a job (see `JobHandle.cancel`); returns what the cancel did.

        Raises:
            JobNotFound: No such job (for this tenant).
        """
        return self.run(lambda jobs: jobs.cancel(job_id, tenant=tenant))

    def retry(self, job_id: str, *, tenant: str | None = None) -> SyncJobHandle[Any]:
        """Run a dead or cancelled job again, from its first attempt (see `JobQueue.retry`).

        Raises:
            JobNotFound: No such job (for this tenant).
            JobError: It is not dead or cancelled.
        """
        handle = self.run(lambda jobs: jobs.retry(job_id, tenant=tenant))
        return self._wrap(handle)

    # -- running --------------------------------------------------------------------

    def run(self, action: Callable[[JobQueue], Coroutine[Any, Any, T]]) -> T:
        """Run ``action(jobs)`` on the client's event loop and return what it returns.

        ``jobs`` is the `JobQueue` that lives on that loop (the app's own on memory).
        For what the methods above do not cover.

        Raises:
            ConfigurationError: Called from a thread that runs an event loop (await the
                async API there), after `close`, or with no way to the app's loop.
        """
        return self._loop.run(action)

    def close(self) -> None:
        """Let calls under way finish, close the client's connections, stop its thread.

        Later calls raise `ConfigurationError`. On memory, nothing to do.
        """
        self._loop.close()

    def __enter__(self) -> SyncJobQueue:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "app loop" if isinstance(self._loop, AppLoop) else "own loop"
        return f"<SyncJobQueue {self.jobs.backend.name} ({where})>"


def _choose_loop(
    jobs: JobQueue,
    backend: Callable[[], Backend] | None,
    store: Callable[[], JobStore] | None,
) -> Loop:
    in_process = isinstance(jobs.backend, MemoryBackend) or isinstance(jobs.store, MemoryJobStore)
    if backend is None and store is None and in_process:
        return AppLoop(jobs)
    if backend is None:
        if isinstance(jobs.backend, MemoryBackend):
            raise ConfigurationError(
                "the memory backend lives in the event loop that runs the app: make its "
                "SyncJobQueue without backend= or store= (its calls go to that loop)"
            )
        backend = fresh_backend(jobs.backend)
    if store is None:
        raise ConfigurationError(
            f"a SyncJobQueue on {jobs.backend.name} opens connections of its own, in its own "
            "thread: pass store=, a function that makes the job store the workers read, "
            "e.g. store=lambda: RedisJobStore(url)"
        )
    return OwnLoop(jobs, backend, store)
