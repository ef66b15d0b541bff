"""`Pipeline`: the supervisor of one pipeline, and its graceful drain."""

from __future__ import annotations

from collections.abc import Sequence

from foxactors._errors import ActorError, RestartIntensityExceeded
from foxactors._lifecycle import ActorState, Exit
from foxactors._spec import ChildSpec
from foxactors._supervisor import Supervisor

from ._messages import RETURN_HELD, RETURN_PENDING, STOP_INTAKE


class Pipeline(Supervisor):
    """The supervisor of one pipeline; stops it in a fixed, graceful sequence.

    Children, in start order: the pool (with its workers), the stages from the
    innermost out, the consumer. They are one_for_one: a crashed actor returns the
    delivery in hand (a crashed pool, the deliveries it held), so nobody else needs
    a restart; restarting the consumer would return every in-flight delivery and
    cause needless duplicates. A graceful stop: stop intake; return every delivery
    no worker started, wherever it waits (each stage, outermost first, gives up
    what it holds, `Stage.on_drain`; then the pool its unstarted work); let
    in-flight work finish within ``drain_timeout`` and settle it; then stop the
    children in reverse order. The consumer stops first and returns whatever
    missed the deadline to the queue.
    """

    def __init__(
        self,
        children: list[ChildSpec],
        *,
        drain_timeout: float,
        consumer: str = "consumer",
        stages: Sequence[str] = (),
    ) -> None:
        super().__init__(children, strategy="one_for_one", max_restarts=10, within=30)
        self._drain_timeout = drain_timeout
        self._consumer = consumer
        self._stages = tuple(stages)  # outermost (nearest the consumer) first

    def escalates(self, id: str, exit: Exit) -> bool:
        """The intake giving up (``give_up_after``) fails the pipeline at once.

        Its parent decides then; restarting the intake would only try the broker
        again at once.
        """
        return id == "intake" and isinstance(exit.error, RestartIntensityExceeded)

    async def on_stop(self, exit: Exit) -> None:
        """Drain first (on a graceful stop), then stop the children."""
        if not exit.abnormal:
            await self._drain()
        await super().on_stop(exit)

    async def _drain(self) -> None:
        try:
            consumer = self.find(self._consumer)
            if consumer.state is not ActorState.RUNNING:  # e.g. waiting for its broker
                self.log.info("pipeline.drain_skipped", consumer=consumer.state.value)
                return
            source = await consumer.ask(STOP_INTAKE, timeout=5)
        except ActorError as exc:
            self.log.warning("pipeline.drain_skipped", error=str(exc))
            return
        returned = await self._return_unstarted()
        settled = await self.supervise_until(source.wait_settled, self._drain_timeout)
        self.log.info(
            "pipeline.drained",
            returned=returned,
            unsettled=source.unsettled,
            deadline_missed=not settled,
        )

    async def _return_unstarted(self) -> int:
        """Ask each stage, outermost first, then the pool, to return what it holds.

        In that order, and each only once the one above it has answered: a stage
        handles its mailbox in order, so whatever the consumer or a stage above sent
        on before answering is in the next one's mailbox ahead of the request, and
        nothing is sent on by an actor after it was drained. Returned deliveries go
        back through the outcome route (the pool's are requeued by the pool) while
        the source is open. Returns how many went back.
        """
        returned = 0
        for name, request in (*((n, RETURN_HELD) for n in self._stages), ("pool", RETURN_PENDING)):
            held = await self._ask_draining(name, request)
            returned += held if isinstance(held, int) else 0  # a stage's own receive
        return returned

    async def _ask_draining(self, name: str, request: object) -> object:
        """Ask a child from ``on_stop``, restarting children meanwhile.

        A stage that crashed just before the stop answers once it is back (its
        mailbox kept the question): without supervising, nobody would restart it
        and the question would wait out its deadline. None if it did not answer.
        """
        answer: list[object] = []

        async def ask() -> None:
            try:
                answer.append(await self.find(name).ask(request, timeout=5))
            except ActorError as exc:  # it returns what it holds when it stops
                self.log.warning("pipeline.drain_incomplete", stage=name, error=str(exc))
                answer.append(None)

        if not await self.supervise_until(ask, 5) and not answer:
            self.log.warning("pipeline.drain_incomplete", stage=name, error="no answer")
        return answer[0] if answer else None
