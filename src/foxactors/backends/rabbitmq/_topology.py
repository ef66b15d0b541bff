"""`Topology`: the names and arguments of a work queue's retry and dead-letter queues."""

from __future__ import annotations

import math
from typing import Any

import attrs

from foxactors._errors import ConfigurationError
from foxactors._validate import require_int


def delay_bucket(delay: float) -> int:
    """Round ``delay`` seconds up to a bucket in milliseconds (two significant digits).

    Few buckets (at most 90 per power of ten) keep the number of retry queues small
    while no message waits more than 10% longer than asked.
    """
    ms = max(1, math.ceil(delay * 1000))
    scale = 10 ** max(0, len(str(ms)) - 2)
    return int(math.ceil(ms / scale) * scale)


@attrs.frozen
class Topology:
    """Names and shape of the queues of one work queue.

    Attributes:
        queue_type: ``"classic"`` or ``"quorum"``.
        max_priority: For classic queues, the highest priority honoured (None: none).
        retry_exchange: Format of the retry exchange's name (``{q}``: the queue).
        retry_queue: Format of a retry bucket queue's name (``{ms}``: its delay).
        dead_letter_queue: Format of the dead-letter queue's name.
    """

    queue_type: str = attrs.field(default="classic")
    max_priority: int | None = None
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
            if self.queue_type == "quorum":
                raise ConfigurationError("quorum queues have no priorities: drop max_priority")

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
