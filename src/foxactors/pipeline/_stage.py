"""`Stage`: the base of middleware stages, each an actor between two neighbours."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from foxactors._actor import Actor, ActorRef
from foxactors._errors import ActorStopped
from foxactors._message import Delivery, Outcome, OutcomeKind

from ._messages import ReturnHeld
from ._work import BatchOutcomes, Deliveries, one_or_batch, one_or_run


class Stage(Actor[Any]):
    """A middleware stage: sees each delivery on the way in and its outcome on the way out.

    Subclass it and override `on_delivery` and/or `on_outcome`; call `forward` to pass
    a delivery on towards the workers and `reply` to pass an outcome back towards the
    consumer, which settles it. A stage may also answer a delivery itself (reply an
    outcome without forwarding it), e.g. to dead-letter it. State lives in the stage's
    attributes; the stage handles one message at a time, so it needs no locks.

    A stage that does not override `on_outcome` only looks at deliveries: outcomes
    skip it on their way back (they go straight to the nearest stage above that
    handles outcomes, or to the consumer), so it costs no hop. The rate limiter and
    the batcher are such stages.

    A crash never loses the message in hand: a delivery is returned to the queue, an
    outcome is passed on unchanged. Override the hooks, not `receive`: deliveries and
    outcomes may arrive several at a time (each still goes through `on_delivery` or
    `on_outcome`), and what a stage forwards or replies while handling them goes on
    together once it has handled the last.

    A stage that holds deliveries back (waiting for a token, for a batch to fill...)
    overrides `on_drain` to give them up on a graceful stop: they go back to the
    queue at once instead of keeping the stop waiting.
    """

    _downstream_path = ""
    _upstream_path: str | Callable[[], str] = ""  # or a function: the outcome route
    _down: ActorRef[Any] | None = None
    _up: ActorRef[Any] | None = None
    _replies: list[Outcome] | None = None  # collecting while handling a batch or run
    _forwards: list[Delivery] | None = None  # collecting while handling a run

    def link(self, downstream: str, upstream: str | Callable[[], str]) -> None:
        """Set the paths of the neighbours (done by the pipeline builder).

        ``upstream`` is where this stage's outcomes go: the nearest stage towards
        the consumer that handles outcomes, or the consumer; or a function giving that
        path when the first outcome goes back (the builder's outcome route, known once
        every stage is made).
        """
        self._downstream_path = downstream
        self._upstream_path = upstream

    @property
    def downstream(self) -> ActorRef[Any]:
        """The next actor towards the workers."""
        if self._down is None:
            self._down = self.find(self._downstream_path)
        return self._down

    @property
    def upstream(self) -> ActorRef[Any]:
        """Where outcomes go: the nearest stage above that handles them, or the consumer."""
        if self._up is None:
            path = self._upstream_path
            self._up = self.find(path if isinstance(path, str) else path())
        return self._up

    async def receive(self, message: Any) -> Any:
        """Dispatch deliveries to `on_delivery`, outcomes to `on_outcome`."""
        kind = type(message)
        if kind is Delivery:
            await self.on_delivery(message)
        elif kind is Deliveries:
            await self._on_deliveries(message)
        elif kind is Outcome:
            await self.on_outcome(message)
        elif kind is BatchOutcomes:
            await self._on_outcomes(message)
        elif kind is ReturnHeld:
            return await self._return_held()
        else:
            return await self.on_other(message)
        return None

    async def _return_held(self) -> int:
        """Reply a REQUEUE outcome for each delivery `on_drain` gives up; return how many."""
        returned = [
            Outcome(delivery, OutcomeKind.REQUEUE, reason="returned on shutdown")
            for delivery in await self.on_drain()
            if not delivery.handle.settled
        ]
        await self._send_up(returned)
        return len(returned)

    async def _on_deliveries(self, run: Deliveries) -> None:
        """Deliveries that came together: each goes to `on_delivery`; they go on together."""
        self._forwards, self._replies = [], []
        try:
            for delivery in run.items:
                await self.on_delivery(delivery)
        finally:
            forwards, self._forwards = self._forwards, None
            replies, self._replies = self._replies, None
        if forwards:
            await self.downstream.tell(one_or_run(forwards))
        await self._send_up(replies)

    async def _on_outcomes(self, batch: BatchOutcomes) -> None:
        """Several outcomes at once: each goes to `on_outcome`; replies go on together."""
        self._replies = []
        try:
            for outcome in batch.outcomes:
                await self.on_outcome(outcome)
        finally:
            replies, self._replies = self._replies, None
        await self._send_up(replies)

    async def _send_up(self, replies: list[Outcome]) -> None:
        if replies:
            await self._tell_up(one_or_batch(replies))

    async def _tell_up(self, message: Outcome | BatchOutcomes) -> None:
        """Tell upstream; once it is shut (stopping), the consumer returned the delivery."""
        try:
            await self.upstream.tell(message)
        except ActorStopped:
            self.log.debug("outcome.after_shutdown")

    async def on_delivery(self, delivery: Delivery) -> None:
        """Handle a delivery on its way in; the default forwards it."""
        await self.forward(delivery)

    async def on_outcome(self, outcome: Outcome) -> None:
        """Handle an outcome on its way out; the default replies it."""
        await self.reply(outcome)

    async def on_other(self, message: Any) -> Any:
        """Handle any other message (e.g. a statistics request); the default ignores it.

        A stage that overrides `receive` and passes what it does not know here still
        answers the drain's request (`on_drain`) through this default.
        """
        if type(message) is ReturnHeld:
            return await self._return_held()
        return None

    async def on_drain(self) -> Iterable[Delivery]:
        """Give up the deliveries this stage holds that have not gone on; default none.

        Called once on a graceful stop of the pipeline, after the consumer stopped
        pulling and after every stage nearer the consumer was drained, so no new
        delivery reaches this stage afterwards. Return the deliveries held back
        (and forget them): each goes back to the queue as a REQUEUE outcome, through
        the stages above that handle outcomes, and the consumer settles it while its
        source is still open. Work already sent on (a batch in a handler) is not held:
        it finishes, and the stop waits for it within the drain timeout.
        """
        return ()

    async def forward(self, delivery: Delivery) -> None:
        """Send ``delivery`` on towards the workers."""
        if self._forwards is not None:  # handling a run: sent together afterwards
            self._forwards.append(delivery)
            return
        await self.downstream.tell(delivery)

    async def reply(self, outcome: Outcome) -> None:
        """Send ``outcome`` back towards the consumer.

        If the way back is already shut (the pipeline is stopping), the outcome is
        dropped: the consumer closed its source first, which returned the delivery.
        """
        if self._replies is not None:  # handling a batch: sent together afterwards
            self._replies.append(outcome)
            return
        await self._tell_up(outcome)

    async def on_crash(self, message: Any, error: Exception) -> None:
        """Pass the message in hand on, so that nothing in hand is lost.

        A delivery is returned (requeued); an outcome goes on unchanged. Of a run of
        deliveries nothing had gone on yet (that happens after the last one), so all
        of them are returned.
        """
        reason = f"stage {self.path} crashed"
        if type(message) is Delivery:
            message = Outcome(message, OutcomeKind.REQUEUE, error, reason=reason)
        elif type(message) is Deliveries:
            message = BatchOutcomes(
                tuple(Outcome(d, OutcomeKind.REQUEUE, error, reason=reason) for d in message.items)
            )
        if type(message) is Outcome or type(message) is BatchOutcomes:
            with contextlib.suppress(ActorStopped):  # stopping: the consumer returned it
                self.upstream.tell_nowait(message)


_OUTCOME_HOOKS = ("receive", "on_outcome", "_on_outcomes", "reply")


def handles_outcomes(stage: Stage | type[Stage]) -> bool:
    """Whether a stage (or every instance of a stage class) does anything with outcomes.

    A stage that overrides none of the methods outcomes go through (`Stage.receive`,
    `Stage.on_outcome`, `Stage.reply`) only passes them on, so outcomes may skip it.
    For an instance, methods set on the instance itself count too.
    """
    cls = stage if isinstance(stage, type) else type(stage)
    if any(getattr(cls, hook) is not getattr(Stage, hook) for hook in _OUTCOME_HOOKS):
        return True
    own = getattr(stage, "__dict__", {}) if not isinstance(stage, type) else {}
    return any(hook in own for hook in _OUTCOME_HOOKS)
