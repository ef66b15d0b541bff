"""Restart policies as pure functions of their inputs.

Nothing here reads a clock or a random source: callers pass ``now``, ``uptime`` and
a random number in ``[0, 1)``, so every decision can be replayed in a test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

from ._errors import ConfigurationError


def _non_negative(name: str) -> Callable[[Any, Any, float], None]:
    def check(_instance: object, _attribute: object, value: float) -> None:
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ConfigurationError(f"{name} must be a finite number >= 0, got {value!r}")

    return check


@attrs.frozen
class Backoff:
    """Exponential restart delay with jitter and a cap, reset after a stable period.

    The delay before restart number ``attempt`` (0 for the first restart after a
    stable run) is ``min(max_delay, min_delay * 2**attempt * (1 + random_factor * r))``
    for a random ``r`` in ``[0, 1)``. A child that stayed up for at least
    ``reset_after`` seconds before crashing starts again from attempt 0. This is
    Akka's backoff supervisor; ``Backoff.none()`` gives OTP's immediate restarts.

    Attributes:
        min_delay: Delay of the first restart, in seconds (default 0.1).
        max_delay: Cap on any delay, in seconds (default 10).
        random_factor: Jitter as a fraction of the delay (default 0.2, i.e. up to +20%).
        reset_after: Uptime in seconds after which a crash counts as a first one
            again (default 10).
    """

    min_delay: float = attrs.field(default=0.1, validator=_non_negative("min_delay"))
    max_delay: float = attrs.field(default=10.0, validator=_non_negative("max_delay"))
    random_factor: float = attrs.field(
        default=0.2,
        validator=_non_negative("random_factor"),
    )
    reset_after: float = attrs.field(
        default=10.0,
        validator=_non_negative("reset_after"),
    )

    def __attrs_post_init__(self) -> None:
        if self.max_delay < self.min_delay:
            raise ConfigurationError(
                f"max_delay ({self.max_delay!r}) must be >= min_delay ({self.min_delay!r})"
            )

    @classmethod
    def none(cls) -> Backoff:
        """Restart at once, every time (OTP's behaviour)."""
        return cls(min_delay=0.0, max_delay=0.0, random_factor=0.0, reset_after=0.0)

    def next_attempt(self, attempt: int, uptime: float) -> int:
        """Return the attempt number for the restart after a crash.

        Args:
            attempt: The attempt number of the previous restart (-1 before any).
            uptime: How long the child ran before this crash, in seconds.
        """
        if uptime >= self.reset_after:
            return 0
        return attempt + 1

    def delay(self, attempt: int, rand: float) -> float:
        """Return the delay in seconds before restart ``attempt``.

        Args:
            attempt: 0 for the first restart, then 1, 2, ...
            rand: A number in ``[0, 1)`` that picks the jitter.
        """
        if self.min_delay == 0:
            return 0.0
        # Cap the exponent so huge attempt numbers cannot overflow the float.
        base = self.min_delay * 2.0 ** min(attempt, 64)
        return min(self.max_delay, base * (1.0 + self.random_factor * rand))


@attrs.frozen
class RestartIntensity:
    """How many restarts a supervisor tolerates in a sliding window (OTP's intensity).

    One window per supervisor, shared by all its children. A restart at ``now`` is
    admitted while at most ``max_restarts`` restarts (this one included) fall in
    ``[now - within, now]``; otherwise the supervisor gives up and escalates.

    Attributes:
        max_restarts: Restarts allowed in the window (default 3; 0 allows none).
        within: Window length in seconds (default 5).
    """

    max_restarts: int = 3
    within: float = attrs.field(default=5.0, validator=_non_negative("within"))

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_restarts, bool) or not isinstance(self.max_restarts, int):
            raise ConfigurationError(f"max_restarts must be an int >= 0, got {self.max_restarts!r}")
        if self.max_restarts < 0:
            raise ConfigurationError(
                f"max_restarts must be >= 0, got {self.max_restarts!r}; "
                "use 0 to allow no restart at all"
            )

    def admit(self, history: tuple[float, ...], now: float) -> tuple[bool, tuple[float, ...]]:
        """Record a restart at ``now`` and say whether it is within the intensity.

        Args:
            history: Times of earlier restarts, oldest first.
            now: Time of the restart being considered.

        Returns:
            ``(admitted, new_history)``; the new history keeps only the window.
        """
        threshold = now - self.within
        recent = (*tuple(t for t in history if t >= threshold), now)
        return len(recent) <= self.max_restarts, recent
