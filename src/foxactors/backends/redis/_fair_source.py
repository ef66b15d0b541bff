"""`FairRedisSource`: a consumer of a fair queue (see `_fair`)."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from foxactors._ack import Decision
from foxactors.backends._fair import TENANT_HEADER
from foxactors.backends._source import Settlement

from . import _fair as fair
from . import _levels as levels
from . import _wire as wire
from ._source import RedisSource, _pairs

if TYPE_CHECKING:
    from ._backend import RedisBackend

_NORMAL = levels.NORMAL
_ACK = Decision.ACK
_TENANT = TENANT_HEADER.encode()


class FairRedisSource(RedisSource):
    """A `RedisSource` whose reads take entries by weighted turns over tenants.

    Everything it reads is in the queue's own stream (normal's level): the pull
    script moves entries there from the tenants' lists and reads them in one step.
    With ``tenants``, it takes only those tenants' entries.
    """

    def __init__(
        self, backend: RedisBackend, queue: str, *, tenants: frozenset[str] | None, **kw: Any
    ) -> None:
        super().__init__(backend, queue, **kw)
        self.tenants = tenants
        self._keys = fair.FairKeys.of(queue)
        # the tenant of each entry read and not yet settled: acks then free their
        # tenants' slots without looking each entry up again
        self._tenant_of: dict[bytes, str] = {}

    async def start(self) -> None:
        """Write the queue's shares and load the scripts, then start as every source does."""
        shares = self.backend.fair_shares(self.queue)
        if shares is not None:
            await fair.write_conf(self.client, self._keys, shares)
        await fair.load_scripts(self.client)
        await super().start()

    def _pull_command(self, count: int) -> tuple[Any, ...]:
        return fair.pull_command(
            self._keys,
            self.queue,
            count=count,
            group=self.group,
            consumer=self.consumer,
            maxlen=self.backend.maxlen,
            tenants=self.tenants,
        )

    def _buffer_pulled(self, read: Any) -> bool:
        """Buffer what a pull read (noting each entry's tenant); False: nothing."""
        if not read or self._closed:
            return False
        entries = read[0][1]
        for entry_id, flat in entries:
            fields = _pairs(flat)
            tenant = fields.get(_TENANT, b"")
            self._tenant_of[entry_id] = tenant.decode()
            self._buffer.append((entry_id, fields, 1, _NORMAL))
        return bool(entries)

    async def _read_levels(self, count: int, block: float) -> None:
        try:
            read, last = await self.client.execute_command(*self._pull_command(count))
        except NoScriptError:  # the server restarted or flushed its scripts
            await fair.load_scripts(self.client)
            read, last = await self.client.execute_command(*self._pull_command(count))
        if self._buffer_pulled(read):
            return
        # nothing for us: wait until a publish, a settle or a due retry says otherwise
        await self.client.execute_command(
            "XREAD", "COUNT", 1, "BLOCK", int(block * 1000), "STREAMS", self._keys.wake, last
        )

    async def _apply(self, batch: list[Settlement]) -> None:
        acks: dict[int, dict[str, list[bytes]]] = {}
        copies: list[tuple[int, wire.Copy]] = []
        for tag, held, decision, delay, reason in batch:
            level = held[2]
            entry_id = tag if level == _NORMAL else tag[1:]
            tenant = self._tenant_of.pop(entry_id, fair.UNKNOWN)  # unknown: reclaimed
            if decision is _ACK:
                acks.setdefault(level, {}).setdefault(tenant, []).append(entry_id)
            else:
                copies.append((level, (entry_id, held[0], decision, delay, reason)))
        # The reader waits for the credit this batch frees, and will pull next: the
        # same round trip pulls as many as the batch frees credit for, after the
        # settlements on the server (the buffer is empty, so the credit holds).
        ahead = 0
        if self._credit is not None and not self._buffer:
            ahead = self.prefetch - len(self._unsettled) - self._settling + len(batch)
        results = await self._settle(acks, copies, ahead)
        if any(isinstance(result, NoScriptError) for result in results):
            # the server lost the scripts: none of them ran; once more, loaded
            await fair.load_scripts(self.client)
            results = await self._settle(acks, copies, ahead)
        pulled = results.pop() if ahead > 0 else None
        for result in results:
            if isinstance(result, Exception):
                raise result
        if isinstance(pulled, Exception):
            raise pulled
        if pulled is not None:
            self._buffer_pulled(pulled[0])
        self._copied(copies, results[len(results) - len(copies) :])

    async def _settle(
        self,
        acks: dict[int, dict[str, list[bytes]]],
        copies: list[tuple[int, wire.Copy]],
        ahead: int,
    ) -> list[Any]:
        """Acks, copies, and a pull of ``ahead`` (if any) in one round trip: the replies."""
        pipe = self.client.pipeline(transaction=False)
        for level, ids in acks.items():
            pipe.execute_command(
                *fair.ack_command(self._keys, self._streams[level], self.group, ids)
            )
        for level, entry in copies:
            self._queue_copy(pipe, level, entry)
        if ahead > 0:
            pipe.execute_command(*self._pull_command(ahead))
        return list(await pipe.execute(raise_on_error=False))

    def _queue_copy(self, pipe: Any, level: int, copy: wire.Copy) -> None:
        entry_id, attempt, decision, delay, reason = copy
        extra: tuple[Any, ...] = ()
        if decision is Decision.DEAD_LETTER:
            extra = wire.dead_letter_fields(reason, attempt, entry_id, time.time())
        pipe.execute_command(
            *fair.settle_command(
                self._keys,
                self._streams[level],
                self._delayed,
                self._dead,
                group=self.group,
                consumer=self.consumer,
                entry_id=entry_id,
                mode=wire.COPY_MODE[decision],
                delay=delay,
                give_back=1 if decision is Decision.DEFER else 0,
                token=uuid.uuid4().hex,
                extra=extra,
            )
        )
