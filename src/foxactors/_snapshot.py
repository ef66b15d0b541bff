"""A read-only picture of a running tree, for health checks, tests and people."""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from ._cell import Cell
from ._lifecycle import ActorState
from ._logging import describe


@attrs.frozen
class ActorSnapshot:
    """One actor as it was when the snapshot was taken, with its children.

    Attributes:
        path: The actor's path, such as ``/app/pool/worker-3``.
        kind: ``"supervisor"`` or ``"actor"``.
        actor_class: Qualified name of the running (or last) instance's class.
        state: Its state.
        restarts: How many times it was restarted.
        mailbox_depth: Messages waiting in its mailbox.
        mailbox_capacity: Capacity of its mailbox.
        children: Snapshots of its children, in start order.
        statistics: What the actor reported of itself (`Actor.statistics`): for
            supervisors a `SupervisorStatistics`, for the pipeline's pool, circuit
            breaker and rate limiter their own; None for most actors, and while an
            actor is not running.
    """

    path: str
    kind: str
    actor_class: str
    state: ActorState
    restarts: int
    mailbox_depth: int
    mailbox_capacity: int
    children: tuple[ActorSnapshot, ...] = ()
    statistics: object | None = None

    def walk(self) -> Iterator[ActorSnapshot]:
        """Yield this snapshot and all below it, depth first, in start order."""
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, path: str) -> ActorSnapshot | None:
        """Return the snapshot of the actor at ``path``, or None."""
        return next((s for s in self.walk() if s.path == path), None)

    def render(self) -> str:
        """Return the tree as indented text, one actor per line."""
        lines: list[str] = []
        root_depth = self.path.count("/")
        for snap in self.walk():
            indent = "  " * (snap.path.count("/") - root_depth)
            lines.append(
                f"{indent}{snap.path.rsplit('/', 1)[-1]} [{snap.kind} {snap.actor_class}] "
                f"{snap.state.value} restarts={snap.restarts} "
                f"mailbox={snap.mailbox_depth}/{snap.mailbox_capacity}"
            )
        return "\n".join(lines)


def take_snapshot(cell: Cell) -> ActorSnapshot:
    """Return the snapshot of ``cell`` and its subtree."""
    instance = cell.instance
    return ActorSnapshot(
        path=cell.path,
        kind=instance.kind if instance is not None else "actor",
        actor_class=type(instance).__qualname__ if instance is not None else "-",
        state=cell.state,
        restarts=cell.restarts,
        mailbox_depth=len(cell.mailbox.items),
        mailbox_capacity=cell.mailbox.capacity,
        children=tuple(take_snapshot(c.cell) for c in list(cell.children.values())),
        statistics=statistics_of(cell),
    )


def statistics_of(cell: Cell) -> object | None:
    """What the running instance of ``cell`` reports of itself (None if none runs)."""
    instance = cell.instance
    if instance is None or not (cell.live and cell.started):
        return None
    try:
        return instance.statistics()
    except Exception as exc:
        cell.log.error("actor.statistics_failed", error=describe(exc), exc_info=exc)
        return None
