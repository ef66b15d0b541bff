"""`BrokerSource`: what the broker backends' consumers add to the credit loop (asyncio).

A buffer of what arrived, settlements gathered into batches that a flusher task
applies, failure when the connection goes, and closing. A broker adds how deliveries
arrive (`_fetch`, `_wake`), how one becomes a `Delivery` (`_deliver`), and how a
batch of decisions is applied (`_apply`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Hashable
from typing import Any, Protocol, TypeVar

import structlog

from foxactors._ack import AckHandle, Decision
from foxactors._errors import BackendError
from foxactors._message import Delivery

from ._credit import CreditSource

_logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("foxactors")

FLUSH_TICKS = 16
"""Event-loop turns a settlement may wait to join a batch: fewer, larger acks."""

T = TypeVar("T", bound=Hashable)  # a delivery's tag
H = TypeVar("H")  # what a source keeps of an unsettled delivery


Settlement = tuple[Any, Any, Decision, float, str]
"""A decision waiting to be applied: tag, what the source held, decision, delay, reason.

A plain tuple: one is made per settlement, on the hot path."""


class Consumers(Protocol):
    """What a source tells its backend: a consumer started or stopped."""

    def source_ended(self, *, lost: bool) -> None:
        """A source stopped consuming, closed or ``lost``."""


class BrokerSource(CreditSource[T, H]):
    """The shared half of a broker consumer; see the module docstring."""

    def __init__(self, backend: Consumers, queue: str, prefetch: int, generation: int) -> None:
        super().__init__(queue, prefetch, generation)
        self._consumers = backend
        self._buffer: collections.deque[Any] = collections.deque()
        self._pending: list[Settlement] = []
        self._flusher: asyncio.Task[None] | None = None
        self._consuming = False
        self._flushed = asyncio.Event()

    # -- what a backend adds ----------------------------------------------------------

    def _deliver(self, item: Any, now: float) -> Delivery | None:
        """Turn a buffered item into a delivery, recorded as unsettled.

        Bad input is settled at once (dead-lettered) and gives None.
        """
        raise NotImplementedError

    async def _apply(self, batch: list[Settlement]) -> None:
        """Apply a batch of decisions on the broker."""
        raise NotImplementedError

    def _wake(self) -> None:
        """Wake whatever `_fetch` waits on (a failure or close happened)."""

    # -- shared -----------------------------------------------------------------------

    def _started(self) -> None:
        self._consuming = True

    def _end(self, *, lost: bool) -> None:
        if self._consuming:
            self._consuming = False
            self._consumers.source_ended(lost=lost)

    def _fail(self, reason: str) -> None:
        """The connection or channel is gone: `receive` raises, waiters wake up."""
        if self._failure is None and not self._closed:
            self._failure = BackendError(reason)
            self._end(lost=True)
            self._wake_all()
            self._wake()

    def _take(self, credit: int) -> list[Delivery] | None:
        buffer = self._buffer
        if not buffer:
            return None
        out: list[Delivery] = []
        now = time.monotonic()
        while buffer and len(out) < credit:
            delivery = self._deliver(buffer.popleft(), now)
            if delivery is not None:
                out.append(delivery)
        return out

    def settle(self, handle: AckHandle, decision: Decision, delay: float, reason: str) -> bool:
        """Queue a decision for the flusher (see `Settler`); stale handles are no-ops."""
        held = self._held(handle, decision)
        if held is None:
            return False
        self._pending.append((handle.tag, held, decision, delay, reason))
        if self._flusher is None:
            self._flushed.clear()
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return True

    async def _flush(self) -> None:
        try:
            while self._pending and self._failure is None:
                for _ in range(FLUSH_TICKS):  # let settlements of these turns join the batch
                    await asyncio.sleep(0)
                batch, self._pending = self._pending, []
                await self._apply(batch)
        except Exception as exc:  # the connection went away: the deliveries come back
            self._fail(f"settling on {self.queue!r} failed: {exc}")
        finally:
            self._flusher = None
            self._flushed.set()

    async def wait_settled(self) -> None:
        """Wait until every delivery is settled and its settlement applied."""
        await super().wait_settled()
        while self._flusher is not None:
            await self._flushed.wait()

    async def _stop(self) -> bool:
        """Stop taking settlements, apply those decided; True unless it had failed."""
        self._closed = True
        self._end(lost=False)
        try:
            if self._flusher is not None and self._failure is None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self._flusher), 30)
        finally:
            self._unsettled.clear()
            self._buffer.clear()
            self._wake_all()
            self._wake()
        return self._failure is None
