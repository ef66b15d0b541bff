"""`BrokerSource`: what the broker backends' consumers add to the credit loop (asyncio).

A buffer of what arrived, settlements gathered into batches, failure when the
connection goes, and closing. A broker adds how deliveries arrive (`_fetch`,
`_wake`), how one becomes a `Delivery` (`_deliver`), and how a batch of decisions is
applied (`_apply`).

Settlements are decided synchronously (`settle`) and applied by `settle_forever`, a
loop that the source's owner runs: in a `WorkerApp`, an actor of the intake (see
`intake_actors`); for a source opened on a connection of its own, the source's one
task (see `_run_alone`). Closing applies what is left.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, Protocol, TypeVar

import anyio

from foxactors._ack import AckHandle, Decision
from foxactors._errors import BackendError
from foxactors._logging import get_logger
from foxactors._message import Delivery

from ._credit import CreditSource

_logger = get_logger("foxactors")  # stdlib logging unless structlog is configured

FLUSH_TICKS = 16
"""Event-loop turns a settlement may wait to join a batch: fewer, larger acks."""
APPLY_TIMEOUT = 30.0
"""Seconds a batch of settlements may take on the broker before the source fails."""

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
        self._wanted = asyncio.Event()  # settlements wait to be applied
        self._applying = False
        self._applied = asyncio.Event()  # a batch was applied (or the source failed)
        self._alone: asyncio.Task[None] | None = None
        self._alone_scope = anyio.CancelScope()
        self._consuming = False

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
            self._wanted.set()
            self._applied.set()

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
        """Queue a decision for the settling loop (see `Settler`); stale handles: no-ops.

        Its credit comes back once the decision is applied at the broker.
        """
        self._settling += 1  # before _held frees the delivery's place: no early wake-up
        held = self._held(handle, decision)
        if held is None:
            self._settling -= 1
            return False
        self._pending.append((handle.tag, held, decision, delay, reason))
        self._wanted.set()
        return True

    async def settle_forever(self) -> None:
        """Apply decided settlements in batches, until cancelled, closed or failed.

        Run by the source's owner (an actor, or the source's own task): a batch
        waits `FLUSH_TICKS` event-loop turns so that the settlements of those turns
        join it (fewer, larger acks).
        """
        while self._failure is None and not self._closed:
            if not self._pending:
                self._wanted.clear()
                await self._wanted.wait()
                continue
            for _ in range(FLUSH_TICKS):
                await asyncio.sleep(0)
            await self._apply_pending()

    async def _apply_pending(self) -> None:
        """Apply what is decided: one batch, after any batch being applied."""
        while self._applying:
            self._applied.clear()
            await self._applied.wait()
        if not self._pending or self._failure is not None:
            return
        batch, self._pending = self._pending, []
        self._applying = True
        try:
            # Never cancelled halfway (redis-py can lose a connection's state when a
            # command is), but bounded: a broker that stopped answering fails it.
            with anyio.CancelScope(shield=True), anyio.fail_after(APPLY_TIMEOUT):
                await self._apply(batch)
        except Exception as exc:  # the connection went away: the deliveries come back
            self._fail(f"settling on {self.queue!r} failed: {str(exc) or type(exc).__name__}")
        finally:
            self._applying = False
            self._applied.set()
            self._settling -= len(batch)
            if self._credit is not None:
                self._credit_freed()

    async def wait_settled(self) -> None:
        """Wait until every delivery is settled and its settlement applied."""
        await super().wait_settled()
        while (self._pending or self._applying) and self.live:
            self._applied.clear()
            await self._applied.wait()

    def _run_alone(self, jobs: Sequence[Callable[[Any], Awaitable[object]]] = ()) -> None:
        """Run the settling loop and ``jobs`` (of this source) in one task of its own.

        For a source opened on a connection of its own, outside any tree: nothing
        else could run them, since a source outlives the call that opens it. The
        task holds them in one task group; `_stop` cancels it (a cancel scope keeps
        cancelling until they are gone, even through redis-py swallowing one) and
        waits for its end. A job that fails fails the source.
        """
        scope = self._alone_scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self.settle_forever)
                    for job in jobs:
                        tasks.start_soon(self._guard, job)

        self._alone = asyncio.get_running_loop().create_task(run())

    async def _guard(self, job: Callable[[Any], Awaitable[object]]) -> None:
        try:
            await job(self)
        except Exception as exc:
            self._fail(f"{job.__name__} on {self.queue!r} failed: {exc}")

    async def _stop(self) -> bool:
        """Stop taking settlements, apply those decided; True unless it had failed."""
        self._closed = True
        self._end(lost=False)
        try:
            if self._alone is not None:
                self._alone_scope.cancel()
                await asyncio.wait([self._alone])
            if self._failure is None:
                await self._apply_pending()
        finally:
            self._unsettled.clear()
            self._buffer.clear()
            self._pending.clear()
            self._settling = 0
            self._wake_all()
            self._wake()
            self._wanted.set()
            self._applied.set()
        return self._failure is None
