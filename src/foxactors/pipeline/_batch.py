"""Batching: gather deliveries for handlers that work on many messages at once."""

from __future__ import annotations

from typing import Any

import anyio

from foxactors._lifecycle import Exit
from foxactors._message import Delivery
from foxactors._validate import require_int, require_seconds

from ._messages import FlushDue
from ._stage import Stage
from ._work import Batch


class BatchStage(Stage):
    """Gathers up to ``size`` deliveries, or what came within ``interval`` seconds.

    A batch goes on as soon as it is full, or ``interval`` seconds after its first
    delivery. Outcomes come back one per delivery and pass on unchanged, so each
    handle is settled by its own outcome. Deliveries still gathered when the
    pipeline stops gracefully go back to the queue at once (`on_drain`); a batch
    already sent on is running work and finishes. Use a prefetch of at least ``size``.
    """

    def __init__(self, size: int, interval: float) -> None:
        require_int("batch size", size, 1)
        require_seconds("flush interval", interval, positive=True)
        self.size = size
        self.interval = interval
        self._gathered: list[Delivery] = []
        self._generation = 0

    async def on_delivery(self, delivery: Delivery) -> None:
        """Add to the batch; send it when full, or arm its flush timer."""
        self._gathered.append(delivery)
        if len(self._gathered) >= self.size:
            await self._flush()
        elif len(self._gathered) == 1:
            self.start_task(self._flush_later, self._generation)

    async def _flush_later(self, generation: int) -> None:
        await anyio.sleep(self.interval)
        await self.ref.tell(FlushDue(generation))

    async def on_other(self, message: Any) -> Any:
        """Flush on the timer of the current batch (an old timer is ignored)."""
        if type(message) is FlushDue and message.generation == self._generation:
            await self._flush()
        return None

    async def _flush(self) -> None:
        batch, self._gathered = tuple(self._gathered), []
        self._generation += 1
        if batch:
            await self.downstream.tell(Batch(batch))

    async def on_drain(self) -> list[Delivery]:
        """Give up the batch being gathered (a graceful stop); a batch sent on runs."""
        gathered, self._gathered = self._gathered, []
        self._generation += 1  # its flush timer finds nothing to send
        return gathered

    async def on_stop(self, exit: Exit) -> None:
        """Return what was gathered and not yet sent (if the drain did not)."""
        for delivery in self._gathered:
            if not delivery.handle.settled:
                delivery.handle.requeue()
        self._gathered = []
