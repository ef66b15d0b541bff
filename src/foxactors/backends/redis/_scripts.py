"""The Lua scripts of the Redis Streams backend, read from ``lua/`` at import.

Each one is a step that must not half-happen: Redis runs a script atomically, so a
copy and the acknowledgement of its original, or a due entry's move from the delayed
set back into its stream, happen together or not at all: exactly once, even with
many consumers and schedulers at work. Each file says its keys, arguments and reply.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files

_LUA = files(__package__).joinpath("lua")


def _load(name: str) -> str:
    return _LUA.joinpath(f"{name}.lua").read_text(encoding="utf-8")


load = _load
"""The text of the script ``lua/<name>.lua`` (the fair queues' are built from two)."""


LEVELS = _load("levels")
"""Say how many entries wait for the group in each priority level's stream."""
LEVELS_SHA = hashlib.sha1(LEVELS.encode(), usedforsecurity=False).hexdigest()
"""What EVALSHA runs `LEVELS` by: a consumer runs it with every read."""
SETTLE = _load("settle_entry") + "\n" + _load("settle")
"""Copy an entry (retry, requeue, defer, dead letter) and acknowledge it, if still ours."""
SCHEDULE = _load("schedule")
"""Add an entry to the delayed set, due after a delay on the Redis clock."""
MOVE_DUE = _load("move_due")
"""Move due entries from the delayed set into the streams of their levels."""
RECLAIM = _load("reclaim")
"""Claim entries whose consumers stopped renewing, with their delivery counts."""
RENEW = _load("renew")
"""Reset the idle time of the entries a consumer still owns."""
FORGET = _load("forget")
"""Remove idle consumers that hold nothing."""
REPLAY = _load("replay_entry") + "\n" + _load("replay")
"""Move one dead letter back to its stream."""
