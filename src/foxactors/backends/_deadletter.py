"""`DeadLetter`: a message given up on; and how every broker writes down why and when.

One record for all backends, and one set of names for what a dead letter adds to
its message: RabbitMQ's headers and Redis's fields alike.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from foxactors._message import MessageProperties

if TYPE_CHECKING:
    from ._contract import DeadLetterQueue

FAILURE_REASON = "x-failure-reason"
"""Why it was dead-lettered (one line)."""
FINAL_ATTEMPT = "x-final-attempt"
"""How many times it was delivered."""
FAILED_AT = "x-failed-at"
"""When, as `encode_time` writes it."""
ORIGINAL_ROUTING_KEY = "x-original-routing-key"
"""The queue (routing key) it came from (RabbitMQ)."""
ORIGINAL_ID = "x-original-id"
"""The id of the entry it was copied from (Redis)."""


@attrs.frozen
class DeadLetter:
    """A message that was given up on, with why and when.

    Attributes:
        id: The original message id.
        queue: The queue it came from.
        body: The original body, untouched.
        properties: The original properties and headers, untouched.
        reason: Why it was dead-lettered (one line).
        attempts: How many times it was delivered.
        failed_at: When, in wall-clock Unix seconds (NaN if a broker's record lacks it).
    """

    id: str
    queue: str
    body: bytes
    properties: MessageProperties
    reason: str
    attempts: int
    failed_at: float


def encode_time(unix: float) -> str:
    """A wall-clock time as dead letters record it: ISO 8601 in UTC."""
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).isoformat()


def decode_time(value: Any) -> float:
    """The Unix time `encode_time` wrote (str or bytes), or NaN if it is not one."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        return datetime.datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return math.nan


def decode_attempts(value: Any) -> int:
    """The attempt count a dead letter recorded (an int, or its digits), else 0."""
    if type(value) is int:
        return value
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return int(value) if isinstance(value, str) and value.isdigit() else 0


def letter_fields(reason: str, attempt: int, failed_at: float) -> dict[str, Any]:
    """What a dead letter adds to its message: why, after how many attempts, when."""
    return {FAILURE_REASON: reason, FINAL_ATTEMPT: attempt, FAILED_AT: encode_time(failed_at)}


def read_letter_fields(fields: Mapping[str, Any]) -> tuple[str | None, int, float]:
    """Reason (None if missing), attempts and time from what `letter_fields` wrote."""
    reason = fields.get(FAILURE_REASON)
    if isinstance(reason, bytes):
        reason = reason.decode(errors="replace")
    return (
        None if reason is None else str(reason),
        decode_attempts(fields.get(FINAL_ATTEMPT)),
        decode_time(fields.get(FAILED_AT, "")),
    )


class DeadLetterShortcuts:
    """The dead-letter calls of a broker backend, each a shortcut to its queue object.

    A backend defines `dead_letter_queue`; ``backend.dead_letters(q)`` and the rest
    are the same as ``backend.dead_letter_queue(q).list()`` and its siblings.
    """

    def dead_letter_queue(self, queue: str) -> DeadLetterQueue:
        """The dead-letter queue of ``queue``: list, count, replay, purge."""
        raise NotImplementedError

    async def dead_letters(self, queue: str, *, limit: int = 1000) -> list[DeadLetter]:
        """Return up to ``limit`` dead letters of ``queue``, oldest first, leaving them."""
        return await self.dead_letter_queue(queue).list(limit=limit)

    async def count_dead_letters(self, queue: str) -> int:
        """Return how many dead letters of ``queue`` wait."""
        return await self.dead_letter_queue(queue).count()

    async def replay_dead_letters(self, queue: str, *, limit: int | None = None) -> int:
        """Move dead letters back to ``queue``, oldest first; return how many moved."""
        return await self.dead_letter_queue(queue).replay(limit=limit)

    async def purge_dead_letters(self, queue: str) -> int:
        """Delete the dead letters of ``queue``; return how many there were."""
        return await self.dead_letter_queue(queue).purge()
