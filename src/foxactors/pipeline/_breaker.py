"""Circuit breaker: a pure state machine and the stage that applies it."""

from __future__ import annotations

import enum
from typing import Any

import anyio
import attrs

from foxactors._message import Delivery, Outcome, OutcomeKind
from foxactors._validate import require_int, require_seconds

from ._messages import CurrentBreaker
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


@attrs.frozen
class BreakerStatistics:
    """A snapshot of a circuit breaker stage.

    Times are on the event loop's clock (``anyio.current_time()``).

    Attributes:
        state: Where the circuit is.
        consecutive_failures: Failures in a row since the last success.
        failure_threshold: Failures in a row that open the circuit.
        open_timeout: Seconds the circuit stays open before a probe.
        opened_at: When the circuit last opened; None if it never did.
        probe_at: While open, when the next probe may go through; None otherwise.
        opened: Times the circuit opened (since the stage started).
        deferred: Deliveries deferred untried while it was open (since the stage
            started; a delivery deferred twice counts twice).
    """

    state: BreakerState
    consecutive_failures: int
    failure_threshold: int
    open_timeout: float
    opened_at: float | None
    probe_at: float | None
    opened: int
    deferred: int


class CircuitBreakerStage(Stage):
    """Stops calling a failing dependency for a while, then probes it.

    Closed: deliveries pass, and ``failure_threshold`` failures in a row open the
    circuit. Open: deliveries are deferred, untried (``defer``: no attempt counted),
    until ``open_timeout`` has passed. Half-open: one probe passes; success closes the
    circuit, failure opens it again. State changes are logged
    (``breaker.open``, ``breaker.half_open``, ``breaker.closed``), and `statistics`
    (read with ``system.statistics(path)``) shows where the circuit is. It sits
    inside the retry stage, so it sees raw failures. It admits deliveries on their
    way to the pool: those admitted before the circuit opened (waiting in the pool
    for a worker) still run.
    """

    def __init__(self, breaker: Breaker) -> None:
        self.breaker = breaker
        self._opened = 0
        self._deferred = 0

    def statistics(self) -> BreakerStatistics:
        """Return the state of the circuit and what it did."""
        breaker = self.breaker
        closed = breaker.state is BreakerState.CLOSED
        opened_at = None if closed and not self._opened else breaker.opened_at
        return BreakerStatistics(
            state=breaker.state,
            consecutive_failures=breaker.failures,
            failure_threshold=breaker.failure_threshold,
            open_timeout=breaker.open_timeout,
            opened_at=opened_at,
            probe_at=(
                breaker.opened_at + breaker.open_timeout
                if breaker.state is BreakerState.OPEN
                else None
            ),
            opened=self._opened,
            deferred=self._deferred,
        )

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
            self._deferred += 1
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
                if after is BreakerState.OPEN:
                    self._opened += 1
                self.log.warning(f"breaker.{after.value}", failures=self.breaker.failures)
        await self.reply(outcome)

    async def on_other(self, message: Any) -> Any:
        """Answer the deprecated ``BREAKER_STATE`` with the current `Breaker`."""
        return self.breaker if type(message) is CurrentBreaker else None
