"""`RedisSource`: one consumer (a name in the group) of one stream."""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import redis.asyncio as aioredis
import structlog

from foxactors._ack import AckHandle, Decision
from foxactors._errors import BackendError
from foxactors._message import Delivery, Message
from foxactors.backends._admission import Admission, Inadmissible, default_properties
from foxactors.backends._source import BrokerSource, Settlement

from . import _keeper as keeper
from . import _leases as leases
from . import _scripts as scripts
from . import _wire as wire
from ._client import ERRORS, TIMEOUT

if TYPE_CHECKING:
    from ._backend import RedisBackend

_logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("foxactors")


class RedisSource(BrokerSource[bytes, tuple[int, float]]):  # held: (attempt, leased at)
    """One consumer (a name in the group) of one stream.

    Reads with XREADGROUP; hands out at most ``prefetch`` unsettled deliveries;
    applies settlements in batches from the settling loop (one XACK for the acks, one
    script per copy, pipelined). Closing returns everything this consumer still holds
    to the stream. Losing the connection makes `receive` raise `BackendError`; the
    entries stay pending and come back to this consumer name's next source, or to
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
        self._keys = (queue, backend.delayed_set(queue), backend.dead_letter_stream(queue))
        self._cursor = b"0-0"

    @property
    def backend(self) -> RedisBackend:
        """The backend this source consumes for."""
        return self._backend

    async def start(self) -> None:
        """Create the group if missing, take back this name's pending entries, consume."""
        try:
            await self.backend.ensure_group(self.client, self.queue)
            await self._read_own_pending()
        except ERRORS as exc:
            raise BackendError(f"cannot consume {self.queue!r}: {exc}") from None
        self._started()
        if self._owns_client:  # no actors beside it: settle, keep leases... itself
            self._run_alone(keeper.JOBS)

    async def _read_own_pending(self) -> None:
        """What a previous life of this consumer name read and never settled comes back."""
        start = b"0"
        while True:
            reply = await self.client.xreadgroup(
                self.group, self.consumer, {self.queue: start}, count=self.prefetch
            )
            entries = reply[0][1] if reply else []
            if not entries:
                return
            counts = {
                p["message_id"]: p["times_delivered"]
                for p in await self.client.xpending_range(
                    self.queue,
                    self.group,
                    entries[0][0],
                    entries[-1][0],
                    len(entries),
                    self.consumer,
                )
            }
            gone = [entry_id for entry_id, fields in entries if not fields]
            if gone:  # trimmed or deleted while pending: nothing left to deliver
                await self.client.xack(self.queue, self.group, *gone)
                self._trimmed(gone)
            self._buffer.extend(
                (entry_id, fields, counts.get(entry_id, 1))
                for entry_id, fields in entries
                if fields
            )
            start = entries[-1][0]

    def _trimmed(self, ids: list[bytes]) -> None:
        self._counts.trimmed += len(ids)
        _logger.warning("redis.trimmed_pending", stream=self.queue, ids=[i.decode() for i in ids])

    def _fail(self, reason: str) -> None:
        if self._failure is None and not self._closed:
            _logger.error("redis.connection_lost", stream=self.queue, error=reason)
        super()._fail(reason)

    async def _fetch(self) -> None:
        # Read no more than the free credit: all of it is handed out at once. An entry
        # read and kept back would count as delivered; after a cut it would come back
        # with one attempt more without having run.
        await self._read(max(1, self.prefetch - len(self._unsettled) - self._settling))

    async def _read(self, count: int) -> None:
        block = self.backend.block
        try:
            with anyio.fail_after(block + TIMEOUT):
                # the command itself: redis-py's xreadgroup() also walks every reply
                # to record streaming lag, a cost per message we do not want
                reply = await self.client.execute_command(
                    *("XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count),
                    *("BLOCK", int(block * 1000), "STREAMS", self.queue, ">"),
                )
        except (*ERRORS, TimeoutError) as exc:
            self._fail(f"reading {self.queue!r} failed: {exc}")
            return
        if reply and not self._closed:
            self._buffer.extend((entry_id, fields, 1) for entry_id, fields in reply[0][1])

    def _deliver(self, item: tuple[bytes, dict[bytes, bytes], int], now: float) -> Delivery | None:
        entry_id, fields, count = item
        handle = AckHandle(self, entry_id, self.generation)
        parsed = wire.plain(entry_id, fields, self._payload_key, self._default_properties)
        if parsed is None:  # properties, headers, or something wrong: the full parse
            try:
                parsed = wire.parse(entry_id, fields, self._payload_key, self._default_properties)
            except wire.BadEntry as exc:
                self._unsettled[entry_id] = (count, now)
                handle.dead_letter(str(exc))
                return None
        body, message_id, properties, prior, published_at = parsed
        attempt = prior + count
        self._unsettled[entry_id] = (attempt, now)
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
        acks = [tag for tag, _, decision, _, _ in batch if decision is Decision.ACK]
        copies: list[wire.Copy] = [
            (tag, held[0], decision, delay, reason)
            for tag, held, decision, delay, reason in batch
            if decision is not Decision.ACK
        ]
        if not copies:
            await self.client.xack(self.queue, self.group, *acks)
            return
        pipe = self.client.pipeline(transaction=False)
        if acks:
            pipe.xack(self.queue, self.group, *acks)
        for entry in copies:
            self._queue_copy(pipe, entry)
        results = await pipe.execute()
        self._copied(copies, results[1:] if acks else results)

    def _queue_copy(self, pipe: Any, copy: wire.Copy) -> None:
        entry_id, attempt, decision, delay, reason = copy
        extra: tuple[Any, ...] = ()
        if decision is Decision.DEAD_LETTER:
            extra = wire.dead_letter_fields(reason, attempt, entry_id, time.time())
        pipe.eval(
            scripts.SETTLE,
            3,
            *self._keys,
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

    def _copied(self, copies: list[wire.Copy], results: list[Any]) -> None:
        for (entry_id, _, decision, _, _), result in zip(copies, results, strict=True):
            if result == 0:
                self._counts.leases_lost += 1
                _logger.warning(
                    "redis.lease_lost",
                    stream=self.queue,
                    id=entry_id.decode(),
                    decision=decision.value,
                )
            elif result == -1:
                self._trimmed([entry_id])

    # -- leases ---------------------------------------------------------------------------

    async def renew(self) -> None:
        """Renew the leases of what this consumer holds (unsettled and buffered)."""
        if self._closed or self._failure is not None:
            return
        now = time.monotonic()
        due = now - self.leases.renew_every
        ids = [entry_id for entry_id, (_, at) in self._unsettled.items() if at <= due]
        ids += [entry[0] for entry in self._buffer]
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            lost = await leases.renew(self.client, self.queue, self.group, self.consumer, chunk)
            for entry_id in chunk:
                held = self._unsettled.get(entry_id)
                if held is not None:
                    self._unsettled[entry_id] = (held[0], now)
            if lost:
                self._counts.leases_lost += len(lost)
                _logger.warning(
                    "redis.lease_lost", stream=self.queue, ids=[i.decode() for i in lost]
                )

    async def reclaim(self) -> bool:
        """Claim a batch of entries whose consumers stopped renewing; True if more wait."""
        if self._closed or self._failure is not None:
            return False
        room = self.prefetch - len(self._unsettled) - len(self._buffer)
        if room <= 0:
            return False
        cursor, claimed, gone = await leases.reclaim(
            self.client,
            self.queue,
            self.group,
            self.consumer,
            leases=self.leases,
            cursor=self._cursor,
            count=min(room, self.leases.claim_batch),
        )
        self._cursor = cursor
        if gone:
            self._trimmed(list(gone))
        if claimed:
            self._counts.reclaimed += len(claimed)
            _logger.warning(
                "redis.reclaimed",
                stream=self.queue,
                consumer=self.consumer,
                ids=[entry[0].decode() for entry in claimed],
            )
            self._buffer.extend(
                (entry_id, dict(zip(flat[::2], flat[1::2], strict=True)), int(count))
                for entry_id, count, flat in claimed
            )
        return cursor != b"0-0" and len(claimed) + len(gone) > 0

    async def forget_dead_consumers(self) -> None:
        """Remove consumers idle past ``forget_after`` that hold no pending entries."""
        removed = await leases.forget(
            self.client, self.queue, self.group, self.leases, self.consumer
        )
        if removed:
            self._counts.forgotten += len(removed)
            _logger.info(
                "redis.consumers_forgotten",
                stream=self.queue,
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
        """Copy every entry still pending for this consumer back into the stream."""
        while True:
            pending = await self.client.xpending_range(
                self.queue, self.group, "-", "+", 100, self.consumer
            )
            if not pending:
                return
            pipe = self.client.pipeline(transaction=False)
            for p in pending:
                self._queue_copy(pipe, (p["message_id"], 0, Decision.REQUEUE, 0.0, ""))
            await pipe.execute()
