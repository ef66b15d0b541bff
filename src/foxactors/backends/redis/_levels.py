"""Priority levels on Redis Streams: one stream per level, read highest first.

A stream keeps insertion order and nothing else, so each named `Priority` level of a
queue ``s`` has a stream of its own: ``s`` itself for `Priority.NORMAL` (where
messages without a priority go, so streams written before priorities keep working),
``s:critical``, ``s:high`` and ``s:low`` for the others (the name is configurable).
A priority between two levels goes to the level below it (5 to normal, 8 to high).

A consumer reads the levels highest first, never more than its credit in all
(`RedisSource._read_levels`): first in, first out within a level, strict between
levels (a lower level waits while a higher one has entries ready; nothing ages).
Every script that writes an entry (requeue, the scheduler, a replay) puts it in the
stream of its ``priority`` field's level.

Pure functions and constants: no connection.
"""

from __future__ import annotations

from foxactors._message import Priority

LEVELS = (Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW)
"""The levels in the order a consumer reads them: highest first."""
NORMAL = LEVELS.index(Priority.NORMAL)
"""The index of the level whose stream is the queue's own name."""
FLOORS = tuple(int(level) for level in LEVELS)
"""The lowest priority of each level, in `LEVELS` order (the scripts route by them)."""
TAG_PREFIX = tuple(
    b"" if i == NORMAL else level.name[0].lower().encode() for i, level in enumerate(LEVELS)
)
"""What a delivery's tag puts before its entry id: ids repeat across streams, tags may not.

Entry ids begin with a digit, so a letter tells the level; normal's tags are the ids."""

_LEVEL_OF = {p: next(i for i, floor in enumerate(FLOORS) if p >= floor) for p in range(10)}


def level_of(priority: int | None) -> int:
    """The index in `LEVELS` of the level a message of ``priority`` goes to."""
    if priority is None:
        return NORMAL
    level = _LEVEL_OF.get(priority)
    if level is None:  # out of range: only from other producers (publish refuses it)
        return 0 if priority > max(FLOORS) else len(LEVELS) - 1
    return level


def level_of_field(value: bytes | None) -> int:
    """The level of an entry whose ``priority`` field is ``value`` (bad or missing: normal).

    A bad value is dead-lettered by the consumer that reads it, whichever stream it is in.
    """
    if value is None:
        return NORMAL
    try:
        return level_of(int(value))
    except ValueError:
        return NORMAL


def level_streams(stream_format: str, stream: str) -> tuple[str, ...]:
    """The streams of ``stream``'s levels, in `LEVELS` order; normal's is ``stream``."""
    return tuple(
        stream if i == NORMAL else stream_format.format(stream=stream, level=level.name.lower())
        for i, level in enumerate(LEVELS)
    )


def route_arguments() -> tuple[int, ...]:
    """What the scripts that route entries by priority take: normal's place, the floors.

    Places count from 1 in `LEVELS` order, as Lua does.
    """
    return (NORMAL + 1, *FLOORS)
