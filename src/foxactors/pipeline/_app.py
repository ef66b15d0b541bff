"""`WorkerApp`: a builder that turns handlers and options into a supervision tree."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, Self, TypeVar

import attrs

from foxactors._actor import Actor
from foxactors._errors import ConfigurationError
from foxactors._lifecycle import Exit
from foxactors._policy import Backoff
from foxactors._spec import ChildSpec
from foxactors._system import run
from foxactors._validate import coerce_enum, require_int, require_timeout
from foxactors.backends import Backend

from ._batch import BatchStage
from ._breaker import Breaker
from ._deadletters import DeadLetterSink
from ._options import (
    ActorOption,
    BatchOption,
    HandlerOption,
    MiddlewareOption,
    PipelineOptions,
    StageFactory,
)
from ._pool import MemoryLimit, PoolStrategy, resident_memory
from ._ratelimit import TokenBucket
from ._retry import RetryPolicy
from ._topology import RESERVED, tree
from ._worker import (
    BatchHandler,
    FunctionWorker,
    Handler,
    ManualHandler,
    Worker,
    check_handler,
    worker_factory,
)


class WorkerApp:
    """Build a worker application: handlers, a pool, stages, a consumer.

    Example:
        ```python
        app = (
            WorkerApp("emails")
            .add_worker(send_email)
            .with_concurrency_limit(8)
            .with_retry(max_retries=5, initial_backoff=2)
        )
        spec = app.build(backend, queue="emails")  # an ordinary ChildSpec
        ```
    """

    def __init__(self, name: str = "app") -> None:
        self._options = PipelineOptions(name=name)

    @property
    def options(self) -> PipelineOptions:
        """What this app was told so far, as a frozen `PipelineOptions`."""
        return self._options

    def _set(self, **changes: Any) -> Self:
        self._options = attrs.evolve(self._options, **changes)
        return self

    def add_worker(
        self,
        worker: Worker | type[Any] | Handler | ManualHandler,
        *,
        timeout: float | None = None,
        manual_ack: bool = False,
    ) -> Self:
        """Set the handler for messages (those without a registered type, if any).

        ``worker`` is an async function taking a `Message`, a `Worker`, or a `Worker`
        class: a class gets a fresh instance in every worker actor (and after every
        restart or recycling), so workers never share its state. ``timeout`` is for
        functions (a `Worker` has its own). With ``manual_ack=True`` the function
        receives the `Delivery` and settles ``delivery.handle`` itself; returning
        without settling dead-letters it with a reason saying so, and raising before
        settling is a failure as usual.

        Raises:
            ConfigurationError: ``worker`` cannot take a message: a function that is
                not ``async def handler(message)`` (one positional parameter), a
                `Worker` whose ``process`` is not ``async def process(self,
                message)``, or a class that cannot be called without arguments.
        """
        return self._set(handler=_handler(worker, timeout, manual_ack))

    def add_batch_worker(
        self,
        handler: BatchHandler,
        *,
        size: int = 100,
        interval: float = 1.0,
        timeout: float | None = None,
    ) -> Self:
        """Handle messages in batches: ``handler(messages)`` gets up to ``size`` at once.

        A batch is sent when full or ``interval`` seconds after its first message.
        Returning means every message succeeded, unless the handler returns a mapping
        ``{message.id: exception}`` of the ones that failed; raising fails them all.
        Each delivery is settled by its own outcome (retries and dead letters are per
        message). The prefetch is raised to ``size`` if it is lower. ``timeout``
        bounds each call (a whole batch); without one, the app's `with_timeout` does.
        """
        batch_stage = BatchStage(size, interval)  # validates size and interval
        check_handler(handler, "messages")
        FunctionWorker(handler, timeout=timeout)  # validates the handler and timeout
        return self._set(
            batch=BatchOption(handler, timeout, batch_stage.size, batch_stage.interval),
            prefetch=max(self._options.prefetch, size),
        )

    def register(
        self,
        message_type: str,
        handler: Worker | type[Any] | Handler | ManualHandler,
        *,
        timeout: float | None = None,
        manual_ack: bool = False,
    ) -> Self:
        """Route messages whose ``message_type`` is ``message_type`` to ``handler``.

        ``handler`` is what `add_worker` takes. A message whose type has no handler
        (and no `add_worker` default) goes to the dead-letter queue with a reason
        naming its type.
        """
        if not isinstance(message_type, str) or not message_type:
            raise ConfigurationError(
                f"message_type must be a non-empty string, got {message_type!r}"
            )
        routes = dict(self._options.routes)
        routes[message_type] = _handler(handler, timeout, manual_ack)
        return self._set(routes=tuple(routes.items()))

    def with_concurrency_limit(self, workers: int) -> Self:
        """Run ``workers`` worker actors: at most that many messages at once."""
        require_int("concurrency limit", workers, 1)
        return self._set(concurrency=workers)

    def with_strategy(self, strategy: PoolStrategy | str) -> Self:
        """Pick free workers by ``round_robin`` (default), ``random`` or ``least_loaded``."""
        return self._set(strategy=coerce_enum(PoolStrategy, strategy, "strategy"))

    def with_prefetch(self, prefetch: int) -> Self:
        """Allow at most ``prefetch`` unsettled deliveries (default 100)."""
        require_int("prefetch", prefetch, 1)
        return self._set(prefetch=prefetch)

    def with_retry(self, policy: RetryPolicy | None = None, **options: Any) -> Self:
        """Retry failures by ``policy`` (or by `RetryPolicy` keyword options).

        Raises:
            ConfigurationError: An unknown option (the message lists the accepted
                ones), or a policy and options together.
        """
        return self._set(retry=_policy("with_retry", RetryPolicy, policy, options))

    def without_retry(self) -> Self:
        """Do not retry: a failure goes straight to the dead-letter queue."""
        return self._set(retry=None)

    def with_timeout(self, seconds: float | None) -> Self:
        """Default processing timeout for handlers that set none."""
        require_timeout(seconds)
        return self._set(timeout=seconds)

    def with_middleware(self, stage: StageFactory, *, name: str | None = None) -> Self:
        """Add a stage (a zero-argument callable returning a `Stage`), outermost first.

        Stages added here sit between the consumer and the retry stage, in order.
        """
        if not callable(stage):
            raise ConfigurationError(
                f"a middleware must be a callable returning a Stage, got {stage!r}"
            )
        middleware = self._options.middleware
        stage_name = name or f"stage-{len(middleware) + 1}"
        if stage_name in {m.name for m in middleware} | RESERVED:
            raise ConfigurationError(f"a stage named {stage_name!r} already exists; pass name=")
        return self._set(middleware=(*middleware, MiddlewareOption(stage_name, stage)))

    def with_actor(self, name: str, factory: Callable[[], Actor[Any]]) -> Self:
        """Supervise one more actor beside the pipeline (e.g. a job reaper).

        It starts before the pool and the consumer and stops after them; if it
        crashes, it is restarted on its own (one_for_one), the pipeline untouched.

        Raises:
            ConfigurationError: A name already taken, or ``factory`` not callable.
        """
        if not callable(factory):
            raise ConfigurationError(
                f"with_actor() takes a callable that makes an Actor, got {factory!r}"
            )
        taken = {a.name for a in self._options.actors} | {m.name for m in self._options.middleware}
        if not isinstance(name, str) or not name or "/" in name:
            raise ConfigurationError(
                f"an actor name must be a non-empty string without '/', got {name!r}"
            )
        if name in taken | RESERVED:
            raise ConfigurationError(f"an actor named {name!r} already exists in the pipeline")
        return self._set(actors=(*self._options.actors, ActorOption(name, factory)))

    def with_circuit_breaker(self, failure_threshold: int = 5, open_timeout: float = 30.0) -> Self:
        """Open the circuit after ``failure_threshold`` failures in a row.

        While open, deliveries are deferred untried (no attempt counted) for
        ``open_timeout`` seconds; then one probe decides. See `CircuitBreakerStage`.
        """
        return self._set(breaker=Breaker(failure_threshold, open_timeout))

    def with_rate_limit(self, rate: float, burst: int = 1) -> Self:
        """Start at most ``rate`` messages per second, in bursts of up to ``burst``."""
        return self._set(rate_limit=TokenBucket(rate, burst))

    def with_dead_letter_sink(self, sink: DeadLetterSink) -> Self:
        """Also record every dead letter in ``sink`` (e.g. `JsonLinesSink`, `MemorySink`).

        The sinks are written by a dead-letter actor, started first and stopped last.
        """
        if not callable(getattr(sink, "write", None)):
            raise ConfigurationError(
                f"a dead-letter sink needs a write(letter) method, got {sink!r}"
            )
        return self._set(dead_letter_sinks=(*self._options.dead_letter_sinks, sink))

    def with_worker_recycling(
        self,
        max_messages: int | None = None,
        *,
        max_memory_mb: float | None = None,
        check_interval: float = 5.0,
        measure: Callable[[], int] | None = None,
    ) -> Self:
        """Recycle workers after ``max_messages`` each, or while memory is too high.

        ``max_memory_mb``: while the process uses more, workers are recycled one at a
        time. A recycled worker finishes what it holds first; the pool sends it no new work,
        stops it and starts a new instance on the same reference, which is not counted
        as a restart for the intensity. A `Worker` class given to `add_worker` is
        instantiated anew, so state its instances piled up (caches, leaks) goes with
        the old one. Memory is measured every ``check_interval`` seconds, as the
        process's resident set (Linux) unless ``measure`` (returning bytes) says
        otherwise; while it stays above the limit, one more worker is recycled per
        check, in turn. Workers share one process: recycling frees what the workers
        hold, not what the rest of the process does.
        """
        if max_messages is None and max_memory_mb is None:
            raise ConfigurationError("with_worker_recycling() needs max_messages or max_memory_mb")
        if max_messages is not None:
            require_int("max_messages", max_messages, 1)
        memory = None
        if max_memory_mb is not None:
            if (
                isinstance(max_memory_mb, bool)
                or not isinstance(max_memory_mb, int | float)
                or not 0 < max_memory_mb < math.inf
            ):
                raise ConfigurationError(
                    f"max_memory_mb must be a number of MiB > 0, got {max_memory_mb!r}"
                )
            if measure is None and not os.path.exists("/proc/self/statm"):
                raise ConfigurationError(
                    "max_memory_mb measures /proc/self/statm (Linux); pass measure= "
                    "(a function returning bytes in use) on this system"
                )
            memory = MemoryLimit(
                int(max_memory_mb * 2**20), check_interval, measure or resident_memory
            )
        return self._set(max_messages=max_messages, memory=memory)

    def with_drain_timeout(self, seconds: float) -> Self:
        """How long a graceful stop waits for in-flight work (default 30 s)."""
        require_timeout(seconds)
        return self._set(drain_timeout=seconds)

    def with_reconnect(
        self,
        backoff: Backoff | None = None,
        *,
        give_up_after: int | None = None,
        **options: Any,
    ) -> Self:
        """How the consumer comes back after losing its broker connection.

        A lost connection crashes the consumer (and, on brokers with a connection
        actor, that actor); they are restarted after a delay from ``backoff`` (or
        `Backoff` keyword options): exponential with jitter by default (0.1 s
        doubling to 10 s, +20%); for a fixed delay, set ``min_delay == max_delay``
        and ``random_factor=0``. For ever, unless ``give_up_after`` restarts happen
        within a minute: then the pipeline fails like any supervisor that gave up.
        A broker that cannot be reached when the pipeline starts is tried again
        the same way (the pipeline starts meanwhile); refused credentials fail the
        start at once.
        """
        if give_up_after is not None:
            require_int("give_up_after", give_up_after, 1)
        reconnect = _policy("with_reconnect", Backoff, backoff, options, "give_up_after")
        return self._set(reconnect=reconnect, give_up_after=give_up_after)

    def with_backend(self, backend: Backend, queue: str) -> Self:
        """Remember where to consume from, so that `build()` needs no arguments.

        ``foxactors run module:app`` accepts such a bound app directly.
        """
        return self._set(backend=backend, queue=queue)

    def build(self, backend: Backend | None = None, queue: str | None = None) -> ChildSpec:
        """Return the pipeline as a `ChildSpec`, ready for `run` or `open_system`.

        Without arguments, uses what `with_backend` bound.
        """
        options = self._options
        if backend is None or queue is None:
            if options.backend is None or options.queue is None:
                raise ConfigurationError(
                    "build() needs a backend and a queue, or call with_backend() first"
                )
            backend, queue = backend or options.backend, queue or options.queue
        if options.handler is None and not options.routes and options.batch is None:
            raise ConfigurationError(
                "no handler: call add_worker(), register() or add_batch_worker() first"
            )
        if options.batch is not None and (options.handler is not None or options.routes):
            raise ConfigurationError(
                "add_batch_worker() handles every message; do not combine it with "
                "add_worker() or register()"
            )
        return tree(options, backend, queue)

    def run_with_backend(
        self, backend: Backend, queue: str, *, anyio_backend: str = "asyncio"
    ) -> Exit:
        """Build and run until SIGINT/SIGTERM (see `foxactors.run`)."""
        return run(self.build(backend, queue), backend=anyio_backend)


_P = TypeVar("_P", RetryPolicy, Backoff)


def _policy(call: str, cls: type[_P], given: _P | None, options: dict[str, Any], *also: str) -> _P:
    """``given``, or a ``cls`` made of ``options``; an unknown option names the known ones.

    ``also`` are the call's other keywords, listed first among the accepted ones.
    """
    if given is not None:
        if not isinstance(given, cls):
            raise ConfigurationError(f"{call}() takes a {cls.__name__}, got {given!r}")
        if options:
            raise ConfigurationError(
                f"{call}() takes a {cls.__name__} or its options, not both; got "
                f"{given!r} and {', '.join(sorted(options))}"
            )
        return given
    accepted = [*also, *(field.alias for field in attrs.fields(cls) if field.init)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        which = "an unknown option" if len(unknown) == 1 else "unknown options"
        raise ConfigurationError(
            f"{call}() got {which} {', '.join(map(repr, unknown))}; it accepts: "
            f"{', '.join(accepted)}"
        )
    return cls(**options)


def _handler(handler: Any, timeout: float | None, manual_ack: bool) -> HandlerOption:
    """``handler`` as an option; bad input is refused now, not at `build` time."""
    worker_factory(handler, timeout, manual_ack=manual_ack)
    return HandlerOption(handler, timeout, manual_ack)
