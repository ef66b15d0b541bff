"""`Consumer`: pulls deliveries from a backend with credit and settles their outcomes."""

from __future__ import annotations

import time
from typing import Any

import anyio

from foxactors._actor import Actor
from foxactors._errors import ActorError
from foxactors._lifecycle import Exit
from foxactors._message import Message, Outcome, OutcomeKind
from foxactors.backends import CONNECTION, Backend, DeadLetter, GetSource, Source

from ._messages import StopIntake
from ._tally import ConsumerStatistics, Tally
from ._work import BatchOutcomes, one_or_run

_SUCCEEDED = OutcomeKind.SUCCEEDED  # hot path: a global is cheaper than an enum lookup


class Consumer(Actor[Any]):
    """The outermost actor of a pipeline: intake and settlement.

    A background task pulls deliveries (never more than ``prefetch`` unsettled: the
    source holds it back) and tells them to the first stage. Like GenStage, it asks
    again only once half the prefetch is free, so deliveries travel in runs, and a
    run crosses each hop as one `Deliveries` message. Outcomes come back as
    messages and are settled here, exactly once: succeeded -> ack, retry -> retry
    later, requeue -> requeue, dead letter -> dead letter, and a failure nobody
    turned into a decision -> dead letter. When the consumer stops, every unsettled
    delivery goes back to the queue; later settlements of its handles are no-ops.
    """

    def __init__(
        self,
        backend: Backend,
        queue: str,
        *,
        prefetch: int,
        downstream: str,
        dead_letters: str | None = None,
        connection: str | None = None,
        tally: Tally | None = None,
    ) -> None:
        self._tally = tally if tally is not None else Tally()  # the spec's: kept on restarts
        self._backend = backend
        self._connection = connection
        self._dead_letters = dead_letters
        self._queue = queue
        self._prefetch = prefetch
        self._downstream = downstream

    async def on_start(self) -> None:
        """Open the source (on the connection actor's connection, if any) and pull."""
        if self._connection is None:
            self.source: Source = await self._backend.open_source(
                self._queue, prefetch=self._prefetch
            )
        else:  # a broker connection owned by a sibling actor (see WorkerApp.build)
            connection = await self.find(self._connection).ask(CONNECTION, timeout=30)
            opener: Any = self._backend
            self.source = await opener.open_source(
                self._queue, prefetch=self._prefetch, connection=connection
            )
        self._intake = anyio.CancelScope()
        self.start_task(self._pull)

    @property
    def backend(self) -> Backend:
        """The backend it consumes from (for metrics and health: queue depth)."""
        return self._backend

    @property
    def connection_actor(self) -> str | None:
        """The path of the connection actor it consumes on (relative to it), if any."""
        return self._connection

    def statistics(self) -> ConsumerStatistics:
        """Messages received and settled so far, and whether it is pulling now.

        Not pulling once its source failed (the connection was lost), even before
        the pull task has raised and the consumer has crashed.
        """
        live: bool = getattr(self.source, "live", True)
        consuming = live and not self._intake.cancel_called
        return self._tally.statistics(self._queue, consuming=consuming)

    async def _pull(self) -> None:
        downstream = self.find(self._downstream)
        receive = self.source.receive
        batch = self._prefetch
        min_demand = max(1, batch // 2)
        pulled = self._tally.pulled
        with self._intake:
            while True:
                deliveries = await receive(batch, min_demand)
                pulled(deliveries)
                await downstream.tell(one_or_run(deliveries))

    async def receive(self, message: Any) -> Any:
        """Settle outcomes; on `StopIntake`, stop pulling and return the source.

        `SOURCE` is answered with the source, for a backend's helper actors.
        """
        if type(message) is Outcome:
            self._settle(message)
            return None
        if type(message) is BatchOutcomes:
            for outcome in message.outcomes:
                self._settle(outcome)
            return None
        if type(message) is StopIntake:
            self._intake.cancel()
            return self.source
        if type(message) is GetSource:  # a backend's helper actors (e.g. Redis leases) ask
            return self.source
        return None

    def _settle(self, outcome: Outcome) -> None:
        self._tally.outcome(outcome)
        handle = outcome.delivery.handle
        if handle.decision is not None:  # settled by hand, or requeued on a crash
            return
        kind = outcome.kind
        if kind is _SUCCEEDED:
            handle.ack()
        elif kind is OutcomeKind.RETRY:
            handle.retry(outcome.delay)
        elif kind is OutcomeKind.REQUEUE:
            handle.requeue()
        elif kind is OutcomeKind.DEFER:
            handle.defer(outcome.delay)
        elif kind is OutcomeKind.SETTLED:  # not run: its consumer was lost
            return
        else:
            reason = outcome.reason or kind.value
            if kind is OutcomeKind.FAILED:
                reason = f"failed (no retry stage): {reason}"
            message = outcome.delivery.message
            self.log.warning(
                "message.dead_lettered",
                message_id=message.id,
                attempt=message.attempt,
                reason=reason,
            )
            handle.dead_letter(reason)
            if self._dead_letters is not None:
                self._record(message, reason)

    def _record(self, message: Message, reason: str) -> None:
        letter = DeadLetter(
            message.id,
            message.queue,
            message.body,
            message.properties,
            reason,
            message.attempt,
            time.time(),
        )
        try:
            self.find(self._dead_letters or "").tell_nowait(letter)
        except ActorError as exc:  # the backend's dead-letter queue still has it
            self.log.error("dead_letter_record.lost", message_id=message.id, error=str(exc))

    async def on_stop(self, exit: Exit) -> None:
        """Stop intake, then close the source: unsettled deliveries go back."""
        self._intake.cancel()
        await self.source.close()
