"""`AckHandle`: the one way to settle a delivery, exactly once."""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Hashable
from typing import Protocol

from ._errors import SettlementError
from ._validate import require_seconds


class Decision(enum.Enum):
    """How a delivery was settled."""

    ACK = "ack"
    REQUEUE = "requeue"
    RETRY = "retry"
    DEFER = "defer"
    DEAD_LETTER = "dead_letter"


_ACK = Decision.ACK  # hot path: a global is cheaper than an enum lookup


class Settler(Protocol):
    """What a backend's consumer implements so that handles can settle with it."""

    @property
    def live(self) -> bool:
        """True until the consumer is closed or loses its connection."""

    def settle(self, handle: AckHandle, decision: Decision, delay: float, reason: str) -> bool:
        """Apply ``decision``; return False (and log) if the handle is stale."""

    def dropped(self, handle: AckHandle) -> None:
        """A handle was garbage-collected unsettled: report it and return its delivery."""


class AckHandle:
    """Settles one delivery exactly once: ack, requeue, retry or defer, or dead-letter.

    A second settlement raises `SettlementError` and applies nothing. A handle
    carries the generation of the consumer (connection or channel) it came from: once
    that consumer is gone, settling is a logged no-op that returns False, and the
    broker redelivers the message. A handle dropped unsettled is reported and its
    delivery returned to the queue.

    Attributes:
        tag: The backend's identifier of the delivery.
        generation: The generation of the consumer that received it.
        decision: How it was settled, or None while unsettled.
        applied: Whether that settlement reached its consumer (False until settled,
            and for one made after the consumer was gone: the broker delivers the
            message again).
    """

    __slots__ = ("__weakref__", "_settler", "applied", "decision", "generation", "tag")

    def __init__(self, settler: Settler, tag: Hashable, generation: int) -> None:
        self._settler = settler
        self.tag = tag
        self.generation = generation
        self.decision: Decision | None = None
        self.applied = False

    @property
    def settled(self) -> bool:
        """True once a decision was made."""
        return self.decision is not None

    @property
    def stale(self) -> bool:
        """True if unsettled but its consumer is gone (closed, or its connection lost).

        Settling it would be a logged no-op; the delivery is back with the broker,
        which delivers it again. Work on it is wasted, so workers skip it.
        """
        return self.decision is None and not self._settler.live

    def ack(self) -> bool:
        """Acknowledge: the message is done. Returns False if the handle is stale."""
        return self._settle(_ACK, 0.0, "")

    def requeue(self) -> bool:
        """Return the message to its queue at once, to be delivered again."""
        return self._settle(Decision.REQUEUE, 0.0, "")

    def retry(self, delay: float) -> bool:
        """Deliver the message again after ``delay`` seconds (attempt count goes up).

        The delay is held by the backend (a delayed queue), never by keeping the
        delivery open.
        """
        return self._settle(Decision.RETRY, require_seconds("retry delay", delay), "")

    def defer(self, delay: float) -> bool:
        """Deliver the message again after ``delay`` seconds without counting an attempt.

        For messages that were not tried at all (a circuit breaker is open): the
        next delivery has the same attempt number as this one.
        """
        return self._settle(Decision.DEFER, require_seconds("defer delay", delay), "")

    def dead_letter(self, reason: str) -> bool:
        """Move the message to the dead-letter queue with ``reason`` (one line)."""
        return self._settle(Decision.DEAD_LETTER, 0.0, reason)

    def _settle(self, decision: Decision, delay: float, reason: str) -> bool:
        if self.decision is not None:
            raise SettlementError(
                f"delivery {self.tag!r} was already settled ({self.decision.value}); "
                f"refusing to {decision.value} it as well"
            )
        self.decision = decision
        self.applied = self._settler.settle(self, decision, delay, reason)
        return self.applied

    def __del__(self) -> None:
        if self.decision is None:
            with contextlib.suppress(Exception):  # never raise from a finalizer
                self._settler.dropped(self)

    def __repr__(self) -> str:
        state = self.decision.value if self.decision else "unsettled"
        return f"<AckHandle {self.tag!r} gen={self.generation} {state}>"
