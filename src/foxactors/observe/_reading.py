"""`Reading`: one look at a running tree, everything metrics and health need.

A reading is taken when asked (a scrape, a health check), never on the hot path: the
tree's snapshot (states, restarts, mailboxes, each actor's `statistics()`), each
consumer's broker connection counts and how many messages its queue holds by state
(`Backend.queue_depth`, on every backend); the job counts of the stores given. Figures that need a
round trip to a broker or a store get a deadline, and are left out when it passes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import anyio
import attrs

from foxactors._cell import Cell
from foxactors._errors import ActorNotFound
from foxactors._logging import describe, logger
from foxactors._redact import secrets_of
from foxactors._snapshot import ActorSnapshot, take_snapshot
from foxactors.backends import Backend, ConnectionStatistics
from foxactors.pipeline import Consumer, Pipeline

#: Seconds a broker or store may take to answer a reading (queue depth, job counts).
READ_TIMEOUT = 2.0


@attrs.frozen
class Intake:
    """One consumer of the tree, with its broker's figures.

    Attributes:
        pipeline: Path of the pipeline it belongs to (its consumer's path if none).
        path: The consumer's path.
        queue: The queue it consumes.
        broker: The backend's name (``memory``, ``rabbitmq``, ``redis``).
        connection: The backend's connection counts, or None while the consumer
            does not run.
        queue_depth: Messages in the queue by state (``ready``, ``delayed``,
            ``in_flight``, ``dead``: `Backend.queue_depth`); empty while the consumer
            does not run, or when the broker did not answer in time.
        link: Path of the actor owning the broker connection it consumes on (a
            broker's intake), or None (a memory backend, a source of its own).
        seen_here: The states of ``queue_depth`` the broker counts only as this
            process sees them (`QueueStatistics.seen_here`: RabbitMQ's delayed and
            in flight).
    """

    pipeline: str
    path: str
    queue: str
    broker: str
    connection: ConnectionStatistics | None
    queue_depth: Mapping[str, int]
    link: str | None = None
    seen_here: frozenset[str] = frozenset()


@attrs.frozen
class Reading:
    """What a running tree looked like at one moment, for metrics and health.

    Attributes:
        snapshot: The tree's snapshot.
        intakes: Its consumers, in tree order.
        jobs: Jobs per state in the configured job stores (summed), if any.
        secrets: Passwords of the brokers' URLs, to scrub from anything shown.
    """

    snapshot: ActorSnapshot
    intakes: tuple[Intake, ...]
    jobs: Mapping[str, int]
    secrets: frozenset[str] = frozenset()


def root_of(cell: Cell) -> Cell:
    """The root cell of the tree ``cell`` lives in."""
    while cell.parent is not None:
        cell = cell.parent
    return cell


def _cells(cell: Cell) -> Iterator[Cell]:
    yield cell
    for record in list(cell.children.values()):
        yield from _cells(record.cell)


def _pipeline_of(cell: Cell) -> str:
    above = cell.parent
    while above is not None:
        if isinstance(above.instance, Pipeline):
            return above.path
        above = above.parent
    return cell.path


async def read(root: Cell, *, stores: Sequence[Any] = (), timeout: float = READ_TIMEOUT) -> Reading:
    """Take a `Reading` of the tree under ``root``.

    ``stores`` are job stores (anything with ``async counts()``) whose job counts
    per state are added up.
    """
    snapshot = take_snapshot(root)
    intakes: list[Intake] = []
    secrets: set[str] = set()
    for cell in _cells(root):
        consumer = cell.instance
        if not isinstance(consumer, Consumer):
            continue
        backend = consumer.backend
        secrets.update(secrets_of(str(getattr(backend, "url", ""))))
        snap = snapshot.find(cell.path)
        running = snap is not None and snap.statistics is not None
        stats = getattr(snap, "statistics", None)
        queue = str(getattr(stats, "queue", ""))
        depth, seen_here = await _queue_depth(backend, queue, timeout) if running else ({}, None)
        intakes.append(
            Intake(
                pipeline=_pipeline_of(cell),
                path=cell.path,
                queue=queue,
                broker=str(getattr(backend, "name", type(backend).__name__)),
                connection=backend.statistics() if running else None,
                queue_depth=depth,
                link=_link_of(cell, consumer),
                seen_here=seen_here or frozenset(),
            )
        )
    jobs = await _job_counts(stores, timeout)
    return Reading(snapshot, tuple(intakes), jobs, frozenset(secrets))


def _link_of(cell: Cell, consumer: Consumer) -> str | None:
    """The path of ``consumer``'s connection actor, if it has one (its sibling)."""
    relative = consumer.connection_actor
    if relative is None:
        return None
    try:
        return cell.resolve(relative).path
    except ActorNotFound:  # between restarts: where it will be again
        parent = cell.parent.path if cell.parent is not None else ""
        return f"{parent}/{relative.rpartition('/')[2]}"


#: The states of `QueueStatistics` a reading keeps (a broker's extra figures are not).
DEPTH_STATES = ("ready", "delayed", "in_flight", "dead")


async def _queue_depth(
    backend: Backend, queue: str, timeout: float
) -> tuple[Mapping[str, int], frozenset[str] | None]:
    """``backend.queue_depth(queue)`` as ``{state: count}``, and its ``seen_here``.

    Empty (and None) if it cannot be read.
    """
    if not queue:
        return {}, None
    try:
        with anyio.move_on_after(timeout):
            answer = await backend.queue_depth(queue)
            counts = {state: int(getattr(answer, state)) for state in DEPTH_STATES}
            return counts, type(answer).seen_here
    except Exception as exc:  # a reading goes on without what cannot be read
        _log_skipped("queue_depth", exc)
    return {}, None


async def _job_counts(stores: Sequence[Any], timeout: float) -> Mapping[str, int]:
    totals: dict[str, int] = {}
    for store in stores:
        try:
            with anyio.move_on_after(timeout):
                for state, count in (await store.counts()).items():
                    name = str(getattr(state, "value", state))
                    totals[name] = totals.get(name, 0) + int(count)
        except Exception as exc:
            _log_skipped("job_counts", exc)
    return totals


def _log_skipped(what: str, exc: BaseException) -> None:
    logger.debug("observe.reading_skipped", figure=what, error=describe(exc))
