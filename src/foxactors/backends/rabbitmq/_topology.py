"""`Topology`: the names and arguments of a work queue's retry and dead-letter queues."""

from __future__ import annotations

import math
from typing import Any

import attrs

from foxactors._errors import ConfigurationError
from foxactors._message import MAX_PRIORITY
from foxactors._validate import require_int


def delay_bucket(delay: float) -> int:
    """Round ``delay`` seconds up to a bucket in milliseconds (two significant digits).

    Few buckets (at most 90 per power of ten) keep the number of retry queues small
    while no message waits more than 10% longer than asked.
    """
    ms = max(1, math.ceil(delay * 1000))
    scale = 10 ** max(0, len(str(ms)) - 2)
    return int(math.ceil(ms / scale) * scale)


def _default_max_priority(topology: Topology) -> int | None:
    return MAX_PRIORITY if topology.queue_type == "classic" else None


@attrs.frozen
class Topology:
    """Names and shape of the queues of one work queue.

    Attributes:
        queue_type: ``"classic"`` or ``"quorum"``.
        max_priority: The work queue's ``x-max-priority``: by default `MAX_PRIORITY`
            (9) for classic queues, so that every `Priority` level is honoured, and
            None for quorum queues, which take no such argument (RabbitMQ 4 orders
            their messages in two levels by itself: see the docs). None on a classic
            queue: no priorities (a queue declared before priorities existed).
        retry_exchange: Format of the retry exchange's name (``{q}``: the queue).
        retry_queue: Format of a retry bucket queue's name (``{ms}``: its delay).
        dead_letter_queue: Format of the dead-letter queue's name.
    """

    queue_type: str = attrs.field(default="classic")
    max_priority: int | None = attrs.field(
        default=attrs.Factory(_default_max_priority, takes_self=True)
    )
    retry_exchange: str = "{q}-retry_exchange"
    retry_queue: str = "{q}-retry-{ms}"
    dead_letter_queue: str = "{q}-dlq"

    @queue_type.validator
    def _check_type(self, _: Any, value: str) -> None:
        if value not in ("classic", "quorum"):
            raise ConfigurationError(f"queue_type must be 'classic' or 'quorum', got {value!r}")

    def __attrs_post_init__(self) -> None:
        if self.max_priority is not None:
            require_int("max_priority", self.max_priority, 1)
            if self.max_priority > 255:  # AMQP carries a priority in one octet
                raise ConfigurationError(
                    f"max_priority must be at most 255 (RabbitMQ's limit), got "
                    f"{self.max_priority}; {MAX_PRIORITY} covers every level"
                )
            if self.queue_type == "quorum":
                raise ConfigurationError(
                    "quorum queues take no x-max-priority (RabbitMQ 4 gives them two "
                    "priority levels by itself): drop max_priority"
                )

    def without_priorities(self) -> Topology:
        """This topology for a work queue declared without ``x-max-priority``."""
        return attrs.evolve(self, max_priority=None)

    def dlq(self, queue: str) -> str:
        """The dead-letter queue of ``queue``."""
        return self.dead_letter_queue.format(q=queue)

    def retry_exchange_of(self, queue: str) -> str:
        """The retry exchange of ``queue``."""
        return self.retry_exchange.format(q=queue)

    def arguments(self, queue: str) -> dict[str, Any]:
        """The declaration arguments of the work queue ``queue``."""
        args: dict[str, Any] = {
            "x-queue-type": self.queue_type,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dlq(queue),
        }
        if self.max_priority is not None:
            args["x-max-priority"] = self.max_priority
        return args
