"""`BrokerSource`: what the broker backends' consumers share (asyncio).

Credit, handing out buffered deliveries, settling into a batch that a flusher task
applies, stale handles, failure and the wait for everything to settle. A backend adds
how deliveries arrive (`_fetch`), how one becomes a `Delivery` (`_deliver`), and how a
batch of decisions is applied (`_apply`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any, Generic, TypeVar

import structlog

from foxactors._ack import AckHandle, Decision
from foxactors._errors import BackendError
from foxactors._message import Delivery

_logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("foxactors")

FLUSH_TICKS = 16
"""Event-loop turns a settlement may wait to join a batch: fewer, larger acks."""

H = TypeVar("H")  # what a source keeps of an unsettled delivery
Settlement = tuple[Any, Any, Decision, float, str]  # tag, held, decision, delay, reason


class BrokerSource(Generic[H]):
    """The shared half of a broker consumer; see the module docstring.

    Attributes:
        queue: The queue (or stream) consumed.
        prefetch: The credit: at most this many deliveries are unsettled.
        generation: Tells this source's handles from those of earlier ones.
    """

    def __init__(self, backend: Any, queue: str, prefetch: int, generation: int) -> None:
        self._backend = backend
        self.queue = queue
        self.prefetch = prefetch
        self.generation = generation
        self._buffer: collections.deque[Any] = collections.deque()
        self._unsettled: dict[Any, H] = {}
        self._pending: list[Settlement] = []
        self._flusher: asyncio.Task[None] | None = None
        self._failure: BackendError | None = None
        self._closed = False
        self._consuming = False
        self._credit = asyncio.Event()
        self._settled = asyncio.Event()

    # -- what a backend adds ----------------------------------------------------------

    async def _fetch(self) -> None:
        """Wait until more deliveries are in the buffer (or a failure or close)."""
        raise NotImplementedError

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
            self._backend._source_ended(lost=lost)

    def _fail(self, reason: str) -> None:
        """The connection or channel is gone: `receive` raises, waiters wake up."""
        if self._failure is None and not self._closed:
            self._failure = BackendError(reason)
            self._end(lost=True)
            self._credit.set()
            self._wake()

    @property
    def live(self) -> bool:
        """True until closed or failed (see `Settler`)."""
        return not self._closed and self._failure is None

    @property
    def unsettled(self) -> int:
        """Deliveries handed out and not yet settled."""
        return len(self._unsettled)

    async def receive(self, max_count: int, min_credit: int = 1) -> list[Delivery]:
        """Wait for a delivery and ``min_credit`` free credit; return at most ``max_count``."""
        min_credit = max(1, min(min_credit, self.prefetch))
        buffer = self._buffer
        while True:
            if self._failure is not None:
                raise self._failure
            if self._closed:
                raise BackendError(f"consumer of {self.queue!r} is closed")
            free = self.prefetch - len(self._unsettled)
            if free < min_credit:
                self._credit.clear()
                await self._credit.wait()
                continue
            if buffer:
                out: list[Delivery] = []
                credit = min(max_count, free)
                now = time.monotonic()
                while buffer and len(out) < credit:
                    delivery = self._deliver(buffer.popleft(), now)
                    if delivery is not None:
                        out.append(delivery)
                if out:
                    return out
                continue
            await self._fetch()

    def settle(self, handle: AckHandle, decision: Decision, delay: float, reason: str) -> bool:
        """Queue a decision for the flusher (see `Settler`); stale handles are no-ops."""
        tag = handle.tag
        held = self._unsettled.pop(tag, None) if self.live else None
        if held is None:
            _logger.warning(
                "settlement.stale", queue=self.queue, tag=str(tag), decision=decision.value
            )
            return False
        self._pending.append((tag, held, decision, delay, reason))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        if self.prefetch - len(self._unsettled) >= 1:
            self._credit.set()
        return True

    def dropped(self, handle: AckHandle) -> None:
        """A handle was dropped unsettled: report it and requeue its delivery."""
        if handle.tag in self._unsettled and not self._closed:
            _logger.error("delivery.dropped", queue=self.queue, tag=str(handle.tag))
            handle.requeue()

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
            self._settled.set()

    async def wait_settled(self) -> None:
        """Wait until every delivery is settled and its settlement applied."""
        while self._unsettled or self._flusher is not None:
            self._settled.clear()
            if self._unsettled:
                self._credit.clear()
                await self._credit.wait()
            else:
                await self._settled.wait()

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
            self._credit.set()
            self._wake()
        return self._failure is None
