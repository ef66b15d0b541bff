"""`CreditSource`: the one credit loop of every backend's consumer.

Never more than ``prefetch`` deliveries unsettled; a receiver waits until
``min_credit`` is free (GenStage's minimum demand), then takes what is ready, at
most the free credit. A backend adds where deliveries come from (`_take`, `_fetch`)
and how a decision is applied (`settle`); the bookkeeping of unsettled deliveries,
stale handles, dropped handles and the waits are here, on anyio events (so the
memory backend runs on asyncio and trio alike).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar, cast

import anyio

from foxactors._ack import AckHandle, Decision
from foxactors._errors import BackendError
from foxactors._logging import get_logger
from foxactors._message import Delivery

_logger = get_logger("foxactors")  # stdlib logging unless structlog is configured

T = TypeVar("T", bound=Hashable)  # a delivery's tag
H = TypeVar("H")  # what a source keeps of an unsettled delivery


class CreditSource(Generic[T, H]):
    """The shared half of every consumer (see the module docstring).

    Attributes:
        queue: The queue (or stream) consumed.
        prefetch: The credit: at most this many deliveries are unsettled.
        generation: Tells this source's handles from those of earlier ones.
    """

    def __init__(self, queue: str, prefetch: int, generation: int) -> None:
        self.queue = queue
        self.prefetch = prefetch
        self.generation = generation
        self._unsettled: dict[T, H] = {}
        # Settled here, not yet applied at the broker: still unsettled there, so
        # still counted against the credit (the prefetch bounds what the broker holds).
        self._settling = 0
        self._failure: BackendError | None = None
        self._closed = False
        self._want = 0  # credit the waiting receiver needs (0: nobody waits)
        self._credit: anyio.Event | None = None
        self._all_settled: anyio.Event | None = None

    # -- what a backend adds ----------------------------------------------------------

    def _take(self, credit: int) -> list[Delivery] | None:
        """Hand out at most ``credit`` deliveries; None if nothing was ready.

        An empty list means something was ready and turned out bad (settled by the
        source itself): look again before waiting.
        """
        raise NotImplementedError

    async def _fetch(self) -> None:
        """Wait until something may be ready (or a failure or close happened)."""
        raise NotImplementedError

    def settle(self, handle: AckHandle, decision: Decision, delay: float, reason: str) -> bool:
        """Apply a decision for one of this source's handles (see `Settler`)."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """True until closed or failed (see `Settler`)."""
        return not self._closed and self._failure is None

    @property
    def unsettled(self) -> int:
        """Deliveries handed out and not yet settled."""
        return len(self._unsettled)

    async def receive(self, max_count: int, min_credit: int = 1) -> list[Delivery]:
        """Wait for a delivery and ``min_credit`` free credit; return at most ``max_count``.

        Raises:
            BackendError: The source is closed, or lost its connection.
        """
        min_credit = max(1, min(min_credit, self.prefetch))
        while True:
            if self._failure is not None:
                raise self._failure
            if self._closed:
                raise BackendError(f"consumer of {self.queue!r} is closed")
            free = self.prefetch - len(self._unsettled) - self._settling
            if free < min_credit:  # wait until settlements free enough credit
                self._want = min_credit
                credit = self._credit = anyio.Event()
                try:
                    await credit.wait()
                except BaseException:  # cancelled: nobody waits for this credit any more
                    if self._credit is credit:
                        self._credit, self._want = None, 0
                    raise
                continue
            out = self._take(min(max_count, free))
            if out:
                return out
            if out is None:
                await self._fetch()

    def _held(self, handle: AckHandle, decision: Decision) -> H | None:
        """Take what is held for ``handle``'s delivery; None (logged) if stale."""
        held = self._unsettled.pop(cast(T, handle.tag), None) if self.live else None
        if held is None:
            _logger.warning(
                "settlement.stale", queue=self.queue, tag=str(handle.tag), decision=decision.value
            )
        elif self._credit is not None or self._all_settled is not None:
            self._credit_freed()
        return held

    def _credit_freed(self) -> None:
        """Wake the receiver if enough credit is free, and `wait_settled` if all is."""
        unsettled = len(self._unsettled)
        if self._credit is not None and self.prefetch - unsettled - self._settling >= self._want:
            self._credit.set()
            self._credit = None
        if self._all_settled is not None and not unsettled:
            self._all_settled.set()
            self._all_settled = None

    def _wake_all(self) -> None:
        """Wake every waiter: the source closed or failed."""
        if self._credit is not None:
            self._credit.set()
            self._credit = None
        if self._all_settled is not None:
            self._all_settled.set()
            self._all_settled = None

    def dropped(self, handle: AckHandle) -> None:
        """A handle was dropped unsettled: report it and requeue its delivery."""
        if handle.tag in self._unsettled and not self._closed:
            _logger.error("delivery.dropped", queue=self.queue, tag=str(handle.tag))
            handle.requeue()

    async def wait_settled(self) -> None:
        """Wait until no delivery of this source is unsettled."""
        while self._unsettled and self.live:
            if self._all_settled is None:
                self._all_settled = anyio.Event()
            await self._all_settled.wait()
