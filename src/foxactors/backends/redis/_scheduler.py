"""The delayed set: entries due later (retries, deferrals, delayed publishes).

Scored by due time on the Redis clock, so every process agrees on when an entry is
due; a scheduler moves due entries back into the stream of their priority's level,
each exactly once however many schedulers run (one Lua script per batch). One set
serves every level of a queue.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Mapping
from typing import Any

from . import _levels as levels
from . import _scripts as scripts

MOVE_BATCH = 1000
"""Due entries moved at most per script run (one run holds Redis for its length)."""


async def schedule(client: Any, delayed_set: str, delay: float, fields: Mapping[str, Any]) -> None:
    """Add an entry with ``fields`` to ``delayed_set``, due in ``delay`` seconds."""
    flat = [uuid.uuid4().hex, *itertools.chain.from_iterable(fields.items())]
    await client.eval(scripts.SCHEDULE, 1, delayed_set, math.ceil(delay * 1000), *flat)


_ROUTE = levels.route_arguments()


async def move_due(
    client: Any, delayed_set: str, streams: tuple[str, ...], maxlen: int | None
) -> tuple[int, float | None]:
    """Move due entries into ``streams`` (a queue's levels, highest first).

    Each goes to its priority's level. Returns how many moved, and the seconds until
    the next is due (None: nothing waits).
    """
    moved, wait = await client.eval(
        scripts.MOVE_DUE, 1 + len(streams), delayed_set, *streams, MOVE_BATCH, maxlen or "", *_ROUTE
    )
    return int(moved), (None if int(wait) < 0 else int(wait) / 1000)
