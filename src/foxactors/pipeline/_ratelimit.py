"""Rate limiting: a pure token bucket and the stage that applies it."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import anyio
import attrs

from foxactors._errors import ConfigurationError
from foxactors._lifecycle import Exit
from foxactors._message import Delivery
from foxactors._validate import require_int

from ._messages import RELEASE_DUE, ReleaseDue
from ._stage import Stage

_ROUNDING = 1e-9  # of a token: a wait shorter than this is rounding, not a wait


@attrs.frozen
class TokenBucket:
    """A token bucket as a value: ``rate`` tokens per second, at most ``burst`` saved.

    Attributes:
        rate: Tokens added per second.
        burst: Most tokens the bucket holds (and so the largest burst).
        tokens: Tokens now.
        updated: When ``tokens`` was computed (the caller's clock), None at first.
    """

    rate: float
    burst: int = 1
    tokens: float = -1.0  # -1: full at first use
    updated: float | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.rate, int | float) or not math.isfinite(self.rate) or self.rate <= 0:
            raise ConfigurationError(f"rate must be tokens per second > 0, got {self.rate!r}")
        require_int("burst", self.burst, 1)

    def take(self, now: float) -> tuple[float, TokenBucket]:
        """Try to take a token at ``now``: returns (seconds to wait, new bucket).

        A wait of 0 means the token was taken; otherwise nothing was taken and the
        caller should try again after the wait.
        """
        if self.updated is None:
            tokens = float(self.burst)
        else:
            tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        if tokens >= 1.0 - _ROUNDING:  # a token due now, give or take float rounding
            return 0.0, attrs.evolve(self, tokens=max(0.0, tokens - 1.0), updated=now)
        return (1.0 - tokens) / self.rate, attrs.evolve(self, tokens=tokens, updated=now)


@attrs.frozen
class RateLimitStatistics:
    """A snapshot of a rate limit stage.

    Attributes:
        rate: Deliveries let through per second.
        burst: Most deliveries let through at once.
        waiting: Deliveries held back now, waiting for a token.
        delayed: Deliveries that had to wait for a token, in all (since the stage
            started).
    """

    rate: float
    burst: int
    waiting: int
    delayed: int


class RateLimitStage(Stage):
    """Lets deliveries through at most ``rate`` per second, with bursts of ``burst``.

    Deliveries over the limit wait in the stage, in order (they stay unsettled, so
    the prefetch holds the consumer back); outcomes are never held up. A timer
    releases the next one when a token is due. Deliveries still waiting when the
    pipeline stops gracefully go back to the queue at once (`on_drain`), as do any
    left when the stage stops.
    """

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self._waiting: deque[Delivery] = deque()
        self._timer = False
        self._delayed = 0

    async def on_delivery(self, delivery: Delivery) -> None:
        """Forward now if a token is free and nobody waits; otherwise queue it."""
        if not self._waiting and self._take() == 0.0:
            await self.forward(delivery)
            return
        self._waiting.append(delivery)
        self._delayed += 1
        self._arm()

    def statistics(self) -> RateLimitStatistics:
        """Return the limit and the deliveries it holds back."""
        bucket = self.bucket
        return RateLimitStatistics(bucket.rate, bucket.burst, len(self._waiting), self._delayed)

    async def on_other(self, message: Any) -> Any:
        """On the timer, release every delivery a token is available for."""
        if type(message) is ReleaseDue:
            self._timer = False
            while self._waiting:
                wait = self._take()
                if wait > 0:
                    break
                await self.forward(self._waiting.popleft())
            if self._waiting:
                self._arm()
        return None

    def _take(self) -> float:
        wait, self.bucket = self.bucket.take(anyio.current_time())
        return wait

    def _arm(self) -> None:
        if self._timer:
            return
        self._timer = True
        tokens = self.bucket.tokens if self.bucket.updated is not None else 0.0
        self.start_task(self._release_after, max(0.0, (1.0 - tokens) / self.bucket.rate))

    async def _release_after(self, delay: float) -> None:
        await anyio.sleep(delay)
        await self.ref.tell(RELEASE_DUE)

    async def on_drain(self) -> list[Delivery]:
        """Give up every delivery still waiting for a token (a graceful stop)."""
        waiting, self._waiting = list(self._waiting), deque()
        return waiting

    async def on_stop(self, exit: Exit) -> None:
        """Return the deliveries still waiting to the queue (if the drain did not)."""
        while self._waiting:
            handle = self._waiting.popleft().handle
            if not handle.settled:
                handle.requeue()
