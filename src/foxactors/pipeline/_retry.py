"""Retries: a pure policy and the stage that applies it."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import attrs

from foxactors._errors import ConfigurationError
from foxactors._message import Delivery, Outcome, OutcomeKind
from foxactors._validate import require_int

from ._stage import Stage
from ._work import BatchOutcomes, Deliveries


def _number(name: str, value: object, minimum: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < minimum
    ):
        raise ConfigurationError(f"{name} must be a number >= {minimum}, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """How often and how late a failed message is tried again.

    The delay before attempt ``n + 1`` (after ``n`` failed attempts) is
    ``min(max_backoff, initial_backoff * multiplier**(n - 1) * (1 + jitter * r))``.

    Attributes:
        max_retries: Retries after the first attempt (default 3; 0: none).
        initial_backoff: Delay before the first retry, seconds (default 1).
        max_backoff: Cap on any delay, seconds (default 300).
        multiplier: Growth per retry (default 2).
        jitter: Random extra as a fraction of the delay (default 0.1).
        dead_on: Exception classes never retried: a failure raising one goes to the
            dead-letter queue at once, its error as the reason ("no such domain"
            will not be fixed by trying again).
    """

    max_retries: int = 3
    initial_backoff: float = 1.0
    max_backoff: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.1
    dead_on: tuple[type[BaseException], ...] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        require_int("max_retries", self.max_retries, 0)
        _number("initial_backoff", self.initial_backoff, 0)
        _number("max_backoff", self.max_backoff, 0)
        _number("multiplier", self.multiplier, 1)
        _number("jitter", self.jitter, 0)
        if not all(isinstance(k, type) and issubclass(k, BaseException) for k in self.dead_on):
            raise ConfigurationError(
                f"dead_on must be a tuple of exception classes, got {self.dead_on!r}"
            )
        if self.max_backoff < self.initial_backoff:
            raise ConfigurationError(
                f"max_backoff ({self.max_backoff!r}) must be >= initial_backoff "
                f"({self.initial_backoff!r})"
            )

    def delay(self, attempt: int, rand: float) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based), for jitter ``rand``."""
        base = self.initial_backoff * self.multiplier ** min(attempt - 1, 64)
        return min(self.max_backoff, base * (1.0 + self.jitter * rand))

    def decide(self, attempt: int, reason: str, rand: float) -> tuple[OutcomeKind, float, str]:
        """Return (RETRY, delay, "") or (DEAD_LETTER, 0, why) after failed ``attempt``."""
        if attempt <= self.max_retries:
            return OutcomeKind.RETRY, self.delay(attempt, rand), ""
        attempts = "1 attempt" if attempt == 1 else f"{attempt} attempts"
        return OutcomeKind.DEAD_LETTER, 0.0, f"failed after {attempts}: {reason}"


class RetryStage(Stage):
    """Turns failures into delayed retries until ``max_retries``, then dead letters.

    It also catches *poison* messages on the way in: one delivered more than
    ``max_retries + 1`` times (it kept crashing or timing out its workers before
    an outcome was recorded) goes to the dead-letter queue without running again.
    """

    def __init__(self, policy: RetryPolicy, rand: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self._rand = rand
        self._limit = policy.max_retries + 1

    async def receive(self, message: Any) -> Any:
        """Fast path of `Stage.receive` for the hottest stage: no extra dispatch."""
        kind = type(message)
        if kind is Deliveries:
            await self._pass_run(message)
        elif kind is Delivery:
            if message.message.attempt <= self._limit:
                await self.downstream.tell(message)
            else:
                await self.on_delivery(message)
        elif kind is Outcome:
            if message.kind is OutcomeKind.FAILED:
                await self.on_outcome(message)
            else:
                await self.reply(message)
        elif kind is BatchOutcomes:
            await self._pass_outcomes(message)
        else:
            return await self.on_other(message)
        return None

    async def _pass_run(self, run: Deliveries) -> None:
        """Pass a run on whole, unless a poison pill is among it."""
        limit = self._limit
        for delivery in run.items:
            if delivery.message.attempt > limit:
                await self._on_deliveries(run)
                return
        await self.downstream.tell(run)

    async def _pass_outcomes(self, batch: BatchOutcomes) -> None:
        """Pass outcomes on whole, unless a failure among them needs a decision."""
        failed = OutcomeKind.FAILED
        for outcome in batch.outcomes:
            if outcome.kind is failed:
                await self._on_outcomes(batch)
                return
        await self._tell_up(batch)

    async def on_delivery(self, delivery: Delivery) -> None:
        """Forward, unless the message is a poison pill."""
        attempt = delivery.message.attempt
        if attempt > self._limit:
            reason = (
                f"poison message: delivered {attempt} times with max_retries="
                f"{self.policy.max_retries}"
            )
            await self.reply(
                Outcome(delivery, OutcomeKind.DEAD_LETTER, reason=reason, max_attempts=self._limit)
            )
            return
        await self.forward(delivery)

    async def on_outcome(self, outcome: Outcome) -> None:
        """Decide retry or dead letter for a failure; pass other outcomes on."""
        if outcome.kind is OutcomeKind.FAILED:
            dead_on = self.policy.dead_on
            if dead_on and isinstance(outcome.error, dead_on):
                why = (
                    f"not retried ({type(outcome.error).__name__} is in dead_on): {outcome.reason}"
                )
                dead, delivery = OutcomeKind.DEAD_LETTER, outcome.delivery
                limit, duration = self._limit, outcome.duration
                await self.reply(Outcome(delivery, dead, outcome.error, 0.0, why, limit, duration))
                return
            attempt = outcome.delivery.message.attempt
            kind, delay, why = self.policy.decide(attempt, outcome.reason, self._rand())
            outcome = Outcome(
                outcome.delivery,
                kind,
                outcome.error,
                delay,
                why or outcome.reason,
                self._limit,  # for the failure's log line: "attempt 2 of 4"
                outcome.duration,
            )
        await self.reply(outcome)
