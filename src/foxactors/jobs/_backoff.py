"""Backoff functions for job retries: attempt number in, seconds out (pure)."""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

from foxactors._errors import ConfigurationError
from foxactors._validate import require_seconds

Backoff = Callable[[int], float]
"""Seconds to wait after failed attempt ``n`` (1-based) before the next one."""


@attrs.frozen
class Exponential:
    """``initial * multiplier**(n - 1)``, capped at ``maximum``, plus up to ``jitter`` of it.

    Attributes:
        initial: Delay after the first failed attempt, seconds (default 1).
        maximum: Cap on any delay, seconds (default 300).
        multiplier: Growth per attempt (default 2).
        jitter: Random extra as a fraction of the delay (default 0.1).
    """

    initial: float = 1.0
    maximum: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.1
    rand: Callable[[], float] = attrs.field(default=random.random, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        require_seconds("initial", self.initial)
        require_seconds("maximum", self.maximum)
        require_seconds("jitter", self.jitter)
        if isinstance(self.multiplier, bool) or not isinstance(self.multiplier, int | float):
            raise ConfigurationError(f"multiplier must be a number >= 1, got {self.multiplier!r}")
        if self.multiplier < 1:
            raise ConfigurationError(f"multiplier must be a number >= 1, got {self.multiplier!r}")
        if self.maximum < self.initial:
            raise ConfigurationError(
                f"maximum ({self.maximum!r}) must be >= initial ({self.initial!r})"
            )

    def __call__(self, attempt: int) -> float:
        base = self.initial * self.multiplier ** min(max(attempt, 1) - 1, 64)
        return min(self.maximum, base * (1.0 + self.jitter * self.rand()))


@attrs.frozen
class Linear:
    """``step * n`` after failed attempt ``n``, capped at ``maximum``.

    Attributes:
        step: Added per attempt, seconds.
        maximum: Cap on any delay, seconds (default 300).
    """

    step: float = 5.0
    maximum: float = 300.0

    def __attrs_post_init__(self) -> None:
        require_seconds("step", self.step)
        require_seconds("maximum", self.maximum)

    def __call__(self, attempt: int) -> float:
        return min(self.maximum, self.step * max(attempt, 1))


def check_backoff(backoff: object) -> Backoff:
    """Return ``backoff`` if it is callable, or raise a clear error."""
    if not callable(backoff):
        raise ConfigurationError(
            f"backoff must be a function of the attempt number returning seconds "
            f"(e.g. jobs.Exponential(), jobs.Linear(step=5)), got {backoff!r}"
        )
    return backoff
