"""The delayed set: entries due later (retries, deferrals, delayed publishes).

Scored by due time on the Redis clock, so every process agrees on when an entry is
due; a scheduler moves due entries back into their stream, each exactly once however
many schedulers run (one Lua script per batch).
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Mapping
from typing import Any

from . import _scripts as scripts

MOVE_BATCH = 1000
"""Due entries moved at most per script run (one run holds Redis for its length)."""


async def schedule(client: Any, delayed_set: str, delay: float, fields: Mapping[str, Any]) -> None:
    """Add an entry with ``fields`` to ``delayed_set``, due in ``delay`` seconds."""
    flat = [uuid.uuid4().hex, *itertools.chain.from_iterable(fields.items())]
    await client.eval(scripts.SCHEDULE, 1, delayed_set, math.ceil(delay * 1000), *flat)


async def move_due(
    client: Any, delayed_set: str, stream: str, maxlen: int | None
) -> tuple[int, float | None]:
    """Move due entries into ``stream``: (how many, seconds until the next is due)."""
    moved, wait = await client.eval(
        scripts.MOVE_DUE, 2, delayed_set, stream, MOVE_BATCH, maxlen or ""
    )
    return int(moved), (None if int(wait) < 0 else int(wait) / 1000)
