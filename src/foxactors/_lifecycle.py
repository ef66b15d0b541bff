"""Value types that describe an actor's life: its state and how it ended."""

from __future__ import annotations

import enum

import attrs


class ActorState(enum.Enum):
    """Where an actor is in its life."""

    STARTING = "starting"
    """Its start hook is running (first start or restart)."""
    RUNNING = "running"
    """It handles messages."""
    RESTARTING = "restarting"
    """It crashed and waits for its restart delay; its mailbox still accepts messages."""
    STOPPING = "stopping"
    """It was asked to stop and drains its mailbox."""
    STOPPED = "stopped"
    """It stopped for good; its reference refuses messages."""


class ExitKind(enum.Enum):
    """Why one life (incarnation) of an actor ended."""

    NORMAL = "normal"
    """The actor stopped itself (``self.stop()``)."""
    SHUTDOWN = "shutdown"
    """Its supervisor or the system stopped it."""
    CRASHED = "crashed"
    """It raised: in its start hook, a handler or a background task."""
    KILLED = "killed"
    """It did not stop within its shutdown timeout and was cancelled, or the block
    around its system was cancelled from outside (then its ``on_stop`` runs)."""


@attrs.frozen
class Exit:
    """How an actor's life ended.

    Attributes:
        kind: The category of the ending.
        error: The exception, for ``CRASHED``; otherwise None.
    """

    kind: ExitKind
    error: BaseException | None = attrs.field(default=None, eq=False)

    @property
    def abnormal(self) -> bool:
        """True for a crash or a kill: what transient children are restarted for."""
        return self.kind is ExitKind.CRASHED or self.kind is ExitKind.KILLED

    def __str__(self) -> str:
        if self.error is None:
            return self.kind.value
        return f"{self.kind.value}: {type(self.error).__name__}: {self.error}"


NORMAL_EXIT = Exit(ExitKind.NORMAL)
SHUTDOWN_EXIT = Exit(ExitKind.SHUTDOWN)
KILLED_EXIT = Exit(ExitKind.KILLED)
