"""`RedisSource`: one consumer (a name in the group) of one stream."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from foxactors._ack import AckHandle, Decision
from foxactors._errors import BackendError
from foxactors._logging import get_logger
from foxactors._message import Delivery, Message
from foxactors.backends._admission import Admission, Inadmissible, default_properties
from foxactors.backends._source import BrokerSource, Settlement

from . import _keeper as keeper
from . import _leases as leases
from . import _levels as levels
from . import _scripts as scripts
from . import _wire as wire
from ._client import ERRORS, TIMEOUT

if TYPE_CHECKING:
    from ._backend import RedisBackend

_logger = get_logger("foxactors")  # stdlib logging unless structlog is configured

_NORMAL = levels.NORMAL
_PREFIX = levels.TAG_PREFIX
_ACK = Decision.ACK

Held = tuple[int, float, int]
"""What a source keeps of an unsettled delivery: attempt, when leased, level."""
Item = tuple[bytes, dict[bytes, bytes], int, int]
"""A buffered entry: id, fields, delivery count, level (its index in `LEVELS`)."""


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    items = iter(flat)
    return dict(zip(items, items, strict=False))


def _plan(lags: list[tuple[int, bytes]], count: int) -> list[tuple[int, int]]:
    """What to read of each level, highest first: (level, count).

    No more than ``count`` in all; a level whose lag is unknown (-1) may take all
    that is left.
    """
    plan = []
    for level, (lag, _) in enumerate(lags):
        if count <= 0:
            break
        if lag:
            take = count if lag < 0 else min(lag, count)
            plan.append((level, take))
            count -= take
    return plan


def _has_group(lag: tuple[int, bytes]) -> bool:
    """Whether a level's lag, as the levels script gave it, shows the group is there.

    The script makes the group on every level's stream that exists; a stream that
    does not exist yet reads (0, 0-0), as a new group's empty stream does.
    """
    return bool(lag[0]) or lag[1] not in (b"0-0", "0-0")


def _missing_group(exc: ResponseError) -> bool:
    """Whether ``exc`` says a stream or its group does not exist (a level not used yet)."""
    text = str(exc)
    return "NOGROUP" in text or "no such key" in text


class RedisSource(BrokerSource[bytes, Held]):
    """One consumer (a name in the group) of one stream and its priority levels.

    Reads the levels' streams highest first, never more than its free credit in
    all (see `_read_levels`); hands out at most ``prefetch`` unsettled
    deliveries; applies settlements in batches from the settling loop (one XACK per
    level for the acks, one script per copy, pipelined). Closing returns everything
    this consumer still holds to the stream of its level. Losing the connection makes
    `receive` raise `BackendError`; the entries stay pending and come back to this
    consumer name's next source, or to
    another consumer once their lease runs out.
    """

    def __init__(
        self,
        backend: RedisBackend,
        queue: str,
        *,
        prefetch: int,
        generation: int,
        client: aioredis.Redis,
        consumer: str,
        owns_client: bool,
    ) -> None:
        super().__init__(backend, queue, prefetch, generation)
        self._backend = backend
        self._counts = backend.stream_counts
        self.client: Any = client  # redis-py's reply types are too wide to narrow usefully
        self.consumer = consumer
        self.group = backend.group
        self.leases = backend.leases
        self._owns_client = owns_client
        self._admit = Admission(backend.codec)
        self._payload_key = backend.payload_field.encode()
        self._default_properties = default_properties(backend.codec)
        self._streams = backend.level_streams(queue)
        self._delayed = backend.delayed_set(queue)
        self._dead = backend.dead_letter_stream(queue)
        self._cursors = [b"0-0"] * len(self._streams)
        self._levels_args = (len(self._streams), *self._streams, self.group)
        # The levels' lags, asked for with the acks that free the waiting reader's
        # credit (see `_apply`): its next read needs no round trip of its own for them.
        self._fresh_lags: list[tuple[int, bytes]] | None = None
        # Whether the last lags seen had entries in normal's stream and none above it
        # (see `_apply`).
        self._normal_only = False
        # Credit in flight: entries asked for by reads and reclaims not yet back. It
        # counts against the credit as the buffer does, so that reads, reads with the
        # acks and reclaims side by side never take more than the prefetch between
        # them; a reader that finds its buffer empty while one is out waits for it.
        # (A read holds its credit only while it reads, not while it waits for entries.)
        self._pulling = 0
        self._claiming = 0  # of which a reclaim holds
        self._pulled: asyncio.Event | None = None  # set when one is back

    @property
    def backend(self) -> RedisBackend:
        """The backend this source consumes for."""
        return self._backend

    async def start(self) -> None:
        """Create the group if missing, take back this name's pending entries, consume."""
        try:
            await self.backend.ensure_group(self.client, self.queue)
            await self.client.script_load(scripts.LEVELS)  # run by EVALSHA with each read
            await self._read_own_pending()
        except ERRORS as exc:
            raise BackendError(f"cannot consume {self.queue!r}: {exc}") from None
        self._started()
        if self._owns_client:  # no actors beside it: settle, keep leases... itself
            self._run_alone(keeper.JOBS)

    async def _read_own_pending(self) -> None:
        """What a previous life of this consumer name read and never settled comes back.

        Every level's, highest first.
        """
        for level, stream in enumerate(self._streams):
            start = b"0"
            while True:
                try:
                    reply = await self.client.xreadgroup(
                        self.group, self.consumer, {stream: start}, count=self.prefetch
                    )
                except ResponseError as exc:
                    if _missing_group(exc):  # a level no consumer of the group read yet
                        break
                    raise
                entries = reply[0][1] if reply else []
                if not entries:
                    break
                counts = {
                    p["message_id"]: p["times_delivered"]
                    for p in await self.client.xpending_range(
                        stream,
                        self.group,
                        entries[0][0],
                        entries[-1][0],
                        len(entries),
                        self.consumer,
                    )
                }
                gone = [entry_id for entry_id, fields in entries if not fields]
                if gone:  # trimmed or deleted while pending: nothing left to deliver
                    await self.client.xack(stream, self.group, *gone)
                    await self._trimmed(gone, stream)
                await self._took_over(
                    [
                        (entry_id, fields, counts.get(entry_id, 1), level)
                        for entry_id, fields in entries
                        if fields
                    ]
                )
                start = entries[-1][0]

    async def _trimmed(self, ids: list[bytes], stream: str) -> None:
        """Pending entries whose data was trimmed or deleted left the pending list."""
        self._note_trimmed(ids, stream)

    def _note_trimmed(self, ids: list[bytes], stream: str) -> None:
        self._counts.trimmed += len(ids)
        _logger.warning("redis.trimmed_pending", stream=stream, ids=[i.decode() for i in ids])

    def _fail(self, reason: str) -> None:
        if self._failure is None and not self._closed:
            _logger.error("redis.connection_lost", stream=self.queue, error=reason)
        super()._fail(reason)

    async def _fetch(self) -> None:
        # Read no more than the free credit: all of it is handed out at once. An entry
        # read and kept back would count as delivered; after a cut it would come back
        # with one attempt more without having run.
        if self._pulling:  # a read with the acks or a reclaim is out: its entries come
            if self._pulled is None:
                self._pulled = asyncio.Event()
            await self._pulled.wait()  # set also on failure or close (`_wake`)
            return
        await self._read(max(1, self._free()))

    def _free(self) -> int:
        """Credit neither unsettled, buffered nor in flight."""
        held = len(self._unsettled) + self._settling + len(self._buffer)
        return self.prefetch - held - self._pulling

    def _pull_started(self, count: int) -> None:
        self._pulling += count

    def _pull_ended(self, count: int) -> None:
        self._pulling -= count
        self._wake()  # a reader waiting for it looks again

    def _wake(self) -> None:
        """Wake a reader waiting for credit in flight (it came back, or a failure or close)."""
        if self._pulled is not None:
            self._pulled.set()
            self._pulled = None

    async def _read(self, count: int) -> None:
        """Read up to ``count`` new entries, highest level first; or wait for some."""
        block = self.backend.block
        try:
            with anyio.fail_after(block + TIMEOUT):
                await self._read_levels(count, block)
        except (*ERRORS, TimeoutError) as exc:
            self._fail(f"reading {self.queue!r} failed: {exc}")

    async def _read_levels(self, count: int, block: float) -> None:
        """Read by priority, never more than ``count`` in all (see `_levels`).

        The levels script says how many entries wait for the group in each level's
        stream (asked with the acks that freed this read's credit, when the reader
        waited for them: a round trip of their own less); then one round trip reads
        the levels that have some, highest first, no more than ``count`` in all.
        (One XREADGROUP of several streams would take
        ``count`` from each, past the credit; a script that read them itself would
        pass every entry through Lua, which costs more than the round trip.) When no
        level has anything, a blocking XREAD, which takes nothing, waits for an entry
        after the last ones the group read; then the levels are read as above.
        """
        lags, self._fresh_lags = self._fresh_lags or await self._lags(), None
        self._note(lags)
        seen: set[str] = set()  # the streams a blocking XREAD saw entries in
        guessed = False  # lags made here from what XREAD saw, not asked of the server
        if not _plan(lags, count):
            woken = await self.client.execute_command(
                *("XREAD", "COUNT", 1, "BLOCK", int(block * 1000), "STREAMS", *self._streams),
                *(last for _, last in lags),
            )
            if not woken:
                return
            seen = {name.decode() for name, _ in woken}
            top = next(i for i, s in enumerate(self._streams) if s in seen)
            # before Redis 7.2, XREAD names only the first stream one write (a
            # script, a MULTI) added to, so a level above what it saw may have
            # entries too, unless no entry of that level was ever read
            guessed = _has_group(lags[top]) and not any(_has_group(lag) for lag in lags[:top])
            if guessed:  # read the level it saw at once, with all the credit
                lags = [(-1 if i == top else 0, last) for i, (_, last) in enumerate(lags)]
            else:
                lags = await self._lags()  # a new level's stream gets the group
        # the credit as it is now (a reclaim may have taken some meanwhile), held
        # while the reads are out
        held = min(count, self._free())
        plan = _plan(lags, held) if held > 0 else []
        if not plan and seen and held > 0:  # what XREAD saw is there, whatever a lag says
            plan = [(next(i for i, s in enumerate(self._streams) if s in seen), held)]
        if not plan:
            return
        self._pull_started(held)
        try:
            read = await self._read_plan(plan)
        except ResponseError as exc:
            if not (guessed and _missing_group(exc)):
                raise
            return  # its stream came back without the group: the next read's lags make it
        finally:
            self._pull_ended(held)
        self._drained(lags, plan, read)

    def _drained(
        self, lags: list[tuple[int, bytes]], plan: list[tuple[int, int]], read: list[Any]
    ) -> None:
        """Keep the lags a lone level's read leaves, when they are known without asking.

        A read of one level that got entries, but fewer than it asked for, emptied
        that level's stream for the group up to its last entry; when every other
        level had nothing waiting, the lags are now all 0, with the last id read for
        that level. The next read then waits in XREAD at once, instead of asking the
        levels script first: a delivery that arrives alone costs three round trips
        (XREAD, XREADGROUP, XACK), not five. Another consumer of the group reading
        meanwhile makes XREAD wake for entries it took; that read gets nothing, and
        the read after it asks the script.
        """
        if len(plan) != 1 or self._fresh_lags is not None:
            return
        (level, take), entries = plan[0], read[0]
        if not 0 < len(entries) < take or any(lag for i, (lag, _) in enumerate(lags) if i != level):
            return
        self._fresh_lags = [
            (0, entries[-1][0] if i == level else last) for i, (_, last) in enumerate(lags)
        ]

    async def _read_plan(self, plan: list[tuple[int, int]]) -> list[list[Any]]:
        """Read ``plan``'s levels, (level, how many) each, in one round trip.

        Returns the entries read of each level, in ``plan``'s order.
        """
        if len(plan) == 1:  # the common case: one level (normal) has entries
            level, take = plan[0]
            replies = [await self.client.execute_command(*self._read_command(level, take))]
        else:
            pipe = self.client.pipeline(transaction=False)
            for level, take in plan:
                pipe.execute_command(*self._read_command(level, take))
            replies = await pipe.execute()
        return [
            self._buffer_read(reply, level) for (level, _), reply in zip(plan, replies, strict=True)
        ]

    def _note(self, lags: list[tuple[int, bytes]]) -> None:
        """Remember whether only normal's stream had entries waiting (see `_apply`)."""
        self._normal_only = bool(lags[_NORMAL][0]) and not any(
            lag for level, (lag, _) in enumerate(lags) if level != _NORMAL
        )

    async def _lags(self) -> list[tuple[int, bytes]]:
        """Each level's lag and last delivered id, from the levels script."""
        try:
            lags: list[tuple[int, bytes]] = await self.client.execute_command(
                "EVALSHA", scripts.LEVELS_SHA, *self._levels_args
            )
        except NoScriptError:  # the server restarted or flushed its scripts
            lags = await self.client.execute_command("EVAL", scripts.LEVELS, *self._levels_args)
        return lags

    def _read_command(self, level: int, count: int) -> tuple[Any, ...]:
        # the command itself: redis-py's xreadgroup() also walks every reply to
        # record streaming lag, a cost per message we do not want
        return (
            *("XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count),
            *("STREAMS", self._streams[level], ">"),
        )

    def _buffer_read(self, reply: Any, level: int) -> list[Any]:
        """Buffer what an XREADGROUP of ``level``'s stream read; return its entries."""
        if not reply or self._closed:
            return []
        entries: list[Any] = reply[0][1]
        self._buffer.extend((entry_id, fields, 1, level) for entry_id, fields in entries)
        return entries

    def _deliver(self, item: Item, now: float) -> Delivery | None:
        entry_id, fields, count, level = item
        tag = entry_id if level == _NORMAL else _PREFIX[level] + entry_id
        handle = AckHandle(self, tag, self.generation)
        parsed = wire.plain(entry_id, fields, self._payload_key, self._default_properties)
        if parsed is None:  # properties, headers, or something wrong: the full parse
            try:
                parsed = wire.parse(entry_id, fields, self._payload_key, self._default_properties)
            except wire.BadEntry as exc:
                self._unsettled[tag] = (count, now, level)
                handle.dead_letter(str(exc))
                return None
        body, message_id, properties, prior, published_at = parsed
        attempt = prior + count
        self._unsettled[tag] = (attempt, now, level)
        ttl = properties.expiration  # counted on the wall clock: the stamp is Unix time
        try:
            payload = self._admit(
                body,
                properties.content_type,
                ttl,
                None if ttl is None else time.time() - published_at,
            )
        except Inadmissible as exc:
            exc.settle(handle, queue=self.queue, message_id=message_id)
            return None
        message = Message(
            id=message_id,
            payload=payload,
            body=body,
            properties=properties,
            attempt=attempt,
            queue=self.queue,
            published_at=published_at,
        )
        return Delivery(message, handle)

    # -- settling -------------------------------------------------------------------------

    async def _apply(self, batch: list[Settlement]) -> None:
        acks, other_acks, copies = self._sort(batch)
        # The reader waits for the credit this batch frees, and will read next: the same
        # round trip asks for the levels' lags and, when the last lags had entries in
        # normal's stream only (the common case), reads as many of them as the batch
        # frees credit for; the buffer is empty and the read follows the acks on the
        # server, so the credit holds. The price: an entry that came into a higher
        # level since the last lags waits for the next read (see docs/redis.md).
        lags = self._credit is not None and not self._buffer
        ahead = 0
        if lags and self._normal_only and not self._closed:
            ahead = self._free() + len(batch)
        if not copies and not other_acks and not lags:
            await self.client.xack(self.queue, self.group, *acks)
            return
        pipe = self.client.pipeline(transaction=False)
        if acks:
            pipe.xack(self.queue, self.group, *acks)
        for level, ids in other_acks.items():
            pipe.xack(self._streams[level], self.group, *ids)
        for level, entry in copies:
            self._queue_copy(pipe, level, entry)
        if ahead > 0:
            pipe.execute_command(*self._read_command(_NORMAL, ahead))
        if lags:
            pipe.execute_command("EVALSHA", scripts.LEVELS_SHA, *self._levels_args)
        held = max(ahead, 0)
        self._pull_started(held)
        try:
            results = await pipe.execute(raise_on_error=False)
        finally:
            self._pull_ended(held)
        if lags:
            self._took_lags(results.pop())
        read = results.pop() if ahead > 0 else None
        for result in results if read is None else (*results, read):
            if isinstance(result, Exception):
                raise result
        if read is not None:
            self._buffer_read(read, _NORMAL)
        self._copied(copies, results[len(results) - len(copies) :])

    def _took_lags(self, lags: Any) -> None:
        """Keep the lags that came with the acks, for the reader (see `_apply`)."""
        if isinstance(lags, Exception):  # NoScriptError: the reader asks for them itself
            self._fresh_lags, self._normal_only = None, False
        else:
            self._fresh_lags = lags
            self._note(lags)

    @staticmethod
    def _sort(
        batch: list[Settlement],
    ) -> tuple[list[bytes], dict[int, list[bytes]], list[tuple[int, wire.Copy]]]:
        """Normal's acks (by entry id), other levels' acks, and copies to make."""
        acks: list[bytes] = []  # normal's: the tags are the entry ids
        other_acks: dict[int, list[bytes]] = {}
        copies: list[tuple[int, wire.Copy]] = []
        for tag, held, decision, delay, reason in batch:
            level = held[2]
            if decision is _ACK:
                if level == _NORMAL:
                    acks.append(tag)
                else:
                    other_acks.setdefault(level, []).append(tag[1:])
            else:
                entry_id = tag if level == _NORMAL else tag[1:]
                copies.append((level, (entry_id, held[0], decision, delay, reason)))
        return acks, other_acks, copies

    def _queue_copy(self, pipe: Any, level: int, copy: wire.Copy) -> None:
        entry_id, attempt, decision, delay, reason = copy
        extra: tuple[Any, ...] = ()
        if decision is Decision.DEAD_LETTER:
            extra = wire.dead_letter_fields(reason, attempt, entry_id, time.time())
        pipe.eval(
            scripts.SETTLE,
            3,
            self._streams[level],  # a requeue goes back to the entry's own level
            self._delayed,  # retries and deferrals: moved to their level when due
            self._dead,
            self.group,
            self.consumer,
            entry_id,
            wire.COPY_MODE[decision],
            math.ceil(delay * 1000),
            1 if decision is Decision.DEFER else 0,
            uuid.uuid4().hex,
            self.backend.maxlen or "",
            *extra,
        )

    def _copied(self, copies: list[tuple[int, wire.Copy]], results: list[Any]) -> None:
        for (level, (entry_id, _, decision, _, _)), result in zip(copies, results, strict=True):
            if result == 0:
                self._counts.leases_lost += 1
                _logger.warning(
                    "redis.lease_lost",
                    stream=self._streams[level],
                    id=entry_id.decode(),
                    decision=decision.value,
                )
            elif result == -1:  # the copy's script freed what it held
                self._note_trimmed([entry_id], self._streams[level])

    # -- leases ---------------------------------------------------------------------------

    async def renew(self) -> None:
        """Renew the leases of what this consumer holds (unsettled and buffered)."""
        if self._closed or self._failure is not None:
            return
        now = time.monotonic()
        due = now - self.leases.renew_every
        held_by_level: dict[int, list[tuple[bytes, bytes]]] = {}  # level: (tag, entry id)
        for tag, (_, at, level) in self._unsettled.items():
            if at <= due:
                entry_id = tag if level == _NORMAL else tag[1:]
                held_by_level.setdefault(level, []).append((tag, entry_id))
        for entry_id, _, _, level in self._buffer:
            held_by_level.setdefault(level, []).append((b"", entry_id))  # not handed out
        for level, held in sorted(held_by_level.items()):
            stream = self._streams[level]
            for start in range(0, len(held), 500):
                chunk = held[start : start + 500]
                lost, gone = await leases.renew(
                    self.client, stream, self.group, self.consumer, [i for _, i in chunk]
                )
                if gone:
                    await self._trimmed(gone, stream)
                for tag, _ in chunk:
                    kept = self._unsettled.get(tag)
                    if kept is not None:
                        self._unsettled[tag] = (kept[0], now, kept[2])
                if lost:
                    self._counts.leases_lost += len(lost)
                    _logger.warning(
                        "redis.lease_lost", stream=stream, ids=[i.decode() for i in lost]
                    )

    async def reclaim(self) -> bool:
        """Claim a batch of entries whose consumers stopped renewing; True if more wait.

        Every level's, highest first, ``claim_batch`` at most in all.
        """
        if self._closed or self._failure is not None:
            return False
        # what it may claim counts as in flight until it is buffered (see `_fetch`)
        room = hold = max(0, min(self._reclaim_room(), self.leases.claim_batch))
        self._claiming = hold
        self._pull_started(hold)
        try:
            return await self._reclaim_levels(room)
        finally:
            self._claiming = 0
            self._pull_ended(hold)

    async def _reclaim_levels(self, room: int) -> bool:
        """`reclaim`'s claims, level by level, ``room`` at most in all."""
        more = False
        for level, stream in enumerate(self._streams):
            if room <= 0:
                return True
            cursor, claimed, gone = await leases.reclaim(
                self.client,
                stream,
                self.group,
                self.consumer,
                leases=self.leases,
                cursor=self._cursors[level],
                count=room,
            )
            self._cursors[level] = cursor
            if gone:
                await self._trimmed(list(gone), stream)
            if claimed:
                room -= len(claimed)
                self._counts.reclaimed += len(claimed)
                _logger.warning(
                    "redis.reclaimed",
                    stream=stream,
                    consumer=self.consumer,
                    ids=[entry[0].decode() for entry in claimed],
                )
                await self._took_over(
                    [(entry_id, _pairs(flat), int(n), level) for entry_id, n, flat in claimed]
                )
            more = more or (cursor != b"0-0" and len(claimed) + len(gone) > 0)
        return more

    def _reclaim_room(self) -> int:
        """The credit a reclaim may take: not held, nor in flight but for its own hold."""
        return self._free() + self._claiming

    async def _took_over(self, items: list[Item]) -> None:
        """Entries taken over (from a dead consumer, or this name's previous life): buffered."""
        self._buffer.extend(items)

    async def forget_dead_consumers(self) -> None:
        """Remove consumers idle past ``forget_after`` that hold no pending entries.

        From every level's stream: a consumer is a member of each one's group apart.
        """
        for stream in self._streams:
            removed = await leases.forget(
                self.client, stream, self.group, self.leases, self.consumer
            )
            if removed:
                self._counts.forgotten += len(removed)
                _logger.info(
                    "redis.consumers_forgotten",
                    stream=stream,
                    consumers=[n.decode() for n in removed],
                )

    # -- closing --------------------------------------------------------------------------

    async def close(self) -> None:
        """Apply decided settlements, then return whatever this consumer still holds."""
        if self._closed:
            return
        healthy = self._failure is None
        try:
            healthy = await self._stop()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                with contextlib.suppress(*ERRORS):
                    if healthy:
                        await self._return_pending()
                with contextlib.suppress(Exception):
                    if self._owns_client:
                        await self.client.aclose()
                    elif not healthy:  # drop every pooled connection: some are dead
                        await self.client.connection_pool.disconnect()
            self.backend._release(self.queue, self.consumer)

    async def _return_pending(self) -> None:
        """Copy every entry still pending for this consumer back into its level's stream."""
        for level, stream in enumerate(self._streams):
            while True:
                try:
                    pending = await self.client.xpending_range(
                        stream, self.group, "-", "+", 100, self.consumer
                    )
                except ResponseError as exc:
                    if _missing_group(exc):
                        break
                    raise
                if not pending:
                    break
                pipe = self.client.pipeline(transaction=False)
                for p in pending:
                    self._queue_copy(pipe, level, (p["message_id"], 0, Decision.REQUEUE, 0.0, ""))
                await pipe.execute()
