"""`FairRedisSource`: a consumer of a fair queue (see `_fair`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from foxactors._ack import Decision
from foxactors._message import Delivery
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
        self._serial = asyncio.Lock()  # settle batches and reclaims, one at a time

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
            tenants=self.tenants,
        )

    def _buffer_pulled(self, read: Any) -> bool:
        """Buffer what a pull read; False: nothing."""
        if not read or self._closed:
            return False
        entries = read[0][1]
        self._buffer.extend((entry_id, _pairs(flat), 1, _NORMAL) for entry_id, flat in entries)
        return bool(entries)

    def _deliver(self, item: Any, now: float) -> Delivery | None:
        """Deliver as every source does, noting the entry's tenant for its settlement.

        Every entry handed out passes here, also one recovered or reclaimed from a
        dead consumer: its settlement then frees its tenant's slot without looking
        the entry up, even once the entry is gone from the stream.
        """
        entry_id, fields = item[0], item[1]
        self._tenant_of[entry_id] = fields.get(_TENANT, b"").decode()
        return super()._deliver(item, now)

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
        # One at a time with `reclaim` and `renew`: an entry trimmed while pending is
        # then found either by one of them (which frees its slot by the tenant noted
        # here) or by the batch's script (which frees it by the tenant it is given),
        # never by both and never by neither, whatever order their replies come in.
        async with self._serial:
            await self._apply_serially(batch)

    async def reclaim(self) -> bool:
        """Claim idle entries as every source does, one at a time with settling."""
        async with self._serial:
            return await super().reclaim()

    async def renew(self) -> None:
        """Renew leases as every source does, one at a time with settling.

        A renewal too can find an entry trimmed while pending.
        """
        async with self._serial:
            await super().renew()

    async def _apply_serially(self, batch: list[Settlement]) -> None:
        acks: dict[int, dict[str, list[bytes]]] = {}
        copies: list[tuple[int, wire.Copy]] = []
        settled: list[bytes] = []
        for tag, held, decision, delay, reason in batch:
            level = held[2]
            entry_id = tag if level == _NORMAL else tag[1:]
            settled.append(entry_id)
            if decision is _ACK:
                tenant = self._tenant_of.get(entry_id, fair.UNKNOWN)
                acks.setdefault(level, {}).setdefault(tenant, []).append(entry_id)
            else:  # the copy's command takes the tenant (`_queue_copy`)
                copies.append((level, (entry_id, held[0], decision, delay, reason)))
        try:
            await self._settle_batch(acks, copies, len(batch))
        finally:
            for entry_id in settled:
                self._tenant_of.pop(entry_id, None)

    async def _settle_batch(
        self,
        acks: dict[int, dict[str, list[bytes]]],
        copies: list[tuple[int, wire.Copy]],
        size: int,
    ) -> None:
        commands = [
            fair.ack_command(self._keys, self._streams[level], self.group, ids)
            for level, ids in acks.items()
        ]
        commands += [self._copy_command(level, entry) for level, entry in copies]
        # The reader waits for the credit this batch frees, and will pull next: the
        # same round trip pulls as many as the batch frees credit for, after the
        # settlements on the server (the buffer is empty, so the credit holds).
        ahead = 0
        if self._credit is not None and not self._buffer:
            ahead = self.prefetch - len(self._unsettled) - self._settling + size
        if ahead > 0:
            commands.append(self._pull_command(ahead))
        results = await self._run(commands)
        lost = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if lost:
            # the server lost the scripts: those commands did not run (the others
            # did); once more, those alone, with the scripts loaded
            await fair.load_scripts(self.client)
            for i, result in zip(lost, await self._run([commands[i] for i in lost]), strict=True):
                results[i] = result
        pulled = results.pop() if ahead > 0 else None
        for result in results:
            if isinstance(result, Exception):
                raise result
        if isinstance(pulled, Exception):
            raise pulled
        if pulled is not None:
            self._buffer_pulled(pulled[0])
        self._copied(copies, results[len(results) - len(copies) :])

    async def _run(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Run ``commands`` in one round trip; their replies (an error as its exception)."""
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))

    async def _trimmed(self, ids: list[bytes], stream: str) -> None:
        """Also free the slots of those this consumer read (their tenants are known).

        An entry another consumer read and that was trimmed before it could be taken
        over keeps its tenant's slot: nothing is left to tell whose it was. (The pull
        never trims a pending entry; this is for the stream trimmed by hand.)
        """
        await super()._trimmed(ids, stream)
        counts: dict[str, int] = {}
        for entry_id in ids:
            tenant = self._tenant_of.pop(entry_id, None)
            if tenant is not None:
                counts[tenant] = counts.get(tenant, 0) + 1
        if counts:
            await fair.release(self.client, self._keys, counts)

    async def _return_pending(self) -> None:
        """Give back what this consumer holds, by the fair scripts, loaded again first.

        The server may have lost them since, and the give-back runs once, at close.
        """
        await fair.load_scripts(self.client)
        await super()._return_pending()

    def _queue_copy(self, pipe: Any, level: int, copy: wire.Copy) -> None:
        pipe.execute_command(*self._copy_command(level, copy))

    def _copy_command(self, level: int, copy: wire.Copy) -> tuple[Any, ...]:
        entry_id, attempt, decision, delay, reason = copy
        extra: tuple[Any, ...] = ()
        if decision is Decision.DEAD_LETTER:
            extra = wire.dead_letter_fields(reason, attempt, entry_id, time.time())
        return fair.settle_command(
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
            tenant=self._tenant_of.get(entry_id, fair.UNKNOWN),
            extra=extra,
        )
