"""Where a `SyncJobQueue` runs its calls: the app's event loop, or a loop thread of its own.

Broker clients belong to the event loop that opened their connections, and none of
ours may be used from a second loop: `RabbitMQBackend` opens its publishing connection
and channel on first use and guards them with an ``asyncio.Lock``; `RedisBackend`
opens one publishing client on first use; `RedisJobStore`'s client connects its pool
on first use. So a `SyncJobQueue` on a broker runs one event loop (asyncio) in a
thread of its own (`anyio.from_thread.start_blocking_portal`, started on first use)
with a backend and a store of its own, made in that thread by factories (the backend
by default a fresh one with the same configuration: `fresh_backend`), and closed with
it: `close()`, the end of a ``with`` block, or the interpreter's exit.

The memory backend and the memory store are the app's own objects, in the app's loop:
a copy of them would be another broker and other records. Their calls go to that loop
instead (`AppLoop`): by the token of the loop the client was made in, or from a worker
thread of that loop (``anyio.to_thread``, a sync endpoint of an ASGI app).
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

from foxactors._errors import ConfigurationError
from foxactors.backends import Backend

from ._client import JobQueue
from ._store import JobStore

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

T = TypeVar("T")

Action = Callable[[JobQueue], Coroutine[Any, Any, T]]
"""One call of a `SyncJobQueue`, made on the loop with the `JobQueue` that lives there."""

_IN_A_LOOP = (
    "a SyncJobQueue blocks its caller, and this thread runs an event loop: "
    "await the async API here instead (await task.enqueue(...), await jobs.get(...))"
)


def refuse_in_a_loop() -> None:
    """Refuse a blocking call from a thread that runs an event loop (it would stall it).

    Raises:
        ConfigurationError: This thread runs an event loop.
    """
    try:
        anyio.lowlevel.current_token()
    except RuntimeError:  # NoEventLoopError: no loop here, as it should be
        return
    raise ConfigurationError(_IN_A_LOOP)


class Loop(Protocol):
    """How a `SyncJobQueue` gets its calls onto an event loop."""

    def run(self, action: Action[T]) -> T:
        """Run ``action`` on the loop, blocking this thread until it returns."""

    def close(self) -> None:
        """Release what it holds; later calls fail."""


class AppLoop:
    """Calls run on the loop that runs the app: the memory backend or store lives there.

    Made inside that loop, it keeps the loop's token and works from any thread; made
    outside, it works from the loop's worker threads (``anyio.to_thread.run_sync``).
    """

    def __init__(self, jobs: JobQueue) -> None:
        self.jobs = jobs
        try:
            self.token: anyio.lowlevel.EventLoopToken | None = anyio.lowlevel.current_token()
        except RuntimeError:  # made outside any loop
            self.token = None

    def run(self, action: Action[T]) -> T:
        """Run ``action`` on the app's loop.

        Raises:
            ConfigurationError: No way to that loop from this thread, or it has ended.
        """
        refuse_in_a_loop()
        try:
            if self.token is not None:
                return anyio.from_thread.run(action, self.jobs, token=self.token)
            return anyio.from_thread.run(action, self.jobs)
        except anyio.RunFinishedError:
            raise ConfigurationError(
                "the event loop this SyncJobQueue was made in has ended; make it in the "
                "loop that runs the app"
            ) from None
        except anyio.NoEventLoopError:
            raise ConfigurationError(
                f"the {self.jobs.backend.name} backend and its job store live in the event "
                "loop that runs the app, and this thread cannot reach it: make the "
                "SyncJobQueue inside that loop (then any thread may use it), or call it from "
                "a worker thread of that loop (anyio.to_thread.run_sync, a sync endpoint of "
                "an ASGI app). From another process, use a broker and a RedisJobStore"
            ) from None

    def close(self) -> None:
        """Nothing to release: the app owns its backend and store."""


class _OwnQueue(JobQueue):
    """A `JobQueue` on the client's own connections; results read by the app's tasks."""

    def __init__(self, origin: JobQueue, backend: Backend, store: JobStore) -> None:
        super().__init__(backend, store=store, queue=origin.default_queue, clock=origin.clock)
        self.origin = origin

    def decoder(self, task_name: str) -> Callable[[Any], Any] | None:
        """The app's tasks convert results (this queue registers none of its own)."""
        return self.origin.decoder(task_name)


class OwnLoop:
    """Calls run on an event loop thread of the client's own, on connections of its own.

    Args:
        jobs: The app's `JobQueue` (its tasks, default queue and clock).
        backend: Makes the backend, once, in the loop thread.
        store: Makes the job store, once, in the loop thread.
    """

    def __init__(
        self, jobs: JobQueue, backend: Callable[[], Backend], store: Callable[[], JobStore]
    ) -> None:
        self.jobs = jobs
        self._make_backend = backend
        self._make_store = store
        self._lock = threading.Lock()
        self._closed = False
        self._portal: BlockingPortal | None = None
        self._stop: contextlib.ExitStack | None = None
        self._queue: JobQueue | None = None
        self._busy = 0
        self._idle: anyio.Event | None = None
        self._closing = False

    def _started(self) -> BlockingPortal:
        with self._lock:
            if self._closed:
                raise ConfigurationError("this SyncJobQueue is closed; make a new one")
            if self._portal is None:
                stack = contextlib.ExitStack()
                portal = stack.enter_context(
                    anyio.from_thread.start_blocking_portal("asyncio", name="foxactors-sync-jobs")
                )
                try:
                    portal.call(self._connect)
                except BaseException:
                    stack.close()
                    raise
                self._portal, self._stop = portal, stack
                atexit.register(self.close)
            return self._portal

    async def _connect(self) -> None:
        backend, store = self._make_backend(), self._make_store()
        if not isinstance(backend, Backend):
            raise ConfigurationError(f"backend= must make a foxactors backend, it made {backend!r}")
        if not isinstance(store, JobStore):
            raise ConfigurationError(f"store= must make a job store, it made {store!r}")
        self._queue = _OwnQueue(self.jobs, backend, store)

    def run(self, action: Action[T]) -> T:
        """Run ``action`` on the client's loop (started on first use).

        Raises:
            ConfigurationError: Called from an event loop, or after `close`.
        """
        refuse_in_a_loop()
        return self._started().call(self._act, action)

    async def _act(self, action: Action[T]) -> T:
        queue = self._queue
        assert queue is not None  # set by _connect
        if self._closing:  # got past close()'s check just before it
            raise ConfigurationError("this SyncJobQueue is closed; make a new one")
        self._busy += 1
        try:
            return await action(queue)
        finally:
            self._busy -= 1
            if self._busy == 0 and self._idle is not None:
                self._idle.set()

    async def _disconnect(self) -> None:
        self._closing = True
        if self._busy:  # calls already in the loop finish on open connections
            self._idle = anyio.Event()
            await self._idle.wait()
        if self._queue is not None:
            try:
                await self._queue.backend.close()
            finally:
                await self._queue.close()

    def close(self) -> None:
        """Let running calls finish, close the connections, stop the loop thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            portal, stack = self._portal, self._stop
        if portal is None or stack is None:
            return
        atexit.unregister(self.close)
        try:
            portal.call(self._disconnect)
        finally:
            stack.close()


def fresh_backend(backend: Backend) -> Callable[[], Backend]:
    """A factory of backends configured as ``backend`` (RabbitMQ and Redis).

    Raises:
        ConfigurationError: Another kind of backend: it cannot be copied; the message
            says to pass a factory.
    """
    kind = type(backend)
    if kind.__module__.startswith("foxactors.backends.rabbitmq"):
        from foxactors.backends import RabbitMQBackend  # noqa: PLC0415 - loaded already

        if isinstance(backend, RabbitMQBackend) and kind is RabbitMQBackend:
            rabbit = backend
            return lambda: RabbitMQBackend(
                rabbit.url,
                codec=rabbit.codec,
                topology=rabbit.topology,
                persistent=rabbit.persistent,
            )
    if kind.__module__.startswith("foxactors.backends.redis"):
        from foxactors.backends import RedisBackend  # noqa: PLC0415 - loaded already

        if isinstance(backend, RedisBackend) and kind is RedisBackend:
            redis = backend
            return lambda: RedisBackend(
                redis.url,
                group=redis.group,
                consumer=redis.consumer,
                codec=redis.codec,
                leases=redis.leases,
                maxlen=redis.maxlen,
                block=redis.block,
                poll_interval=redis.poll_interval,
                health_interval=redis.health_interval,
                dead_letter_stream=redis.dead_letter_stream("{stream}"),  # the template back
                delayed_set=redis.delayed_set("{stream}"),
                payload_field=redis.payload_field,
            )
    raise ConfigurationError(
        f"a SyncJobQueue opens connections of its own, in its own thread, and cannot copy "
        f"a {kind.__name__}: pass backend=, a function that makes one configured the same"
    )
