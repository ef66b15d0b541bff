"""`RedisDeadLetters`: the dead-letter stream of a stream, listed, replayed, purged."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from foxactors.backends._deadletter import DeadLetter

from . import _levels as levels
from . import _scripts as scripts
from . import _wire as wire
from ._fair import FairKeys
from ._fair import replay as fair_replay

if TYPE_CHECKING:
    from ._backend import RedisBackend


class RedisDeadLetters:
    """The dead-letter stream of ``queue`` (``{stream}:dlq`` by default).

    Uses the backend's publishing client.

    Attributes:
        queue: The stream whose dead letters these are.
    """

    def __init__(self, backend: RedisBackend, queue: str) -> None:
        self._backend = backend
        self.queue = queue
        self._stream = backend.dead_letter_stream(queue)

    async def list(self, *, limit: int | None = 1000) -> builtins.list[DeadLetter]:
        """Return up to ``limit`` dead letters, oldest first, leaving them in place."""
        backend = self._backend
        client = await backend._client()
        entries = await client.xrange(self._stream, count=limit)
        payload_key = backend.payload_field.encode()
        default = backend._default_properties
        return [
            wire.dead_letter(self.queue, entry_id, fields, payload_key, default)
            for entry_id, fields in entries
        ]

    async def count(self) -> int:
        """Return how many entries the dead-letter stream holds."""
        client = await self._backend._client()
        return int(await client.xlen(self._stream))

    async def replay(self, *, limit: int | None = None) -> int:
        """Move dead letters back to the stream (attempts start over), oldest first.

        Each goes to the stream of its priority's level, as when it was published;
        on a fair queue (its keys are on the server), to the back of its tenant's
        list, as a publish would add it (it waits for its tenant's turn and counts
        against its limit). Each move is one Lua script (add it back, delete the
        dead letter): a dead letter is never lost nor replayed twice.
        """
        client = await self._backend._client()
        keys = FairKeys.of(self.queue)
        fair_queue = bool(await client.exists(keys.conf))
        maxlen = self._backend.maxlen or ""
        streams = self._backend.level_streams(self.queue)
        moved = 0
        start = "-"
        while limit is None or moved < limit:
            count = 100 if limit is None else min(100, limit - moved)
            page = await client.xrange(self._stream, min=start, count=count)
            if not page:
                break
            for entry_id, fields in page:
                if fair_queue:
                    moved += await fair_replay(
                        client, keys, self._stream, entry_id, (*wire.DLQ_FIELDS, wire.ATTEMPT_FIELD)
                    )
                    continue
                target = streams[levels.level_of_field(fields.get(b"priority"))]
                moved += int(
                    await client.eval(
                        scripts.REPLAY,
                        2,
                        self._stream,
                        target,
                        entry_id,
                        maxlen,
                        *wire.DLQ_FIELDS,
                        wire.ATTEMPT_FIELD,
                    )
                )
            start = "(" + page[-1][0].decode()
        return moved

    async def purge(self) -> int:
        """Delete the dead letters; return how many there were."""
        client = await self._backend._client()
        return int(await client.xtrim(self._stream, maxlen=0, approximate=False))
