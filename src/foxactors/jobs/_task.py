"""`Task`: a function declared as a job type, its defaults, and its argument types."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import anyio.to_thread
import attrs

from foxactors._errors import ConfigurationError
from foxactors._message import priority_value
from foxactors._validate import require_int, require_timeout

from ._backoff import Backoff, check_backoff
from ._context import JobContext, SyncJobContext
from ._errors import JobArgumentsError

try:
    import pydantic
    import pydantic_core
    import typing_extensions
except ImportError as exc:  # pragma: no cover - the jobs extra is installed in the suite
    raise ImportError(
        "foxactors.jobs validates task arguments with pydantic: pip install 'foxactors[jobs]'"
    ) from exc

if TYPE_CHECKING:
    from ._client import EnqueueOptions, JobQueue
    from ._handle import JobHandle

P = ParamSpec("P")
R = TypeVar("R")


@attrs.frozen
class TaskOptions:
    """A task's defaults; each enqueue may override queue, priority and max attempts.

    Attributes:
        name: The job type: what the worker routes on (``message_type``).
        queue: The queue its jobs go to.
        priority: 0 (low) to 9 (critical); see `foxactors.Priority`.
        max_attempts: Attempts before a job goes dead (1: never retried).
        timeout: Seconds an attempt may run (None: no limit); past it, the attempt fails.
        retry_on: Exceptions that are retried; any other goes dead at once.
        backoff: Seconds before attempt ``n + 1`` after attempt ``n`` failed.
    """

    name: str
    queue: str
    priority: int
    max_attempts: int
    timeout: float | None
    retry_on: tuple[type[BaseException], ...]
    backoff: Backoff


def task_options(
    *,
    name: str,
    queue: str,
    priority: object,
    max_attempts: int,
    timeout: float | None,
    retry_on: object,
    backoff: object,
) -> TaskOptions:
    """Check and freeze a task's options (each bad value named in its error)."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a task name must be a non-empty string, got {name!r}")
    if not isinstance(queue, str) or not queue:
        raise ConfigurationError(f"a task's queue must be a non-empty string, got {queue!r}")
    require_int("max_attempts", max_attempts, 1)
    require_timeout(timeout)
    kinds = (retry_on,) if isinstance(retry_on, type) else retry_on
    if not isinstance(kinds, tuple | list) or not all(
        isinstance(k, type) and issubclass(k, BaseException) for k in kinds
    ):
        raise ConfigurationError(
            f"retry_on must be an exception class or a tuple of them, got {retry_on!r}"
        )
    return TaskOptions(
        name,
        queue,
        priority_value(priority),
        max_attempts,
        timeout,
        tuple(kinds),
        check_backoff(backoff),
    )


class Signature:
    """A task function's parameters as a pydantic-validated shape, checked at declaration.

    Arguments are validated (and converted to JSON) at enqueue, and validated again
    (and converted back: a ``datetime`` argument arrives as a ``datetime``) at the worker.
    """

    def __init__(self, func: Callable[..., Any], name: str) -> None:
        self.name = name
        try:
            hints = typing.get_type_hints(func)
        except Exception as exc:  # NameError, TypeError: an annotation that does not resolve
            raise ConfigurationError(
                f"task {name!r}: its annotations cannot be resolved ({exc}); import the "
                "types they name at module level"
            ) from None
        signature = inspect.signature(func)
        parameters = list(signature.parameters.values())
        self.takes_context = bool(parameters) and _is_context(parameters[0], hints)
        if self.takes_context:
            parameters = parameters[1:]
        fields: dict[str, Any] = {}
        for parameter in parameters:
            if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                raise ConfigurationError(
                    f"task {name!r}: parameter {parameter.name!r} is {parameter.kind.description}"
                    "; a task takes named parameters only (their values are stored as JSON)"
                )
            kind = hints.get(parameter.name, Any)
            optional = parameter.default is not parameter.empty
            fields[parameter.name] = typing_extensions.NotRequired[kind] if optional else kind
        self.parameters = signature.replace(parameters=parameters)
        self._names = frozenset(fields)
        self._required = frozenset(
            parameter.name for parameter in parameters if parameter.default is parameter.empty
        )
        shape = typing_extensions.TypedDict(f"{name}_arguments", fields)  # type: ignore[misc]
        self._arguments: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(shape)
        returns = hints.get("return", Any)
        self._result = None if returns in (None, type(None)) else pydantic.TypeAdapter(returns)

    def encode(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Bind, validate and convert arguments to JSON-ready data.

        Raises:
            JobArgumentsError: They do not fit the signature; the message names each field.
        """
        if not args and type(kwargs) is dict and self._required <= kwargs.keys() <= self._names:
            arguments = kwargs  # what binding would give: skip it, a quarter of the cost
        else:
            try:
                arguments = self.parameters.bind(*args, **kwargs).arguments
            except TypeError as exc:
                raise JobArgumentsError(f"task {self.name!r}{self.parameters}: {exc}") from None
        try:
            valid = self._arguments.validate_python(arguments)
            return self._arguments.dump_python(valid, mode="json")  # type: ignore[no-any-return]
        except pydantic.ValidationError as exc:
            raise JobArgumentsError(_explain(self.name, exc)) from None
        except pydantic_core.PydanticSerializationError as exc:
            raise JobArgumentsError(
                f"task {self.name!r}: arguments cannot be stored: {exc}"
            ) from None

    def decode(self, payload: object) -> dict[str, Any]:
        """Validate stored arguments and convert them back to their declared types.

        Raises:
            JobArgumentsError: They do not fit (changed signature, or a hand-made message).
        """
        try:
            decoded: dict[str, Any] = self._arguments.validate_python(payload)
            return decoded
        except pydantic.ValidationError as exc:
            raise JobArgumentsError(_explain(self.name, exc)) from None

    def encode_result(self, value: object) -> Any:
        """The result as JSON-ready data (a model or datetime converted by its type)."""
        if self._result is None:
            return value
        return self._result.dump_python(value, mode="json")

    def decode_result(self, value: object) -> Any:
        """A stored result converted back to the declared return type."""
        if self._result is None or value is None:
            return value
        return self._result.validate_python(value)


def _is_context(parameter: inspect.Parameter, hints: Mapping[str, Any]) -> bool:
    kind = hints.get(parameter.name)
    if isinstance(kind, type) and issubclass(kind, JobContext):
        return True
    return kind is None and parameter.name in {"ctx", "context"}


def _explain(name: str, error: pydantic.ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        problems.append(f"{where}: {item['msg']} (got {item.get('input')!r})")
    return f"task {name!r}: arguments do not fit its signature: " + "; ".join(problems)


class Task(Generic[P, R]):
    """A function registered as a job type with `JobQueue.task`; enqueue it from anywhere.

    Example:
        ```python
        @jobs.task(queue="emails", priority="high", max_attempts=5)
        async def send_email(ctx: JobContext, to: str, subject: str) -> str:
            await ctx.progress(50, "rendered")
            return "sent"

        handle = await send_email.enqueue("ada@example.com", subject="hi")
        print(await handle.result(timeout=10))
        ```
    """

    def __init__(self, func: Callable[..., Any], options: TaskOptions, jobs: JobQueue) -> None:
        self.func = func
        self.defaults = options
        """The task's defaults (`TaskOptions`); `options` chooses per enqueue."""
        self.jobs = jobs
        self.signature = Signature(func, options.name)
        self.is_async = inspect.iscoroutinefunction(func)
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    @property
    def name(self) -> str:
        """The job type."""
        return self.defaults.name

    @property
    def queue(self) -> str:
        """The queue its jobs go to by default."""
        return self.defaults.queue

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """Validate the arguments and enqueue a job with the task's defaults.

        Raises:
            JobArgumentsError: The arguments do not fit; nothing was enqueued.
            BackendError: The broker refused or could not be reached; nothing was kept.
        """
        return await self.jobs.enqueue_encoded(self, self.signature.encode(args, kwargs), None)

    def options(
        self,
        *,
        delay: float | None = None,
        run_at: Any = None,
        priority: object = None,
        key: str | None = None,
        unique: bool = False,
        tenant: str | None = None,
        max_attempts: int | None = None,
        queue: str | None = None,
    ) -> BoundTask[P, R]:
        """This task with options for the next enqueue: ``task.options(delay=60).enqueue(...)``.

        Args:
            delay: Seconds from now before it may run.
            run_at: An aware `datetime` when it may run (not with ``delay``).
            priority: 0-9 or a level name (`foxactors.Priority`), over the task's.
            key: An idempotency key: while a job of the same tenant with this key is
                live or kept, enqueueing again returns that job instead.
            unique: With ``key``: raise `JobAlreadyExists` instead of returning it.
            tenant: Whose job it is.
            max_attempts: Over the task's.
            queue: Over the task's (a worker of that queue must run this task).
        """
        from ._client import enqueue_options  # noqa: PLC0415 - the client imports this module

        chosen = enqueue_options(
            delay=delay,
            run_at=run_at,
            priority=priority,
            key=key,
            unique=unique,
            tenant=tenant,
            max_attempts=max_attempts,
            queue=queue,
        )
        return BoundTask(self, chosen)

    async def enqueue_many(self, calls: Iterable[Mapping[str, Any]]) -> list[JobHandle[R]]:
        """Enqueue one job per mapping of keyword arguments, in as few round trips as it can.

        Every call is validated before anything is enqueued.
        """
        payloads = [self.signature.encode((), call) for call in calls]
        return await self.jobs.enqueue_many_encoded(self, payloads, None)

    async def call(self, ctx: JobContext, arguments: Mapping[str, Any], limiter: Any) -> Any:
        """Run the function for one attempt (a sync one on a worker thread)."""
        if self.is_async:
            if self.signature.takes_context:
                return await self.func(ctx, **arguments)
            return await self.func(**arguments)
        run = functools.partial(self.func, ctx, **arguments)
        if not self.signature.takes_context:
            run = functools.partial(self.func, **arguments)
        try:  # a timeout abandons the thread (threads cannot be stopped): its result is lost
            return await anyio.to_thread.run_sync(
                run, limiter=limiter, abandon_on_cancel=self.defaults.timeout is not None
            )
        except anyio.get_cancelled_exc_class():
            ctx._cancelled()
            raise

    def context_class(self) -> type[JobContext]:
        """The context class its function gets: `SyncJobContext` for a plain ``def``."""
        return JobContext if self.is_async else SyncJobContext

    def __repr__(self) -> str:
        return f"<Task {self.name!r} queue={self.queue!r}>"


class BoundTask(Generic[P, R]):
    """A task with options chosen for its next enqueue (see `Task.options`)."""

    def __init__(self, task: Task[P, R], options: EnqueueOptions) -> None:
        self.task = task
        self.chosen = options

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """Validate the arguments and enqueue with the chosen options."""
        payload = self.task.signature.encode(args, kwargs)
        return await self.task.jobs.enqueue_encoded(self.task, payload, self.chosen)

    async def enqueue_many(self, calls: Iterable[Mapping[str, Any]]) -> list[JobHandle[R]]:
        """`Task.enqueue_many` with the chosen options (a key applies to one job only)."""
        payloads = [self.task.signature.encode((), call) for call in calls]
        return await self.task.jobs.enqueue_many_encoded(self.task, payloads, self.chosen)


TaskFunction = Callable[..., Awaitable[Any]] | Callable[..., Any]
