"""The credit of a broker source counts settlements until the broker has them.

A decision made here is still unsettled at the broker until its batch is applied,
so its credit comes back only then: end to end, what the broker holds for one
consumer never exceeds the prefetch. No server needed: a fake broker source.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from foxactors import AckHandle, Delivery, Message
from foxactors.backends._source import BrokerSource, Settlement

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # broker sources are asyncio-only, as the brokers' clients


class Fake(BrokerSource[int, int]):
    """Serves numbers; applying a batch waits for ``gate``."""

    def __init__(self, prefetch: int) -> None:
        super().__init__(self, "jobs", prefetch, generation=1)
        self._buffer.extend(range(10))
        self.gate = asyncio.Event()
        self.applied: list[int] = []

    def source_ended(self, *, lost: bool) -> None:
        pass

    def _deliver(self, item: Any, now: float) -> Delivery | None:
        self._unsettled[item] = item
        message = Message(str(item), item, b"")
        return Delivery(message, AckHandle(self, item, self.generation))

    async def _apply(self, batch: list[Settlement]) -> None:
        await self.gate.wait()
        self.applied += [tag for tag, *_ in batch]

    async def _fetch(self) -> None:
        await asyncio.Event().wait()  # everything is in the buffer already


async def test_credit_comes_back_when_the_broker_has_the_ack() -> None:
    source = Fake(prefetch=2)
    first = await source.receive(10)
    assert [d.message.payload for d in first] == [0, 1]
    for delivery in first:
        delivery.handle.ack()
    assert source.unsettled == 0  # decided here
    async with asyncio.TaskGroup() as tasks:
        settling = tasks.create_task(source.settle_forever())
        receiving = tasks.create_task(source.receive(10))
        for _ in range(50):  # the settling loop's turns: the batch is being applied
            await asyncio.sleep(0)
        assert not receiving.done()  # the broker still holds two: no credit yet
        source.gate.set()
        second = await receiving
        assert source.applied == [0, 1]
        assert [d.message.payload for d in second] == [2, 3]
        settling.cancel()
    await source._stop()
