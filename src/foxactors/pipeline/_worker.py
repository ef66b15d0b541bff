"""Workers: user handlers, run by worker actors with a timeout and full recovery."""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import anyio

from foxactors import _tracing
from foxactors._actor import Actor, ActorRef
from foxactors._errors import ActorStopped, ConfigurationError, MailboxFull
from foxactors._logging import current_message
from foxactors._message import Delivery, Message, Outcome, OutcomeKind
from foxactors._validate import require_timeout

from ._messages import Handback, Recycle, Retire
from ._work import Batch, BatchOutcomes

Handler = Callable[[Message], Awaitable[Any]]
ManualHandler = Callable[[Delivery], Awaitable[Any]]  # settles delivery.handle itself
#: Takes many messages; may return ``{message_id: exception}`` for the failed ones.
BatchHandler = Callable[[list[Message]], Awaitable[Mapping[str, BaseException] | None]]


@runtime_checkable
class Worker(Protocol):
    """A named message processor with an optional processing timeout.

    A plain ``async def handler(message)`` is a worker too (see `as_worker`).
    Returning means success (the message is acknowledged); raising means failure
    (the retry policy decides).
    """

    @property
    def id(self) -> str:
        """A name for logs."""

    @property
    def timeout(self) -> float | None:
        """Seconds a message may take, or None for no limit."""

    async def process(self, message: Message) -> None:
        """Process one message."""


class FunctionWorker:
    """Wraps an async function as a `Worker`.

    With ``manual_ack``, the function receives the `Delivery` instead of the message
    and must settle ``delivery.handle`` itself.
    """

    def __init__(
        self,
        func: Callable[[Any], Awaitable[Any]],
        *,
        id: str | None = None,
        timeout: float | None = None,
        manual_ack: bool = False,
    ) -> None:
        if not callable(func) or not inspect.iscoroutinefunction(func):
            raise ConfigurationError(
                f"a handler must be an async function taking a Message, got {func!r}"
            )
        check_handler(func, "delivery" if manual_ack else "message")
        require_timeout(timeout)
        self.id: str = id or str(getattr(func, "__qualname__", "handler"))
        self.timeout = timeout
        self.process = func
        self.manual_ack = manual_ack


_ARGUMENTS = {"message": "a Message", "delivery": "a Delivery", "messages": "a list of messages"}


def check_handler(func: Callable[..., Any], argument: str) -> None:
    """Raise a clear error unless ``func`` can be called with one positional argument.

    ``argument`` names what it will get: ``message``, ``delivery`` or ``messages``.
    """
    name = _name(func)
    if _accepts(func, 1) is False:
        raise ConfigurationError(
            f"handler {name} cannot take {_ARGUMENTS[argument]}: it must be "
            f"`async def {name}({argument})`, with one positional parameter, "
            f"but its signature is {inspect.signature(func)}"
        )


def _name(func: Callable[..., Any]) -> str:
    inner = getattr(func, "func", func)  # a functools.partial names its function
    return str(getattr(inner, "__name__", None) or repr(func))


def _accepts(func: Callable[..., Any], count: int) -> bool | None:
    """Whether ``func`` can be called with ``count`` positional arguments (None: unknown)."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # some builtins and C callables have none
        return None
    try:
        signature.bind(*([None] * count))
    except TypeError:
        return False
    return True


_PROCESS = "`async def process(self, message)`"


def _check_worker_class(cls: type[Any]) -> None:
    """Raise a clear error unless instances of ``cls`` can be made and take a message."""
    name = cls.__qualname__
    if _accepts(cls, 0) is False:
        raise ConfigurationError(
            f"{name}() is called with no arguments in each worker actor (a fresh "
            f"instance for each), but its signature is {inspect.signature(cls)}: give "
            "its parameters defaults, or pass an instance, shared by every worker"
        )
    defined = inspect.getattr_static(cls, "process", None)
    if defined is None:
        raise ConfigurationError(f"{name} has no process method: a Worker needs {_PROCESS}")
    if isinstance(defined, staticmethod | classmethod):
        _check_process(name, cls.process, arguments=1)
    elif inspect.isfunction(defined):
        _check_process(name, defined, arguments=2)  # self comes first


def _check_worker(worker: Worker) -> None:
    """Raise a clear error unless ``worker.process`` is async and takes a message."""
    _check_process(type(worker).__qualname__, worker.process, arguments=1)


def _check_process(owner: str, process: Callable[..., Any], *, arguments: int) -> None:
    if not inspect.iscoroutinefunction(process):
        raise ConfigurationError(f"{owner}.process is not async: a Worker needs {_PROCESS}")
    if _accepts(process, arguments) is False:
        defined = getattr(process, "__func__", process)  # with self, as written
        raise ConfigurationError(
            f"{owner}.process cannot take a message: a Worker needs {_PROCESS}, "
            f"but its signature is {inspect.signature(defined)}"
        )


def as_worker(
    handler: Worker | Handler | ManualHandler,
    timeout: float | None = None,
    *,
    manual_ack: bool = False,
) -> Worker:
    """Return ``handler`` as a `Worker` (functions are wrapped)."""
    if isinstance(handler, Worker):
        _only_for_functions(handler, timeout, manual_ack)
        _check_worker(handler)
        return handler
    return FunctionWorker(handler, timeout=timeout, manual_ack=manual_ack)


def _only_for_functions(worker: object, timeout: float | None, manual_ack: bool) -> None:
    if manual_ack:
        raise ConfigurationError(f"manual_ack applies to handler functions, not to {worker!r}")
    if timeout is not None:
        raise ConfigurationError(
            f"timeout= applies to handler functions; {worker!r} is a Worker: "
            "give it a timeout property instead"
        )


#: Gives a worker actor its `Worker` when it starts.
WorkerFactory = Callable[[], Worker]


def worker_factory(
    handler: Worker | type[Any] | Handler | ManualHandler,
    timeout: float | None = None,
    *,
    manual_ack: bool = False,
    default_timeout: float | None = None,
) -> WorkerFactory:
    """How each worker actor gets its `Worker` from ``handler``.

    A class is instantiated anew for every worker actor and every life of one
    (restart, recycling), so no two workers share its state and a recycled worker
    starts clean; a `Worker` instance or a function is shared by all of them.
    ``default_timeout`` applies to workers without a timeout of their own.
    """
    if inspect.isclass(handler):
        _only_for_functions(handler, timeout, manual_ack)
        _check_worker_class(handler)
        cls = handler

        def fresh() -> Worker:
            worker = cls()
            if not isinstance(worker, Worker):
                raise ConfigurationError(
                    f"{cls.__qualname__}() is not a Worker: it needs an id, a timeout "
                    "and an async process(message)"
                )
            return with_default_timeout(worker, default_timeout)

        return fresh
    shared = with_default_timeout(
        as_worker(handler, timeout, manual_ack=manual_ack), default_timeout
    )
    return lambda: shared


def with_default_timeout(worker: Worker, timeout: float | None) -> Worker:
    """``worker``, with ``timeout`` if it has none of its own."""
    if worker.timeout is not None or timeout is None:
        return worker
    return FunctionWorker(
        worker.process,
        id=worker.id,
        timeout=timeout,
        manual_ack=getattr(worker, "manual_ack", False),
    )


_SUCCEEDED = OutcomeKind.SUCCEEDED  # hot path: a global is cheaper than an enum lookup
_FAILED = OutcomeKind.FAILED
_clock = time.perf_counter  # handler durations, for logs: real time, even on a mock clock


class WorkerActor(Actor[Delivery | Batch | Retire]):
    """Runs one delivery at a time through its worker and reports the outcome.

    Every failure of user code becomes a FAILED outcome (never a dead pipeline):
    exceptions, non-Exception errors other than cancellation, KeyboardInterrupt
    and SystemExit, and running past the timeout. Log lines emitted while a message
    is handled carry the message's fields (see `merge_message_context`); the outcome
    carries how long the handler ran, for the consumer's log line.
    """

    def __init__(
        self,
        default: WorkerFactory | None,
        routes: Mapping[str, WorkerFactory],
        *,
        max_messages: int | None = None,
        batch: tuple[BatchHandler, float | None] | None = None,
        system: str | None = None,
    ) -> None:
        self._batch = batch
        self._system = system  # the backend's name, for trace spans
        self._factories = (default, routes)
        self._left = max_messages  # messages before asking to be recycled
        self._pool: ActorRef[Any] | None = None

    async def on_start(self) -> None:
        """Get the workers, find the pool (the parent) and the cancellation class."""
        default, routes = self._factories
        self._default = default() if default is not None else None
        self._routes = {name: make() for name, make in routes.items()}
        self._pool = self.find("..")
        self._cancelled = anyio.get_cancelled_exc_class()

    def _worker_for(self, message: Message) -> Worker | None:
        if self._routes:
            route = self._routes.get(message.properties.message_type or "")
            if route is not None:
                return route
        return self._default

    async def receive(self, message: Delivery | Batch | Retire) -> None:
        """Process one delivery (or a batch) and tell the pool the outcome."""
        assert self._pool is not None
        if type(message) is Delivery and self._left is None:  # the hot path
            tracing = _tracing.ACTIVE  # None: off, and nothing more to pay
            done = await (
                self._run(message)
                if tracing is None
                else tracing.process(self._run, message, self._system)
            )
            try:
                try:
                    self._pool.tell_nowait(done)  # no coroutine while there is room
                except MailboxFull:
                    await self._pool.tell(done)
            except ActorStopped:  # stopping: the consumer already returned the delivery
                self.log.debug("outcome.after_shutdown")
            return
        if isinstance(message, Retire):  # all it held before is done: recycle it now
            if self._left != 0:
                self._left = 0
                await self._pool.tell(Recycle(self.ref))
            return
        if self._left == 0:  # retiring: this one is for the next instance or another worker
            await self._pool.tell(Handback(message))
            return
        outcome: Outcome | BatchOutcomes
        if isinstance(message, Batch):
            outcome = await self._run_batch(message)
        else:
            tracing = _tracing.ACTIVE
            outcome = await (
                self._run(message)
                if tracing is None
                else tracing.process(self._run, message, self._system)
            )
        try:
            if self._left is not None:
                self._left -= 1
                if self._left == 0:  # ask first, so the pool sends no new work here
                    await self._pool.tell(Recycle(self.ref))
            await self._pool.tell(outcome)
        except ActorStopped:  # stopping: the consumer already returned the delivery
            self.log.debug("outcome.after_shutdown")

    async def _run(self, delivery: Delivery) -> Outcome:
        if delivery.handle.stale:  # its consumer is gone: the broker delivers it again
            self.log.info("delivery.skipped_stale", message_id=delivery.message.id)
            return Outcome(delivery, OutcomeKind.SETTLED, reason="its consumer is gone")
        message = delivery.message
        worker = self._worker_for(message) if self._routes else self._default
        if worker is None:
            known = ", ".join(sorted(self._routes)) or "none"
            reason = f"no handler for message type {message.message_type!r} (registered: {known})"
            return Outcome(delivery, OutcomeKind.DEAD_LETTER, reason=reason)
        timeout = worker.timeout
        manual = getattr(worker, "manual_ack", False)
        argument: Any = delivery if manual else message
        token = current_message.set(message)
        start = _clock()
        try:
            if timeout is None:
                await worker.process(argument)
            else:
                with anyio.fail_after(timeout):
                    await worker.process(argument)
        except TimeoutError as exc:
            reason = (
                f"timed out after {timeout} s" if timeout is not None else f"TimeoutError: {exc}"
            )
            return Outcome(delivery, _FAILED, exc, 0.0, reason, None, _clock() - start)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            return Outcome(delivery, _FAILED, exc, 0.0, reason, None, _clock() - start)
        except BaseException as exc:
            if isinstance(exc, self._cancelled | KeyboardInterrupt | SystemExit):
                raise
            reason = f"{type(exc).__name__}: {exc}"
            return Outcome(delivery, _FAILED, exc, 0.0, reason, None, _clock() - start)
        finally:
            current_message.reset(token)
        took = _clock() - start
        return (
            _manual_outcome(delivery, took)
            if manual
            else Outcome(delivery, _SUCCEEDED, None, 0.0, "", None, took)
        )

    async def _run_batch(self, batch: Batch) -> BatchOutcomes:
        """Run the batch handler; each delivery gets its own outcome.

        Returning means all succeeded, unless the handler returns a mapping of
        message ids to exceptions for the ones that failed; raising fails them all.
        """
        assert self._batch is not None
        handler, timeout = self._batch
        deliveries = batch.deliveries
        gone = {d.handle for d in deliveries if d.handle.stale}  # their consumer is lost
        messages = [d.message for d in deliveries if d.handle not in gone]
        failed: Mapping[str, BaseException] = {}
        error: BaseException | None = None
        start = _clock()
        if messages:
            try:
                if timeout is None:
                    failed = await handler(messages) or {}
                else:
                    with anyio.fail_after(timeout):
                        failed = await handler(messages) or {}
            except BaseException as exc:
                if isinstance(exc, self._cancelled | KeyboardInterrupt | SystemExit):
                    raise
                error = exc
        took = _clock() - start  # the whole batch's, for each of its messages

        def outcome(d: Delivery) -> Outcome:
            if d.handle in gone:
                return Outcome(d, OutcomeKind.SETTLED, reason="its consumer is gone")
            if error is not None:
                reason = f"batch failed: {type(error).__name__}: {error}"
                return Outcome(d, _FAILED, error, 0.0, reason, None, took)
            exc = failed.get(d.message.id)
            if exc is not None:
                reason = f"{type(exc).__name__}: {exc}"
                return Outcome(d, _FAILED, exc, 0.0, reason, None, took)
            return Outcome(d, _SUCCEEDED, None, 0.0, "", None, took)

        return BatchOutcomes(tuple(map(outcome, deliveries)))  # in the batch's order

    async def on_crash(self, message: Delivery | Batch | Retire | None, error: Exception) -> None:
        """Return the delivery in hand (requeue), so that it is never lost.

        Its attempt count goes up, so a message that keeps crashing workers is caught
        as poison by the retry stage.
        """
        if isinstance(message, Delivery | Batch) and self._pool is not None:
            reason = f"worker {self.path} crashed: {type(error).__name__}: {error}"
            returned: Outcome | BatchOutcomes
            if isinstance(message, Batch):
                returned = BatchOutcomes(
                    tuple(
                        Outcome(d, OutcomeKind.REQUEUE, error, reason=reason)
                        for d in message.deliveries
                    )
                )
            else:
                returned = Outcome(message, OutcomeKind.REQUEUE, error, reason=reason)
            with contextlib.suppress(ActorStopped):  # stopping: the consumer returned it
                self._pool.tell_nowait(returned)


def _manual_outcome(delivery: Delivery, duration: float) -> Outcome:
    """In manual mode the handler settles; returning without settling is a bug."""
    if delivery.handle.settled:
        return Outcome(delivery, OutcomeKind.SETTLED, duration=duration)
    reason = "manual ack: the handler returned without settling its delivery"
    return Outcome(delivery, OutcomeKind.DEAD_LETTER, reason=reason, duration=duration)
