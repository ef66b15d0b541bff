"""The Lua scripts of the Redis job store, read from ``lua/`` at import.

Each transition of `_transitions` is one script, so Redis applies it atomically: the
record, its indexes and its key change together, or not at all. ``lua/common.lua``
(the record's hash, the indexes, the shared steps) is prepended to each; each file
says its arguments and reply. Scripts run by their SHA1 (EVALSHA), loaded on first
use by the store.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files

import attrs

_LUA = files(__package__).joinpath("lua")


SHARED = 0
"""Calls of the script joined into one (`RedisLink.call_joined`) pass their parts as
trailing arguments, and each caller gets the one reply."""
JSON_ROWS = -1
"""Joined calls pass their parts (JSON texts) as one JSON array; a reply item per part.

A positive number ``n`` instead: the parts are trailing arguments in rows of ``n``,
and the reply has an item per row."""


@attrs.frozen
class Script:
    """A script's name, its full source (with the prelude) and the SHA1 Redis knows it by.

    ``rows``: how calls of it joined into one pass their parts (`SHARED`, `JSON_ROWS`
    or a row's width), for the scripts that take them.
    """

    name: str
    source: str
    sha: str
    rows: int = SHARED


def _load(name: str, rows: int = SHARED) -> Script:
    source = _COMMON + _LUA.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    return Script(name, source, sha, rows)


_COMMON = _LUA.joinpath("common.lua").read_text(encoding="utf-8")

CREATE = _load("create", JSON_ROWS)
"""Insert records unless their keys are held (`JobStore.create`, `create_many`)."""
COMMIT = _load("commit")
"""Mark enqueues finished."""
DISCARD = _load("discard")
"""Delete unfinished enqueues and free their keys."""
START = _load("start", 5)
"""A worker got a delivery: lease the attempt, if the job may run."""
HEARTBEAT = _load("heartbeat")
"""Renew a running attempt's lease; tell whether a cancel was recorded."""
RENEW = _load("renew")
"""Renew many running attempts' leases; tell which have a cancel recorded."""
PROGRESS = _load("progress")
"""Record a running attempt's progress; tell whether a cancel was recorded."""
COMPLETE = _load("complete", 5)
"""The handler returned: succeeded, unless a cancel was recorded first."""
FAIL = _load("fail")
"""An attempt failed: retrying or dead, unless a cancel was recorded first."""
RELEASE = _load("release")
"""An attempt stopped unfinished: pending again, unless a cancel was recorded."""
CANCEL = _load("cancel")
"""Record a cancel."""
RETRY = _load("retry")
"""A dead or cancelled job back to pending."""
REAP = _load("reap")
"""One batch of expired leases, records past retention and abandoned enqueues."""
LIST = _load("list")
"""One page of records, newest first, from the indexes."""
PERIODIC_ADVANCE = _load("periodic_advance")
"""Remember a periodic job's last tick enqueued, only ever forwards."""
