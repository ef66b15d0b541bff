"""A payment shop as a supervision tree that crashes and recovers, visibly.

    /shop                 supervisor, stops once the feeder is done (auto_shutdown)
      ledger              counts what was paid; answers "report"
      workers             supervisor, one_for_one, restart delay with backoff
        worker-1..3       pay orders; the card gateway times out now and then
      feeder              sends the orders with backpressure (significant)

A gateway timeout crashes the worker that saw it. Its supervisor restarts it after
a short delay; the order it was handling is handed back to its mailbox, which
survives the restart, so every order is paid exactly once.

Run it with ``foxactors run examples.supervision_tree:app`` or
``python examples/supervision_tree.py``.
"""

from __future__ import annotations

from typing import Any

import attrs
import structlog

import foxactors as fa

ORDERS = 20
WORKERS = 3

log = structlog.get_logger("shop")


@attrs.frozen
class Order:
    """One order to pay."""

    id: int
    cents: int
    attempt: int = 1


class GatewayTimeout(Exception):
    """The card gateway did not answer: the worker handling it crashes."""


class Ledger(fa.Actor[Any]):
    """Counts paid orders; tells the feeder once all are paid."""

    def __init__(self) -> None:
        self.paid: set[int] = set()
        self.cents = 0

    async def receive(self, message: Any) -> Any:
        if message == "report":
            return len(self.paid), self.cents
        assert isinstance(message, Order)
        if message.id in self.paid:
            raise RuntimeError(f"order {message.id} paid twice")
        self.paid.add(message.id)
        self.cents += message.cents
        if len(self.paid) == ORDERS:
            await self.find("/shop/feeder").tell("all paid")
        return None


class PaymentWorker(fa.Actor[Order]):
    """Pays orders; every seventh order times out on its first attempt."""

    async def on_start(self) -> None:
        self.ledger = self.find("/shop/ledger")

    async def receive(self, order: Order) -> None:
        if order.id % 7 == 0 and order.attempt == 1:
            raise GatewayTimeout(f"no answer for order {order.id}")
        await self.ledger.tell(order)
        log.info("order.paid", worker=self.path, order=order.id, attempt=order.attempt)

    async def on_crash(self, message: Order | None, error: Exception) -> None:
        if message is not None:  # hand it to our next life: the mailbox survives
            self.ref.tell_nowait(attrs.evolve(message, attempt=message.attempt + 1))


class Feeder(fa.Actor[str]):
    """Sends the orders round robin; stops once the ledger reports all paid."""

    async def on_start(self) -> None:
        self.start_task(self.feed)

    async def feed(self) -> None:
        workers = [self.find(f"/shop/workers/worker-{i}") for i in range(1, WORKERS + 1)]
        log.info("shop.open", orders=ORDERS, workers=WORKERS)
        for n in range(1, ORDERS + 1):
            await workers[n % WORKERS].tell(Order(n, cents=100 * n + 99))

    async def receive(self, message: str) -> None:
        paid, cents = await self.find("/shop/ledger").ask("report")
        log.info("shop.closed", paid=paid, total=f"{cents / 100:.2f}")
        self.stop()  # transient and significant: the shop shuts down


def app() -> fa.ChildSpec:
    """Build the shop's tree."""
    workers = fa.Supervisor.spec(
        "workers",
        [
            fa.ChildSpec(
                f"worker-{i}",
                PaymentWorker,
                backoff=fa.Backoff(min_delay=0.05, max_delay=1.0),
                mailbox_size=ORDERS + 1,
            )
            for i in range(1, WORKERS + 1)
        ],
        strategy="one_for_one",
        max_restarts=5,
        within=5,
    )
    return fa.Supervisor.spec(
        "shop",
        [
            fa.ChildSpec("ledger", Ledger),
            workers,
            fa.ChildSpec("feeder", Feeder, restart="transient", significant=True),
        ],
        auto_shutdown="any_significant",
    )


if __name__ == "__main__":
    fa.configure_logging()
    exit = fa.run(app())
    log.info("system.stopped", exit=str(exit))
