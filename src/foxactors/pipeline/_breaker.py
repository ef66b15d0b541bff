"""Circuit breaker: a pure state machine and the stage that applies it."""

from __future__ import annotations

import enum
from typing import Any, Final

import anyio
import attrs

from foxactors._message import Delivery, Outcome, OutcomeKind
from foxactors._validate import require_int, require_seconds

from ._messages import CURRENT_BREAKER, CurrentBreaker
from ._stage import Stage


class BreakerState(enum.Enum):
    """Where a circuit breaker is."""

    CLOSED = "closed"
    """Messages flow; failures are counted."""
    OPEN = "open"
    """Messages are deferred, untried, until ``open_timeout`` has passed."""
    HALF_OPEN = "half_open"
    """One probe message is let through; its outcome closes or reopens the circuit."""


@attrs.frozen
class Breaker:
    """The state of a circuit breaker, as a value; every method returns a new one.

    Attributes:
        failure_threshold: Consecutive failures that open the circuit (default 5).
        open_timeout: Seconds the circuit stays open before a probe (default 30).
        state: Current state.
        failures: Consecutive failures counted while closed.
        opened_at: When it last opened (the caller's clock).
        probing: Whether the half-open probe is out.
    """

    failure_threshold: int = 5
    open_timeout: float = 30.0
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probing: bool = False

    def __attrs_post_init__(self) -> None:
        require_int("failure_threshold", self.failure_threshold, 1)
        require_seconds("open_timeout", self.open_timeout, positive=True)

    def admit(self, now: float) -> tuple[bool, Breaker]:
        """May a message go through at ``now``? Returns (allowed, new state)."""
        if self.state is BreakerState.CLOSED:
            return True, self
        if self.state is BreakerState.OPEN and now - self.opened_at >= self.open_timeout:
            return True, attrs.evolve(self, state=BreakerState.HALF_OPEN, probing=True)
        return False, self

    def record(self, succeeded: bool, now: float) -> Breaker:
        """Count an outcome at ``now``; returns the new state."""
        if succeeded:
            if self.state is BreakerState.CLOSED and self.failures == 0:
                return self
            return attrs.evolve(self, state=BreakerState.CLOSED, failures=0, probing=False)
        failures = self.failures + 1
        if self.state is BreakerState.HALF_OPEN or failures >= self.failure_threshold:
            return attrs.evolve(
                self, state=BreakerState.OPEN, failures=failures, opened_at=now, probing=False
            )
        return attrs.evolve(self, failures=failures)

    def retry_in(self, now: float) -> float:
        """Seconds until a deferred message should come back."""
        return max(0.0, self.opened_at + self.open_timeout - now)


BREAKER_STATE: Final = CURRENT_BREAKER
"""Ask the circuit breaker stage this: the reply is its current `Breaker`."""


class CircuitBreakerStage(Stage):
    """Stops calling a failing dependency for a while, then probes it.

    Closed: deliveries pass, and ``failure_threshold`` failures in a row open the
    circuit. Open: deliveries are deferred, untried (``defer``: no attempt counted),
    until ``open_timeout`` has passed. Half-open: one probe passes; success closes the
    circuit, failure opens it again. State changes are logged
    (``breaker.open``, ``breaker.half_open``, ``breaker.closed``); ``ask(BREAKER_STATE)``
    returns the current `Breaker`. It sits inside the retry stage, so it sees raw
    failures. It admits deliveries on their way to the pool: those admitted before
    the circuit opened (waiting in the pool for a worker) still run.
    """

    def __init__(self, breaker: Breaker) -> None:
        self.breaker = breaker

    async def on_delivery(self, delivery: Delivery) -> None:
        """Forward while closed (or as the half-open probe); otherwise defer."""
        now = anyio.current_time()
        allowed, breaker = self.breaker.admit(now)
        if breaker.state is not self.breaker.state:
            self.log.info("breaker.half_open")
        self.breaker = breaker
        if allowed:
            await self.forward(delivery)
        else:
            delay = breaker.retry_in(now)
            await self.reply(
                Outcome(delivery, OutcomeKind.DEFER, delay=delay, reason="circuit open")
            )

    async def on_outcome(self, outcome: Outcome) -> None:
        """Count successes and failures, then pass the outcome on."""
        if outcome.kind is OutcomeKind.SUCCEEDED or outcome.kind is OutcomeKind.FAILED:
            before = self.breaker.state
            self.breaker = self.breaker.record(
                outcome.kind is OutcomeKind.SUCCEEDED, anyio.current_time()
            )
            after = self.breaker.state
            if after is not before:
                self.log.warning(f"breaker.{after.value}", failures=self.breaker.failures)
        await self.reply(outcome)

    async def on_other(self, message: Any) -> Any:
        """Answer `BREAKER_STATE` with the current `Breaker`."""
        return self.breaker if type(message) is CurrentBreaker else None
