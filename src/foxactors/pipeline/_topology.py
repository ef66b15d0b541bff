"""The topology of a pipeline: every child's name, place and neighbours, computed once.

`plan` turns `PipelineOptions` into a `Topology`, a frozen value that says which
stages there are and in which order, where each actor's deliveries and outcomes go,
and where the consumer lives; `tree` turns a topology into the supervision tree.
Nothing here runs: a topology is tested as a value.
"""

from __future__ import annotations

import functools
from typing import Any

import attrs

from foxactors._errors import ConfigurationError
from foxactors._spec import ChildSpec, Restart
from foxactors.backends._base import Backend

from ._batch import BatchStage
from ._breaker import CircuitBreakerStage
from ._consumer import Consumer
from ._deadletters import DeadLetterActor
from ._intake import Intake
from ._options import PipelineOptions, StageFactory
from ._pipeline import Pipeline
from ._pool import Pool
from ._ratelimit import RateLimitStage
from ._retry import RetryStage
from ._stage import Stage
from ._worker import WorkerActor

CONSUMER = "consumer"
POOL = "pool"
INTAKE = "intake"
CONNECTION = "connection"
DEAD_LETTERS = "dead-letters"
#: Names of the children `WorkerApp` makes itself; middleware may not take them.
RESERVED = frozenset({"retry", "rate-limit", "breaker", "batch", POOL, CONSUMER, DEAD_LETTERS})


@attrs.frozen
class StagePlace:
    """A stage in the topology.

    Attributes:
        name: Its actor name, a child of the pipeline supervisor.
        factory: Makes the stage (not compared: two plans of the same options are equal).
        downstream: Path (relative to the stage) of the next actor towards the workers.
        upstream: Path (relative to the stage) of the actor its outcomes go to.
    """

    name: str
    factory: StageFactory = attrs.field(eq=False)  # a new partial at each plan
    downstream: str
    upstream: str


@attrs.frozen
class Topology:
    """Where each actor of a pipeline lives and where its messages go.

    Paths without a leading ``..`` are relative to the pipeline supervisor; the
    others are relative to the actor that uses them, as `Actor.find` takes them.

    Attributes:
        consumer: The consumer's path: ``consumer``, or ``intake/consumer`` on a
            broker whose consumer shares a connection owned by an actor.
        consumer_downstream: Where the consumer sends deliveries (the outermost
            stage, or the pool).
        stages: The stages, outermost (nearest the consumer) first.
        pool_upstream: Where the pool sends its workers' outcomes.
        route: The actors outcomes pass on their way back, from the pool to the
            consumer (paths relative to the pipeline).
        connection: Where the consumer finds the connection actor, if any.
        dead_letters: Where the consumer records dead letters, if sinks were given.
    """

    consumer: str
    consumer_downstream: str
    stages: tuple[StagePlace, ...]
    pool_upstream: str
    route: tuple[str, ...]
    connection: str | None
    dead_letters: str | None


def stage_factories(options: PipelineOptions) -> list[tuple[str, StageFactory]]:
    """The stages ``options`` ask for, outermost first: the user's, then the built-ins."""
    stages: list[tuple[str, StageFactory]] = [(m.name, m.factory) for m in options.middleware]
    if options.retry is not None:
        stages.append(("retry", functools.partial(RetryStage, options.retry)))
    if options.rate_limit is not None:
        stages.append(("rate-limit", functools.partial(RateLimitStage, options.rate_limit)))
    if options.breaker is not None:
        stages.append(("breaker", functools.partial(CircuitBreakerStage, options.breaker)))
    if options.batch is not None:
        batch = options.batch
        stages.append(("batch", functools.partial(BatchStage, batch.size, batch.interval)))
    return stages


def plan(options: PipelineOptions, *, shared_connection: bool) -> Topology:
    """The topology of a pipeline built from ``options``.

    ``shared_connection``: whether the backend's consumer uses a connection owned
    by an actor (then the consumer and that actor live in an ``intake`` subtree).
    """
    factories = stage_factories(options)
    consumer = f"{INTAKE}/{CONSUMER}" if shared_connection else CONSUMER
    chain = [consumer, *(name for name, _ in factories), POOL]  # outermost first
    stages = tuple(
        StagePlace(
            name,
            factory,
            downstream=relative(name, chain[position + 2]),
            upstream=relative(name, chain[position]),
        )
        for position, (name, factory) in enumerate(factories)
    )
    return Topology(
        consumer=consumer,
        consumer_downstream=relative(consumer, chain[1]),
        stages=stages,
        pool_upstream=relative(POOL, chain[-2]),
        route=tuple(reversed(chain)),
        connection=relative(consumer, f"{INTAKE}/{CONNECTION}") if shared_connection else None,
        dead_letters=relative(consumer, DEAD_LETTERS) if options.dead_letter_sinks else None,
    )


def relative(origin: str, target: str) -> str:
    """The path from the actor at ``origin`` to the one at ``target`` (both in the pipeline).

    ``..`` is the parent: from ``intake/consumer``, ``intake/connection`` is
    ``../connection`` and ``retry`` is ``../../retry``.
    """
    parent, there = origin.split("/")[:-1], target.split("/")
    common = 0
    while common < min(len(parent), len(there) - 1) and parent[common] == there[common]:
        common += 1
    return "../" * (len(parent) - common + 1) + "/".join(there[common:])


def tree(options: PipelineOptions, backend: Backend, queue: str) -> ChildSpec:
    """The supervision tree of a pipeline: the options' topology, made of child specs."""
    connection_actor = getattr(backend, "connection_actor", None)
    topology = plan(options, shared_connection=connection_actor is not None)
    mailbox = 2 * options.prefetch + 16  # deliveries and outcomes of a full prefetch
    batch = options.batch
    default = None if options.handler is None else options.handler.factory(options.timeout)
    routes = {name: h.factory(options.timeout) for name, h in options.routes}
    workers = [
        ChildSpec(
            f"worker-{i}",
            functools.partial(
                WorkerActor,
                default,
                routes,
                max_messages=options.max_messages,
                batch=None if batch is None else (batch.handler, batch.timeout),
            ),
            mailbox_size=mailbox,
        )
        for i in range(1, options.concurrency + 1)
    ]
    children: list[ChildSpec] = []
    if options.dead_letter_sinks:
        children.append(
            ChildSpec(  # stopped last, and given the time to record every letter
                DEAD_LETTERS,
                functools.partial(DeadLetterActor, list(options.dead_letter_sinks)),
                mailbox_size=mailbox,
                shutdown=None,
            )
        )
    children.append(
        ChildSpec(
            POOL,
            functools.partial(
                Pool,
                workers,
                upstream=topology.pool_upstream,
                strategy=options.strategy,
                memory=options.memory,
            ),
            mailbox_size=mailbox,
            shutdown=None,
        )
    )
    children += [  # started innermost first
        ChildSpec(
            place.name,
            functools.partial(_linked, place.factory, place.downstream, place.upstream),
            mailbox_size=mailbox,
        )
        for place in reversed(topology.stages)
    ]
    consumer = ChildSpec(
        CONSUMER,
        functools.partial(
            Consumer,
            backend,
            queue,
            prefetch=options.prefetch,
            downstream=topology.consumer_downstream,
            dead_letters=topology.dead_letters,
            connection=topology.connection,
        ),
        mailbox_size=mailbox,
        backoff=options.reconnect,
    )
    if connection_actor is None:
        children.append(consumer)
    else:  # a lost connection takes down the consumers that use it, and only them
        children.append(
            Intake.spec(
                INTAKE,
                [
                    ChildSpec(CONNECTION, connection_actor(), backoff=options.reconnect),
                    consumer,
                    *(
                        ChildSpec(name, factory, backoff=options.reconnect)
                        for name, factory in _intake_actors(backend, queue)
                    ),
                ],
                strategy="rest_for_one",
                max_restarts=options.give_up_after or 2**31,  # for ever, paced by backoff
                within=60,
                shutdown=None,
            )
        )
    return ChildSpec(
        options.name,
        functools.partial(
            Pipeline, children, drain_timeout=options.drain_timeout, consumer=topology.consumer
        ),
        restart=Restart.PERMANENT,
        shutdown=None,
    )


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
