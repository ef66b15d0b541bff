"""`Consumer`: pulls deliveries from a backend with credit and settles their outcomes."""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio

from foxactors._actor import Actor
from foxactors._errors import ActorError
from foxactors._lifecycle import Exit
from foxactors._logging import describe, message_fields, retry_in, traceback_of
from foxactors._message import Message, Outcome, OutcomeKind
from foxactors.backends import CONNECTION, Backend, DeadLetter, GetSource, Source

from ._messages import StopIntake
from ._tally import ConsumerStatistics, Tally
from ._work import BatchOutcomes, one_or_run

_SUCCEEDED = OutcomeKind.SUCCEEDED  # hot path: a global is cheaper than an enum lookup
_DEBUG = logging.DEBUG
# Whether the per-message success line is wanted: one cached stdlib check per message
# (the stdlib logger's own cache, cleared when levels change), no event built otherwise.
_debug_on = logging.getLogger("foxactors").isEnabledFor


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

    Settling is where each failure is logged, exactly once: ``message.failed`` at
    warning with the error, its traceback, the attempt ("2 of 4") and what happens
    next ("retry in 2.0s", "dead-lettered", "requeued"); a dead letter with no failed
    attempt behind it (a poison message, no handler) is ``message.dead_lettered``.
    A success is ``message.succeeded`` at debug, with the handler's duration, when
    the ``foxactors`` stdlib logger is enabled for debug.
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
        self.log.info(
            "intake.consuming",
            queue=self._queue,
            prefetch=self._prefetch,
            backend=type(self._backend).__name__,
        )

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
            if _debug_on(_DEBUG):
                self._succeeded(outcome)
        elif kind is OutcomeKind.RETRY:  # settled, then logged: the delay runs from now
            handle.retry(outcome.delay)
            self._failed(outcome, retry_in(outcome.delay))
        elif kind is OutcomeKind.REQUEUE:
            handle.requeue()
            if outcome.error is not None:  # its stage or worker crashed (not a shutdown)
                self._failed(outcome, "requeued")
        elif kind is OutcomeKind.DEFER:
            handle.defer(outcome.delay)
        elif kind is OutcomeKind.SETTLED:  # not run: its consumer was lost
            return
        else:
            self._dead_letter(outcome)

    def _dead_letter(self, outcome: Outcome) -> None:
        reason = outcome.reason or outcome.kind.value
        if outcome.kind is OutcomeKind.FAILED:
            reason = f"failed (no retry stage): {reason}"
        message = outcome.delivery.message
        outcome.delivery.handle.dead_letter(reason)
        if outcome.error is None:  # no attempt failed: poison, no handler, unsettled
            self.log.warning("message.dead_lettered", **message_fields(message), reason=reason)
        else:
            self._failed(outcome, "dead-lettered", reason)
        if self._dead_letters is not None:
            self._record(message, reason)

    def _succeeded(self, outcome: Outcome) -> None:
        self.log.debug(
            "message.succeeded",
            **message_fields(outcome.delivery.message),
            duration=_seconds(outcome.duration),
        )

    def _failed(self, outcome: Outcome, next: str, reason: str | None = None) -> None:
        """The one line of a failed attempt: error, traceback, "n of m", what comes next."""
        error = outcome.error
        fields = message_fields(outcome.delivery.message)
        if outcome.max_attempts is not None:
            fields["max_attempts"] = outcome.max_attempts
        if error is not None:
            fields["error"] = describe(error)
            if reason is None and outcome.reason != fields["error"]:
                reason = outcome.reason  # e.g. "timed out after 2 s"
        if reason:
            fields["reason"] = reason
        if outcome.duration is not None:
            fields["duration"] = _seconds(outcome.duration)
        fields["next"] = next
        # a crashed worker or stage logged its traceback as it crashed
        if error is not None and outcome.kind is not OutcomeKind.REQUEUE:
            traceback = traceback_of(error)
            if traceback is not None:
                fields["exc_info"] = traceback
        self.log.warning("message.failed", **fields)

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


def _seconds(duration: float | None) -> float | None:
    """A handler's duration for logs: seconds, to the microsecond."""
    return None if duration is None else round(duration, 6)
