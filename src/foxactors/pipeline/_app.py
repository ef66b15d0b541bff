"""`WorkerApp`: a builder that turns handlers and options into a supervision tree."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any, Self, TypeVar

import attrs
import structlog

from foxactors._errors import ActorError, ConfigurationError, RestartIntensityExceeded
from foxactors._lifecycle import ActorState, Exit
from foxactors._policy import Backoff
from foxactors._spec import ChildSpec, Restart
from foxactors._supervisor import Supervisor
from foxactors._system import run
from foxactors._validate import coerce_enum, require_int, require_timeout
from foxactors.backends import Backend, Source

from ._batch import BatchStage
from ._breaker import Breaker, CircuitBreakerStage
from ._consumer import STOP_INTAKE, Consumer
from ._deadletters import DeadLetterActor, DeadLetterSink
from ._intake import Intake
from ._pool import RETURN_PENDING, MemoryLimit, Pool, PoolStrategy, resident_memory
from ._ratelimit import RateLimitStage, TokenBucket
from ._retry import RetryPolicy, RetryStage
from ._stage import Stage
from ._worker import (
    BatchHandler,
    FunctionWorker,
    Handler,
    ManualHandler,
    Worker,
    WorkerActor,
    WorkerFactory,
    check_handler,
    worker_factory,
)

_logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("foxactors")

StageFactory = Callable[[], Stage]


class Pipeline(Supervisor):
    """The supervisor of one pipeline; stops it in a fixed, graceful sequence.

    Children, in start order: the pool (with its workers), the stages from the
    innermost out, the consumer. They are one_for_one: a crashed actor returns the
    delivery in hand (a crashed pool, the deliveries it held), so nobody else needs
    a restart; restarting the consumer would return every in-flight delivery and
    cause needless duplicates. A graceful stop: stop intake; return deliveries that
    no worker started; let in-flight work finish within ``drain_timeout`` and
    settle it; then stop the children in reverse order. The consumer stops first
    and returns whatever missed the deadline to the queue.
    """

    def __init__(
        self, children: list[ChildSpec], *, drain_timeout: float, consumer: str = "consumer"
    ) -> None:
        super().__init__(children, strategy="one_for_one", max_restarts=10, within=30)
        self._drain_timeout = drain_timeout
        self._consumer = consumer

    async def _restart(self, child: Any, exit: Exit) -> None:
        """Restart a child, unless it is the intake giving up (``give_up_after``).

        Then the pipeline fails with it, so that its parent decides; restarting the
        intake would only try the broker again at once.
        """
        if child.spec.id == "intake" and isinstance(exit.error, RestartIntensityExceeded):
            raise exit.error
        await super()._restart(child, exit)

    async def on_stop(self, exit: Exit) -> None:
        """Drain first (on a graceful stop), then stop the children."""
        if not exit.abnormal:
            await self._drain()
        await super().on_stop(exit)

    async def _drain(self) -> None:
        try:
            consumer = self.find(self._consumer)
            if consumer.state is not ActorState.RUNNING:  # e.g. waiting for its broker
                self.log.info("pipeline.drain_skipped", consumer=consumer.state.value)
                return
            source: Source = await consumer.ask(STOP_INTAKE, timeout=5)
            returned = await self.find("pool").ask(RETURN_PENDING, timeout=5)
        except ActorError as exc:
            self.log.warning("pipeline.drain_skipped", error=str(exc))
            return
        settled = await self.supervise_until(source.wait_settled, self._drain_timeout)
        self.log.info(
            "pipeline.drained",
            returned=returned,
            unsettled=source.unsettled,
            deadline_missed=not settled,
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
        self._name = name
        self._default: _Handler | None = None  # made into worker factories by build()
        self._routes: dict[str, _Handler] = {}
        self._concurrency = 8  # as Dramatiq: outcomes then reach shared actors in batches
        self._strategy = PoolStrategy.ROUND_ROBIN
        self._prefetch = 100
        self._retry: RetryPolicy | None = RetryPolicy()
        self._stages: list[tuple[str, StageFactory]] = []
        self._drain_timeout = 30.0
        self._timeout: float | None = None
        self._rate_limit: TokenBucket | None = None
        self._sinks: list[DeadLetterSink] = []
        self._max_messages: int | None = None
        self._memory: MemoryLimit | None = None
        self._batch: tuple[tuple[BatchHandler, float | None], int, float] | None = None
        self._bound: tuple[Backend, str] | None = None
        self._breaker: Breaker | None = None
        self._reconnect: Backoff | None = None
        self._give_up_after: int | None = None

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
        self._default = _handler(worker, timeout, manual_ack)
        return self

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
        message). The prefetch is raised to ``size`` if it is lower.
        """
        batch_stage = BatchStage(size, interval)  # validates size and interval
        check_handler(handler, "messages")
        FunctionWorker(handler, timeout=timeout)  # validates the handler and timeout
        self._batch = ((handler, timeout), batch_stage.size, batch_stage.interval)
        self._prefetch = max(self._prefetch, size)
        return self

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
        self._routes[message_type] = _handler(handler, timeout, manual_ack)
        return self

    def with_concurrency_limit(self, workers: int) -> Self:
        """Run ``workers`` worker actors: at most that many messages at once."""
        require_int("concurrency limit", workers, 1)
        self._concurrency = workers
        return self

    def with_strategy(self, strategy: PoolStrategy | str) -> Self:
        """Pick free workers by ``round_robin`` (default), ``random`` or ``least_loaded``."""
        self._strategy = coerce_enum(PoolStrategy, strategy, "strategy")
        return self

    def with_prefetch(self, prefetch: int) -> Self:
        """Allow at most ``prefetch`` unsettled deliveries (default 100)."""
        require_int("prefetch", prefetch, 1)
        self._prefetch = prefetch
        return self

    def with_retry(self, policy: RetryPolicy | None = None, **options: Any) -> Self:
        """Retry failures by ``policy`` (or by `RetryPolicy` keyword options).

        Raises:
            ConfigurationError: An unknown option (the message lists the accepted
                ones), or a policy and options together.
        """
        self._retry = _policy("with_retry", RetryPolicy, policy, options)
        return self

    def without_retry(self) -> Self:
        """Do not retry: a failure goes straight to the dead-letter queue."""
        self._retry = None
        return self

    def with_timeout(self, seconds: float | None) -> Self:
        """Default processing timeout for handlers that set none."""
        require_timeout(seconds)
        self._timeout = seconds
        return self

    def with_middleware(self, stage: StageFactory, *, name: str | None = None) -> Self:
        """Add a stage (a zero-argument callable returning a `Stage`), outermost first.

        Stages added here sit between the consumer and the retry stage, in order.
        """
        if not callable(stage):
            raise ConfigurationError(
                f"a middleware must be a callable returning a Stage, got {stage!r}"
            )
        stage_name = name or f"stage-{len(self._stages) + 1}"
        reserved = {"retry", "rate-limit", "breaker", "batch", "pool", "consumer", "dead-letters"}
        if stage_name in {n for n, _ in self._stages} | reserved:
            raise ConfigurationError(f"a stage named {stage_name!r} already exists; pass name=")
        self._stages.append((stage_name, stage))
        return self

    def with_circuit_breaker(self, failure_threshold: int = 5, open_timeout: float = 30.0) -> Self:
        """Open the circuit after ``failure_threshold`` failures in a row.

        While open, deliveries are deferred untried (no attempt counted) for
        ``open_timeout`` seconds; then one probe decides. See `CircuitBreakerStage`.
        """
        self._breaker = Breaker(failure_threshold, open_timeout)
        return self

    def with_rate_limit(self, rate: float, burst: int = 1) -> Self:
        """Start at most ``rate`` messages per second, in bursts of up to ``burst``."""
        self._rate_limit = TokenBucket(rate, burst)
        return self

    def with_dead_letter_sink(self, sink: DeadLetterSink) -> Self:
        """Also record every dead letter in ``sink`` (e.g. `JsonLinesSink`, `MemorySink`).

        The sinks are written by a dead-letter actor, started first and stopped last.
        """
        if not callable(getattr(sink, "write", None)):
            raise ConfigurationError(
                f"a dead-letter sink needs a write(letter) method, got {sink!r}"
            )
        self._sinks.append(sink)
        return self

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
        self._memory = None
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
            self._memory = MemoryLimit(
                int(max_memory_mb * 2**20), check_interval, measure or resident_memory
            )
        self._max_messages = max_messages
        return self

    def with_drain_timeout(self, seconds: float) -> Self:
        """How long a graceful stop waits for in-flight work (default 30 s)."""
        require_timeout(seconds)
        self._drain_timeout = seconds
        return self

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
        self._reconnect = _policy("with_reconnect", Backoff, backoff, options, "give_up_after")
        self._give_up_after = give_up_after
        return self

    def with_backend(self, backend: Backend, queue: str) -> Self:
        """Remember where to consume from, so that `build()` needs no arguments.

        ``foxactors run module:app`` accepts such a bound app directly.
        """
        self._bound = (backend, queue)
        return self

    def build(self, backend: Backend | None = None, queue: str | None = None) -> ChildSpec:
        """Return the pipeline as a `ChildSpec`, ready for `run` or `open_system`.

        Without arguments, uses what `with_backend` bound.
        """
        if backend is None or queue is None:
            if self._bound is None:
                raise ConfigurationError(
                    "build() needs a backend and a queue, or call with_backend() first"
                )
            backend, queue = backend or self._bound[0], queue or self._bound[1]
        if self._default is None and not self._routes and self._batch is None:
            raise ConfigurationError(
                "no handler: call add_worker(), register() or add_batch_worker() first"
            )
        if self._batch is not None and (self._default is not None or self._routes):
            raise ConfigurationError(
                "add_batch_worker() handles every message; do not combine it with "
                "add_worker() or register()"
            )
        default = None if self._default is None else self._default(default_timeout=self._timeout)
        routes = {name: h(default_timeout=self._timeout) for name, h in self._routes.items()}
        mailbox = 2 * self._prefetch + 16  # deliveries and outcomes of a full prefetch
        workers = [
            ChildSpec(
                f"worker-{i}",
                functools.partial(
                    WorkerActor,
                    default,
                    routes,
                    max_messages=self._max_messages,
                    batch=self._batch[0] if self._batch is not None else None,
                ),
                mailbox_size=mailbox,
            )
            for i in range(1, self._concurrency + 1)
        ]
        stages: list[tuple[str, StageFactory]] = list(self._stages)
        if self._retry is not None:
            stages.append(("retry", functools.partial(RetryStage, self._retry)))
        if self._rate_limit is not None:
            stages.append(("rate-limit", functools.partial(RateLimitStage, self._rate_limit)))
        if self._breaker is not None:
            stages.append(("breaker", functools.partial(CircuitBreakerStage, self._breaker)))
        if self._batch is not None:
            _, size, interval = self._batch
            stages.append(("batch", functools.partial(BatchStage, size, interval)))
        connection_actor = getattr(backend, "connection_actor", None)
        consumer_path = "intake/consumer" if connection_actor is not None else "consumer"
        names = [consumer_path, *(n for n, _ in stages), "pool"]
        children: list[ChildSpec] = []
        if self._sinks:
            sinks = list(self._sinks)
            children.append(
                ChildSpec(  # stopped last, and given the time to record every letter
                    "dead-letters",
                    functools.partial(DeadLetterActor, sinks),
                    mailbox_size=mailbox,
                    shutdown=None,
                )
            )
        children += [
            ChildSpec(
                "pool",
                functools.partial(
                    Pool,
                    workers,
                    upstream=f"../{names[-2]}",
                    strategy=self._strategy,
                    memory=self._memory,
                ),
                mailbox_size=mailbox,
                shutdown=None,
            )
        ]
        for position in range(len(stages) - 1, -1, -1):
            name, factory = stages[position]
            children.append(
                ChildSpec(
                    name,
                    functools.partial(
                        _linked, factory, f"../{names[position + 2]}", f"../{names[position]}"
                    ),
                    mailbox_size=mailbox,
                )
            )
        up = "../../" if connection_actor is not None else "../"
        consumer = ChildSpec(
            "consumer",
            functools.partial(
                Consumer,
                backend,
                queue,
                prefetch=self._prefetch,
                downstream=f"{up}{names[1]}",
                dead_letters=f"{up}dead-letters" if self._sinks else None,
                connection="../connection" if connection_actor is not None else None,
            ),
            mailbox_size=mailbox,
            backoff=self._reconnect,
        )
        if connection_actor is None:
            children.append(consumer)
        else:  # a lost connection takes down the consumers that use it, and only them
            children.append(
                Intake.spec(
                    "intake",
                    [
                        ChildSpec("connection", connection_actor(), backoff=self._reconnect),
                        consumer,
                        *(
                            ChildSpec(name, factory, backoff=self._reconnect)
                            for name, factory in _intake_actors(backend, queue)
                        ),
                    ],
                    strategy="rest_for_one",
                    max_restarts=self._give_up_after or 2**31,  # for ever, paced by backoff
                    within=60,
                    shutdown=None,
                )
            )
        return ChildSpec(
            self._name,
            functools.partial(
                Pipeline, children, drain_timeout=self._drain_timeout, consumer=consumer_path
            ),
            restart=Restart.PERMANENT,
            shutdown=None,
        )

    def run_with_backend(
        self, backend: Backend, queue: str, *, anyio_backend: str = "asyncio"
    ) -> Exit:
        """Build and run until SIGINT/SIGTERM (see `foxactors.run`)."""
        return run(self.build(backend, queue), backend=anyio_backend)


_Handler = Callable[..., WorkerFactory]  # takes default_timeout=

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


def _handler(handler: Any, timeout: float | None, manual_ack: bool) -> _Handler:
    """``worker_factory`` for ``handler`` at `build` time; bad input is refused now."""
    worker_factory(handler, timeout, manual_ack=manual_ack)
    return functools.partial(worker_factory, handler, timeout, manual_ack=manual_ack)


def _intake_actors(backend: Backend, queue: str) -> list[tuple[str, Any]]:
    """A backend's helper actors for its consumer (e.g. Redis lease keepers), if any."""
    helpers = getattr(backend, "intake_actors", None)
    return list(helpers(queue)) if helpers is not None else []


def _linked(factory: StageFactory, downstream: str, upstream: str) -> Stage:
    stage = factory()
    if not isinstance(stage, Stage):
        raise ConfigurationError(f"middleware factory returned {stage!r}, which is not a Stage")
    stage.link(downstream, upstream)
    return stage
