"""`PipelineOptions`: what a `WorkerApp` was told, as one frozen value.

The option methods of `WorkerApp` check their arguments where they are called and
record them here (``attrs.evolve``); `build()` turns the options into a topology
and the topology into a supervision tree (see ``_topology.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from foxactors._actor import Actor
from foxactors._policy import Backoff
from foxactors.backends import Backend

from ._breaker import Breaker
from ._deadletters import DeadLetterSink
from ._pool import MemoryLimit, PoolStrategy
from ._ratelimit import TokenBucket
from ._retry import RetryPolicy
from ._stage import Stage
from ._worker import BatchHandler, WorkerFactory, worker_factory

#: Makes a middleware stage: a `Stage` subclass, a ``functools.partial`` of one, or
#: any callable with no arguments returning a `Stage`.
StageFactory = Callable[[], Stage]


@attrs.frozen
class HandlerOption:
    """A handler as given to `WorkerApp.add_worker` or `WorkerApp.register`.

    Attributes:
        handler: An async function, a `Worker`, or a `Worker` class.
        timeout: The function's processing timeout, if given.
        manual_ack: Whether the function settles its delivery itself.
    """

    handler: Any
    timeout: float | None = None
    manual_ack: bool = False

    def factory(self, default_timeout: float | None) -> WorkerFactory:
        """How each worker actor gets its `Worker`; ``default_timeout`` if it sets none."""
        return worker_factory(
            self.handler, self.timeout, manual_ack=self.manual_ack, default_timeout=default_timeout
        )


@attrs.frozen
class BatchOption:
    """A batch handler as given to `WorkerApp.add_batch_worker`.

    Attributes:
        handler: Takes a list of messages.
        timeout: Its processing timeout per batch, if given.
        size: Most messages in a batch.
        interval: Seconds after its first message that a batch goes on anyway.
    """

    handler: BatchHandler
    timeout: float | None
    size: int
    interval: float


@attrs.frozen
class MiddlewareOption:
    """A stage added with `WorkerApp.with_middleware`.

    Attributes:
        name: The stage's actor name.
        factory: Makes the stage (see `StageFactory`).
    """

    name: str
    factory: StageFactory


@attrs.frozen
class ActorOption:
    """An actor added with `WorkerApp.with_actor`, supervised beside the pipeline.

    Attributes:
        name: The actor's name.
        factory: Makes the actor (a zero-argument callable).
    """

    name: str
    factory: Callable[[], Actor[Any]]


@attrs.frozen
class PipelineOptions:
    """Everything a `WorkerApp` was told, checked; read it as ``app.options``.

    Each option method of `WorkerApp` checks its arguments and records a new value
    of this class, so an option refused with a `ConfigurationError` changes nothing.

    Attributes:
        name: The pipeline supervisor's name.
        handler: The handler of messages without a registered type (`add_worker`).
        routes: ``(message_type, handler)`` pairs, in the order first registered.
        batch: The batch handler (`add_batch_worker`), if any.
        concurrency: Worker actors (default 8).
        strategy: How the pool picks free workers.
        prefetch: Most unsettled deliveries (default 100).
        timeout: Processing timeout for handlers that set none.
        retry: The retry policy; None: failures are dead-lettered at once.
        middleware: The user's stages, outermost first.
        rate_limit: The rate limiter's bucket, if any.
        breaker: The circuit breaker, if any.
        dead_letter_sinks: Where dead letters are recorded besides the backend.
        max_messages: Messages after which a worker is recycled, if any.
        memory: The memory limit that recycles workers, if any.
        drain_timeout: Seconds a graceful stop waits for in-flight work (default 30).
        reconnect: The consumer's restart backoff after a lost connection; None:
            the supervisor's default.
        give_up_after: Reconnects within a minute after which the pipeline fails.
        backend: The backend bound by `with_backend`, if any.
        queue: The queue bound by `with_backend`, if any.
        actors: Actors supervised beside the pipeline (`with_actor`).
    """

    name: str = "app"
    handler: HandlerOption | None = None
    routes: tuple[tuple[str, HandlerOption], ...] = ()
    batch: BatchOption | None = None
    concurrency: int = 8  # as Dramatiq: outcomes then reach shared actors in batches
    strategy: PoolStrategy = PoolStrategy.ROUND_ROBIN
    prefetch: int = 100
    timeout: float | None = None
    retry: RetryPolicy | None = attrs.field(factory=RetryPolicy)
    middleware: tuple[MiddlewareOption, ...] = ()
    rate_limit: TokenBucket | None = None
    breaker: Breaker | None = None
    dead_letter_sinks: tuple[DeadLetterSink, ...] = ()
    max_messages: int | None = None
    memory: MemoryLimit | None = None
    drain_timeout: float = 30.0
    reconnect: Backoff | None = None
    give_up_after: int | None = None
    backend: Backend | None = None
    queue: str | None = None
    actors: tuple[ActorOption, ...] = ()
