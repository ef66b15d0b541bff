"""The topology of a pipeline: every child's name, place and neighbours, computed once.

`plan` turns `PipelineOptions` into a `Topology`, a frozen value that says which
stages there are and in which order, where each actor's deliveries and outcomes go,
and where the consumer lives; `tree` turns a topology into the supervision tree.
Nothing here runs: a topology is tested as a value.

Outcomes go back only through the stages that handle them (see `handles_outcomes`):
whether a stage does is decided from its factory when the topology is planned (a
`Stage` class, or a ``functools.partial`` of one; any other callable is assumed to),
and checked again on each stage made (`OutcomeRoute`).
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any

import attrs

from foxactors._errors import ConfigurationError
from foxactors._spec import ChildSpec, Restart
from foxactors.backends import Backend, IntakeHelpers, SharedConnection

from ._batch import BatchStage
from ._breaker import CircuitBreakerStage
from ._consumer import Consumer
from ._deadletters import DeadLetterActor
from ._intake import Intake
from ._options import BatchOption, PipelineOptions, StageFactory
from ._pipeline import Pipeline
from ._pool import Pool
from ._ratelimit import RateLimitStage
from ._retry import RetryStage
from ._stage import Stage, handles_outcomes
from ._tally import Tally
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
        handles_outcomes: Whether its stages handle outcomes (judged from the
            factory); if not, outcomes skip it on their way back.
        downstream: Path (relative to the stage) of the next actor towards the workers.
        upstream: Path (relative to the stage) of the actor its outcomes (including
            those it replies itself) go to: the nearest stage above that handles
            outcomes, or the consumer.
    """

    name: str
    factory: StageFactory = attrs.field(eq=False)  # a new partial at each plan
    handles_outcomes: bool
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
        pool_upstream: Where the pool sends its workers' outcomes: the innermost
            stage that handles outcomes, or the consumer.
        route: The actors outcomes pass on their way back, from the pool to the
            consumer (paths relative to the pipeline): the stages that handle
            outcomes, innermost first.
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

    def upstream_of(self, origin: str, handling: Collection[str]) -> str:
        """Where the outcomes of ``origin`` (a stage's name, or the pool) go.

        To the nearest stage above it among ``handling`` (names), or to the consumer.
        """
        names = [stage.name for stage in self.stages]
        above = names if origin == POOL else names[: names.index(origin)]
        target = next((name for name in reversed(above) if name in handling), self.consumer)
        return relative(origin, target)


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
    handling = {name for name, factory in factories if factory_handles_outcomes(factory)}
    # The way back is worked out by upstream_of, on a topology without it first.
    draft = Topology(
        consumer=consumer,
        consumer_downstream=relative(consumer, chain[1]),
        stages=tuple(
            StagePlace(
                name,
                factory,
                handles_outcomes=name in handling,
                downstream=relative(name, chain[position + 2]),
                upstream="",
            )
            for position, (name, factory) in enumerate(factories)
        ),
        pool_upstream="",
        route=(),
        connection=relative(consumer, f"{INTAKE}/{CONNECTION}") if shared_connection else None,
        dead_letters=relative(consumer, DEAD_LETTERS) if options.dead_letter_sinks else None,
    )
    return attrs.evolve(
        draft,
        stages=tuple(
            attrs.evolve(stage, upstream=draft.upstream_of(stage.name, handling))
            for stage in draft.stages
        ),
        pool_upstream=draft.upstream_of(POOL, handling),
        route=(POOL, *(name for name in reversed(chain[1:-1]) if name in handling), consumer),
    )


def factory_handles_outcomes(factory: StageFactory) -> bool:
    """Whether the stages ``factory`` makes handle outcomes, as far as can be told.

    A `Stage` class, or a ``functools.partial`` of one, is judged by the class (see
    `handles_outcomes`); any other callable is assumed to make one that does.
    """
    made: object = factory
    while isinstance(made, functools.partial):
        made = made.func
    if isinstance(made, type) and issubclass(made, Stage):
        return handles_outcomes(made)
    return True


class OutcomeRoute:
    """The way back at run time: the topology's, plus any stage found to handle outcomes.

    Each stage made is checked (`handles_outcomes` on the instance): one that was
    taken for a pass-through when planned, but handles outcomes, is put on the way
    back, so it still sees every outcome. The actors look the way back up when the
    first outcome goes back, after every stage was made (the consumer starts last);
    from then on it is fixed, and a stage found to handle outcomes later (made by a
    factory that changed its mind on a restart) fails to start.
    """

    def __init__(self, topology: Topology) -> None:
        self._topology = topology
        self._handling = {stage.name for stage in topology.stages if stage.handles_outcomes}
        self._fixed = False

    def found_handler(self, name: str) -> None:
        """Stage ``name`` turned out to handle outcomes: put it on the way back."""
        if name in self._handling:
            return
        if self._fixed:
            raise ConfigurationError(
                f"stage {name!r} handles outcomes, but its factory made a stage that did "
                "not before, and outcomes already skip it; make its factory a Stage class "
                "(or a functools.partial of one) that overrides on_outcome"
            )
        self._handling.add(name)

    def upstream(self, origin: str) -> str:
        """Where the outcomes of ``origin`` (a stage's name, or the pool) go."""
        self._fixed = True
        return self._topology.upstream_of(origin, self._handling)


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
    shared = isinstance(backend, SharedConnection)
    topology = plan(options, shared_connection=shared)
    route = OutcomeRoute(topology)
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
                batch=None if batch is None else (batch.handler, _batch_timeout(batch, options)),
                system=backend.name,
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
    children += [ChildSpec(actor.name, actor.factory) for actor in options.actors]
    children.append(
        ChildSpec(
            POOL,
            functools.partial(
                Pool,
                workers,
                upstream=functools.partial(route.upstream, POOL),
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
            functools.partial(_linked, place, route),
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
            tally=Tally(),  # one per spec: the counts outlive restarts of the consumer
        ),
        mailbox_size=mailbox,
        backoff=options.reconnect,
    )
    if not isinstance(backend, SharedConnection):
        children.append(consumer)
    else:  # a lost connection takes down the consumers that use it, and only them
        children.append(
            Intake.spec(
                INTAKE,
                [
                    ChildSpec(CONNECTION, backend.connection_actor(), backoff=options.reconnect),
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
            Pipeline,
            children,
            drain_timeout=options.drain_timeout,
            consumer=topology.consumer,
            stages=[place.name for place in topology.stages],
        ),
        restart=Restart.PERMANENT,
        shutdown=None,
    )


def _intake_actors(backend: Backend, queue: str) -> list[tuple[str, Any]]:
    """A backend's helper actors for its consumer (e.g. Redis lease keepers), if any."""
    return list(backend.intake_actors(queue)) if isinstance(backend, IntakeHelpers) else []


def _linked(place: StagePlace, route: OutcomeRoute) -> Stage:
    """Make the stage at ``place`` and tell it its neighbours."""
    stage = place.factory()
    if not isinstance(stage, Stage):
        raise ConfigurationError(f"middleware factory returned {stage!r}, which is not a Stage")
    if not place.handles_outcomes and handles_outcomes(stage):
        route.found_handler(place.name)
    stage.link(place.downstream, functools.partial(route.upstream, place.name))
    return stage


def _batch_timeout(batch: BatchOption, options: PipelineOptions) -> float | None:
    """A batch handler's own timeout, or the app's (`with_timeout`) when it set none."""
    return batch.timeout if batch.timeout is not None else options.timeout
