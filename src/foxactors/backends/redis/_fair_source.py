"""`FairRedisSource`: a consumer of a fair queue (see `_fair`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from foxactors._ack import Decision
from foxactors._errors import BackendError
from foxactors._logging import get_logger
from foxactors._message import Delivery
from foxactors.backends._fair import TENANT_HEADER
from foxactors.backends._source import Settlement

from . import _fair as fair
from . import _levels as levels
from . import _wire as wire
from ._client import ERRORS
from ._source import RedisSource

if TYPE_CHECKING:
    from ._backend import RedisBackend

_NORMAL = levels.NORMAL
_ACK = Decision.ACK
_logger = get_logger("foxactors")  # stdlib logging unless structlog is configured
_TENANT = TENANT_HEADER.encode()
_SLOT = wire.SLOT_FIELD.encode()


class FairRedisSource(RedisSource):
    """A `RedisSource` whose reads take entries by weighted turns over tenants.

    Everything it reads is in the queue's own stream (normal's level): the pull
    script moves entries there from the tenants' lists and a read in the same MULTI
    takes them. With ``tenants``, it takes only those tenants' entries.
    """

    def __init__(
        self, backend: RedisBackend, queue: str, *, tenants: frozenset[str] | None, **kw: Any
    ) -> None:
        super().__init__(backend, queue, **kw)
        self.tenants = tenants
        self._keys = fair.FairKeys.of(queue)
        # the tenant of each entry read, holding a slot, and not yet settled: acks
        # then free their tenants' slots without looking each entry up again
        self._tenant_of: dict[bytes, str] = {}
        self._serial = asyncio.Lock()  # settle batches and reclaims, one at a time
        # Pulls take half the prefetch at most: a pull costs the server a few
        # microseconds an entry, and with halves one half is pulled (riding on the
        # acks of the other) while the other is processed. A whole prefetch at a time,
        # the pipeline would wait for each pull with nothing to do.
        self._most = max(1, self.prefetch // 2)

    async def start(self) -> None:
        """Write the queue's shares, count its slots again, then start as every source does.

        The recount replaces a count that earlier versions (or a hand) left behind:
        each tenant holds a slot for each pending entry that carries ``x-slot``.
        """
        shares = self.backend.fair_shares(self.queue)
        try:
            if shares is not None:
                await fair.write_conf(self.client, self._keys, shares)
            await fair.load_scripts(self.client)
            await self.backend.ensure_group(self.client, self.queue)
            await fair.recount(self.client, self._keys, self.queue, self.group)
        except ERRORS as exc:
            raise BackendError(f"cannot consume {self.queue!r}: {exc}") from None
        await super().start()

    def _pull_commands(self, count: int) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        return fair.pull_commands(
            self._keys,
            self.queue,
            count=count,
            group=self.group,
            consumer=self.consumer,
            tenants=self.tenants,
        )

    def _deliver(self, item: Any, now: float) -> Delivery | None:
        """Deliver as every source does, noting the tenant of an entry holding a slot.

        Every entry handed out passes here, also one recovered or reclaimed from a
        dead consumer: its settlement then frees its tenant's slot without looking
        the entry up, even once the entry is gone from the stream.
        """
        fields = item[1]
        if _SLOT in fields:
            self._tenant_of[item[0]] = fields.get(_TENANT, b"").decode()
        return super()._deliver(item, now)

    def _unlimited(self) -> bool:
        """Whether this process declared the queue without limits (as it does now)."""
        shares = self.backend.fair_shares(self.queue)
        return shares is None or not fair.limited(shares)

    async def _read_levels(self, count: int, block: float) -> None:
        count = min(count, self._most)  # nothing else pulls (see `_fetch`)
        self._pull_started(count)
        try:
            moved, read = await self._transaction(self._pull_commands(count))
            if isinstance(moved, NoScriptError):  # the server restarted or flushed its scripts
                # the read ran all the same: what it took is kept (another group's moves)
                got = [] if isinstance(read, Exception) else self._buffer_read(read, _NORMAL)
                await fair.load_scripts(self.client)
                if got:
                    return
                moved, read = await self._transaction(self._pull_commands(count))
        finally:
            self._pull_ended(count)
        for result in (moved, read):
            if isinstance(result, Exception):
                raise result
        if self._buffer_read(read, _NORMAL) or self._buffer:
            return  # (a pull with the acks may have taken what this one found gone)
        if self._pulling:  # such a pull is still out: its entries come with it
            await self._fetch()
            return
        # nothing for us: wait until a publish, a settle or a due retry says otherwise
        await self.client.execute_command(
            "XREAD", "COUNT", 1, "BLOCK", int(block * 1000), "STREAMS", self._keys.wake, moved[1]
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

    async def _took_over(self, items: list[Any]) -> None:
        """Buffer what was taken over; a dedicated source gives others' back first.

        Its pulls take its tenants' entries alone, but what it takes over from a dead
        consumer, or recovers from its own name's previous life (a ring consumer once,
        or cut off before it gave back), may be any tenant's. Such an entry goes back
        to the front of its tenant's list, undelivered, with the attempt of this
        taking-over given back.
        """
        if self.tenants is None:
            await super()._took_over(items)
            return
        ours: list[Any] = []
        theirs: list[Any] = []
        for item in items:
            tenant = item[1].get(_TENANT, b"").decode()
            (ours if tenant in self.tenants else theirs).append(item)
        await super()._took_over(ours)
        if not theirs:
            return
        commands = []
        for entry_id, fields, attempt, level in theirs:
            if _SLOT in fields:  # its slot is freed with it, even if trimmed meanwhile
                self._tenant_of[entry_id] = fields.get(_TENANT, b"").decode()
            requeue = (entry_id, attempt, Decision.REQUEUE, 0.0, "")
            commands.append(self._copy_command(level, requeue, give_back=1))
        try:
            results = await self._again_if_refused(commands, await self._run(commands))
        finally:
            for entry_id, *_ in theirs:
                self._tenant_of.pop(entry_id, None)
        for result in results:
            if isinstance(result, Exception):
                raise result
        _logger.info(
            "redis.given_back",
            stream=self.queue,
            consumer=self.consumer,
            ids=[item[0].decode() for item in theirs],
        )

    async def renew(self) -> None:
        """Renew leases as every source does, one at a time with settling.

        A renewal too can find an entry trimmed while pending.
        """
        async with self._serial:
            await super().renew()

    async def _apply_serially(self, batch: list[Settlement]) -> None:
        acks: dict[int, dict[str, list[bytes]]] = {}  # of entries holding slots
        plain: dict[int, list[bytes]] = {}  # acks of the others
        copies: list[tuple[int, wire.Copy]] = []
        settled: list[bytes] = []
        for tag, held, decision, delay, reason in batch:
            level = held[2]
            entry_id = tag if level == _NORMAL else tag[1:]
            settled.append(entry_id)
            if decision is _ACK:
                tenant = self._tenant_of.get(entry_id)
                if tenant is None:
                    plain.setdefault(level, []).append(entry_id)
                else:
                    acks.setdefault(level, {}).setdefault(tenant, []).append(entry_id)
            else:  # the copy's command takes the tenant (`_queue_copy`)
                copies.append((level, (entry_id, held[0], decision, delay, reason)))
        try:
            await self._settle_batch(acks, plain, copies, len(batch))
        finally:
            for entry_id in settled:
                self._tenant_of.pop(entry_id, None)

    async def _settle_batch(
        self,
        acks: dict[int, dict[str, list[bytes]]],
        plain: dict[int, list[bytes]],
        copies: list[tuple[int, wire.Copy]],
        size: int,
    ) -> None:
        commands: list[tuple[Any, ...]] = [
            ("XACK", self._streams[level], self.group, *ids) for level, ids in plain.items()
        ]
        commands += [
            fair.ack_command(self._keys, self._streams[level], self.group, ids)
            for level, ids in acks.items()
        ]
        commands += [self._copy_command(level, entry) for level, entry in copies]
        # The same round trip pulls as much as the batch frees credit for (after the
        # settlements, on the server), less what is buffered or being pulled already,
        # half the prefetch at most, when the reader will want it at once: it waits
        # for that much credit, or (on a queue without limits) its own pull is out,
        # and it comes back for more. The reader then waits for this pull, not one of
        # its own. (A reader that waits for work pulls when woken, as other consumers
        # do; on a queue with limits, pulling with the acks, this consumer would take
        # every slot its acks free before the others could.)
        ahead = 0
        waiting = self._credit is not None
        if (waiting or (self._pulling and self._unlimited())) and not self._closed:
            ahead = min(self._free() + size, self._most)  # (this batch frees ``size``)
            if ahead < (min(self._want, self._most) if waiting else self._most):
                ahead = 0
        failed: list[Any] = []  # the pull's errors
        if ahead > 0:
            self._pull_started(ahead)
            try:
                results = await self._transaction([*commands, *self._pull_commands(ahead)])
            finally:
                self._pull_ended(ahead)
            moved, read = results.pop(-2), results.pop()
            if isinstance(read, Exception):
                failed.append(read)
            else:
                self._buffer_read(read, _NORMAL)  # what it read, whatever the script said
            # a pull refused for NOSCRIPT is not run again here: the reader pulls when
            # it finds its buffer empty, and loads the scripts then
            if isinstance(moved, Exception) and not isinstance(moved, NoScriptError):
                failed.append(moved)
        else:
            results = await self._run(commands)
        results = await self._again_if_refused(commands, results)
        for result in (*results, *failed):
            if isinstance(result, Exception):
                raise result
        self._copied(copies, results[len(results) - len(copies) :])

    async def _again_if_refused(
        self, commands: list[tuple[Any, ...]], results: list[Any]
    ) -> list[Any]:
        """``results`` of ``commands``, those the server refused for NOSCRIPT run again.

        The server lost the scripts: those commands did not run (the others did);
        once more, those alone, with the scripts loaded.
        """
        lost = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if lost:
            await fair.load_scripts(self.client)
            for i, result in zip(lost, await self._run([commands[i] for i in lost]), strict=True):
                results[i] = result
        return results

    async def _run(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Run ``commands`` in one round trip; their replies (an error as its exception)."""
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))

    async def _transaction(self, commands: Iterable[tuple[Any, ...]]) -> list[Any]:
        """`_run` in one MULTI: nothing runs between them on the server."""
        pipe = self.client.pipeline(transaction=True)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))

    async def _trimmed(self, ids: list[bytes], stream: str) -> None:
        """Also free the slots those this consumer read held (their tenants are known).

        Also those still buffered (their fields were read whole: they are handed out
        all the same, holding no slot). An entry another consumer read and that was
        trimmed before it could be taken over keeps its tenant's slot: nothing is left
        to tell whose it was. (The pull never trims a pending entry; this is for the
        stream trimmed by hand.)
        """
        await super()._trimmed(ids, stream)
        counts: dict[str, int] = {}
        for entry_id in ids:
            tenant = self._tenant_of.pop(entry_id, None)
            if tenant is not None:
                counts[tenant] = counts.get(tenant, 0) + 1
        gone = set(ids)  # read but not handed out yet: their fields tell the tenant
        for entry_id, fields, *_ in self._buffer:
            if entry_id in gone and _SLOT in fields:
                tenant = fields.get(_TENANT, b"").decode()
                counts[tenant] = counts.get(tenant, 0) + 1
                del fields[_SLOT]  # it holds none now (it is still handed out: read whole)
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

    def _copy_command(
        self, level: int, copy: wire.Copy, *, give_back: int | None = None
    ) -> tuple[Any, ...]:
        """The settle script's command for ``copy``; ``give_back``: attempts not counted.

        (By default one for a defer, none otherwise.)
        """
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
            give_back=(1 if decision is Decision.DEFER else 0) if give_back is None else give_back,
            token=uuid.uuid4().hex,
            tenant=self._tenant_of.get(entry_id, fair.UNKNOWN),
            extra=extra,
        )
