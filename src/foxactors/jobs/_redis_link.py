"""`RedisLink`: the Redis job store's client, its scripts, and which errors mean what.

The only module of the job layer that imports redis-py: `RedisJobStore` loads it when
it is built, so ``foxactors.jobs`` imports without the ``redis`` extra. Every failure
comes out as a job error (`JobStoreError`, or `JobRecordError` for a key that holds
something else), with the URL's password never in its text.

Commands issued in one event-loop turn (100 enqueues in flight, a worker's starts and
completions) go out together, as one pipeline on one connection: one write and one
pooled connection for the lot instead of one each (see `RedisLink.command`); the
turn's creates, commits, starts and completions are each joined into one script call
(`RedisLink.call_joined`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import sniffio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from foxactors._batch import TurnBatcher
from foxactors._errors import ConfigurationError
from foxactors._redact import redact, secrets_of
from foxactors._redis_packing import pack_fast

from ._errors import JobError, JobRecordError, JobStoreError
from ._redis_listener import Listener, Subscription
from ._redis_scripts import JSON_ROWS, SHARED, Script

ERRORS = (RedisError, OSError)
"""What a command may raise when the server or the network fails."""
SCHEMES = ("redis://", "rediss://", "unix://")


def _lost(why: str) -> RedisConnectionError:
    """What a command whose answer is lost fails with: a connection error (`JobStoreError`)."""
    return RedisConnectionError(f"the job store command was not answered: {why}")


MAX_CONNECTIONS = 10_000
"""Pooled connections at most (newer redis-py caps its pools at 100 and then raises):
concurrent callers each hold one while their command is out."""


def _describe(client: Any) -> str:
    """Where a client given by the caller points, without its credentials."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


class _Call:
    """One command in a turn's batch.

    A call with ``parts`` may be joined with the batch's other calls of the same
    command; ``rows`` says how (`SHARED`, `JSON_ROWS`, or a row's width).
    """

    __slots__ = ("command", "parts", "rows")

    def __init__(
        self, command: tuple[Any, ...], parts: list[str] | None = None, *, rows: int = SHARED
    ) -> None:
        self.command = command
        self.parts = parts
        self.rows = rows

    @property
    def items(self) -> int:
        """How many items of a joined reply are this call's."""
        count = len(self.parts or ())
        return count if self.rows == JSON_ROWS else count // self.rows

    @staticmethod
    def joined(calls: list[_Call]) -> tuple[Any, ...]:
        """The command of ``calls`` (one, or several of one command) with their parts."""
        first = calls[0]
        if first.parts is None:
            return first.command
        parts = [part for call in calls for part in call.parts or ()]
        return (*first.command, *_arguments(parts, rows=first.rows))


def _arguments(parts: list[str], *, rows: int) -> list[str]:
    """Parts as arguments: one JSON array of them (`JSON_ROWS`), or each one."""
    return ["[" + ",".join(parts) + "]"] if rows == JSON_ROWS else parts


class _Translating:
    """`RedisLink.translate`'s block.

    A class, not a generator: two blocks per job, and each saved microsecond counts.
    """

    __slots__ = ("doing", "link")

    def __init__(self, link: RedisLink, doing: str) -> None:
        self.link = link
        self.doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if isinstance(exc, ERRORS):
            raise self.link.translated(self.doing, exc)


_UNJOINED = object()
"""The reply to each call of a joined command that failed: each is sent again alone."""


class RedisLink:
    """A redis-py asyncio client (made from a URL, or the caller's) and how to use it.

    Args:
        url_or_client: ``redis://``, ``rediss://`` or ``unix://`` URL (a client of
            its own, closed by `close`), or a ``redis.asyncio.Redis`` (the caller's,
            left open).
    """

    def __init__(self, url_or_client: str | aioredis.Redis) -> None:
        self._secrets: list[str] = []
        if isinstance(url_or_client, str):
            url = url_or_client
            self.where = redact(url)
            if not url.startswith(SCHEMES):
                raise ConfigurationError(
                    f"a Redis job store URL must start with redis://, rediss:// or unix://, "
                    f"got {self.where!r}"
                )
            self._secrets = secrets_of(url)
            try:
                # Retry a command once on a fresh connection (a pooled one the server
                # closed). No socket_timeout: with one, redis-py can swallow a
                # cancellation; reads that wait carry timeouts of their own.
                client = aioredis.Redis.from_url(
                    url,
                    max_connections=MAX_CONNECTIONS,  # a URL's own ?max_connections= wins
                    socket_connect_timeout=5,
                    socket_keepalive=True,
                    retry=Retry(NoBackoff(), 1),
                )
                pack_fast(client)
            except ValueError as exc:
                raise ConfigurationError(
                    f"bad Redis job store URL {self.where!r}: {self._scrub(str(exc))}"
                ) from None
            self.client: Any = client  # redis-py's reply types are too wide to narrow
            self.owns = True
        elif isinstance(url_or_client, aioredis.Redis):
            self.client = url_or_client
            self.where = _describe(url_or_client)
            self.owns = False
        else:
            raise ConfigurationError(
                "RedisJobStore takes a redis:// URL or a redis.asyncio.Redis client, "
                f"got {type(url_or_client).__name__}"
            )
        self._turns: TurnBatcher[_Call, Any] = TurnBatcher(self._send, lost=_lost, timeout=30)
        self._listener = Listener(self.client, ResponseError)
        self._closed = False
        self._on_asyncio = False  # seen running on asyncio once (see `require_asyncio`)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def translate(self, doing: str) -> _Translating:
        """Turn redis-py's errors inside the block into job errors.

        Raises:
            JobStoreError: The link is closed (nothing is sent).
        """
        self._require_open(doing)
        return _Translating(self, doing)

    def translated(self, doing: str, exc: Exception) -> JobError:
        """The job error of redis-py's ``exc`` while ``doing`` (the URL's password scrubbed)."""
        detail = self._scrub(str(exc))
        error = self._error(doing, exc, detail)
        error.__cause__ = exc if detail == str(exc) else None
        error.__suppress_context__ = True
        return error

    def _require_open(self, doing: str) -> None:
        if self._closed:
            raise JobStoreError(
                f"the job store at {self.where} is closed ({doing}); use one that is open"
            )
        self.require_asyncio(doing)

    def require_asyncio(self, doing: str) -> None:
        """Refuse to run on another event loop than asyncio (redis-py runs on asyncio only).

        Checked until a call has run on asyncio once (then one attribute test): a
        store is used from one loop.

        Raises:
            ConfigurationError: Naming the loop and what to use instead.
        """
        if self._on_asyncio:
            return
        try:
            library = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:  # outside a task: redis-py will tell
            return
        if library != "asyncio":
            raise ConfigurationError(
                f"the job store at {self.where} runs on asyncio only (redis-py has no "
                f"{library} support), and was called on {library} ({doing}): there, use "
                "MemoryJobStore, or run the code that uses the store on asyncio"
            )
        self._on_asyncio = True

    def _error(self, doing: str, exc: Exception, detail: str) -> JobError:
        if isinstance(exc, ResponseError) and (
            "WRONGTYPE" in detail or "cannot be written" in detail
        ):
            return JobRecordError(
                f"job store at {self.where}: {doing}: a record or index key is unusable "
                f"({detail}); fix or delete it"
            )
        if isinstance(exc, ResponseError):
            return JobStoreError(f"job store at {self.where}: Redis refused {doing}: {detail}")
        return JobStoreError(
            f"cannot reach the job store at {self.where} ({doing}): {type(exc).__name__}: {detail}"
        )

    def refused(self, doing: str, why: bytes | str) -> JobError:
        """The error of a script's row that Redis refused (its ``{'error', why}``)."""
        detail = self._scrub(why.decode() if isinstance(why, bytes) else why)
        return self._error(doing, ResponseError(detail), detail)

    async def command(self, *command: Any) -> Any:
        """Send one command with the others of this event-loop turn; its reply.

        The commands of one turn go out together (`TurnBatcher`: the turn's first
        caller sends them, no task of its own): a batch of one as it is, more as one
        pipeline (not a transaction: each command stands alone, as if sent on its
        own, and gets its own reply or error). Joined script calls go where the first
        of them was submitted: the calls of concurrent tasks have no order to keep.
        """
        return await self._turns.submit(_Call(command))

    async def _send(self, calls: list[_Call]) -> list[Any]:
        """Send a turn's calls (like joinable ones joined); one reply for each call."""
        units: list[list[int]] = []  # indexes of the calls each command sends
        joined: dict[tuple[Any, ...], list[int]] = {}
        for index, call in enumerate(calls):
            if call.parts is None:
                units.append([index])
                continue
            unit = joined.get(call.command)
            if unit is None:
                unit = joined[call.command] = []
                units.append(unit)
            unit.append(index)
        replies = await self._replies([_Call.joined([calls[i] for i in unit]) for unit in units])
        answers: list[Any] = [None] * len(calls)
        for unit, reply in zip(units, replies, strict=True):
            if len(unit) > 1 and isinstance(reply, Exception):
                for index in unit:  # whose error? each call finds out alone
                    answers[index] = reply if isinstance(reply, NoScriptError) else _UNJOINED
                continue
            at = 0
            for index in unit:
                mine = reply
                if len(unit) > 1 and calls[index].rows != SHARED:
                    count = calls[index].items
                    mine, at = reply[at : at + count], at + count
                answers[index] = mine
        return answers

    async def _replies(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Each command's reply, or its error (a failed connection raises)."""
        if len(commands) == 1:
            return [await self._alone(commands[0])]
        async with self.client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))

    async def _alone(self, command: tuple[Any, ...]) -> Any:
        """One command on its own; its error as the reply (as a pipeline gives it)."""
        try:
            return await self.client.execute_command(*command)
        except ResponseError as exc:
            return exc

    async def call(self, script: Script, *args: Any) -> Any:
        """Run ``script`` by its SHA1 (loading it if Redis does not know it yet)."""
        with self.translate(script.name):
            try:
                return await self.command("EVALSHA", script.sha, 0, *args)
            except NoScriptError:
                self._require_open(script.name)
                return await self.client.eval(script.source, 0, *args)

    async def call_joined(self, script: Script, args: tuple[Any, ...], parts: list[str]) -> Any:
        """`call` ``script`` with ``args`` and ``parts``, joined with this turn's like calls.

        Calls of ``script`` with the same ``args`` in one event-loop turn become one
        call with all their parts, in order. The script's ``rows`` says how the parts go
        and what comes back: `SHARED` (trailing arguments; each caller gets the one reply),
        `JSON_ROWS` (JSON texts passed as one JSON array; the reply has one item per
        part) or a row width ``n`` (trailing arguments in rows of ``n``; one item per
        row). Each caller gets its own items. A joined call that fails as a whole is
        sent again for each caller alone, so each gets the error its own call gives;
        one that Redis does not know (NOSCRIPT, after a restart) is loaded (one SCRIPT
        LOAD for the turn's callers), and the callers join again; if Redis refuses the
        load, each sends its own EVAL.
        That is safe because such a failure changes nothing or nothing twice: NOSCRIPT
        comes before the script runs; ``create`` and ``commit`` leave a record that is
        done already as it is; ``start`` and ``complete`` answer a row that Redis
        refused in that row (``lua/common.lua``, ``each_row``), so they do not fail
        as a whole once a row has run (``start`` run twice would count an attempt
        twice).
        """
        own = _arguments(parts, rows=script.rows)
        call = _Call(("EVALSHA", script.sha, 0, *args), parts, rows=script.rows)
        with self.translate(script.name):
            try:
                reply = await self._turns.submit(call)
            except NoScriptError:  # (a restarted server): load it, then join again
                self._require_open(script.name)
                try:
                    if not await self._load(script):
                        raise NoScriptError("not loaded") from None  # refused: EVAL below
                    reply = await self._turns.submit(call)
                except NoScriptError:  # refused, or flushed again meanwhile: on its own
                    self._require_open(script.name)
                    return await self.client.eval(script.source, 0, *args, *own)
        if reply is _UNJOINED:
            return await self.call(script, *args, *own)
        return reply

    async def _load(self, script: Script) -> bool:
        """Load ``script``: the turn's callers join in one SCRIPT LOAD.

        False if Redis refuses it (an ACL without ``script|load``, say).
        """
        try:
            reply = await self._turns.submit(
                _Call(("SCRIPT", "LOAD", script.source), [], rows=SHARED)
            )
        except ResponseError:
            return False
        return reply is not _UNJOINED

    async def hgetall(self, key: str, doing: str) -> Any:
        """The fields of the hash ``key`` (empty if none)."""
        with self.translate(doing):
            return await self.command("HGETALL", key)

    async def hmget(self, key: str, names: tuple[str, ...], doing: str) -> Any:
        """The values of the fields ``names`` of the hash ``key`` (None where missing)."""
        with self.translate(doing):
            return await self.command("HMGET", key, *names)

    async def zcards(self, keys: list[str]) -> list[int]:
        """The sizes of the sorted sets ``keys``, in one round trip."""
        with self.translate("counting jobs"):
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.zcard(key)
                return [int(n) for n in await pipe.execute()]

    def subscription(
        self, channel: str, on_message: Callable[[bytes], None] | None = None
    ) -> contextlib.AbstractAsyncContextManager[Subscription]:
        """Subscribed to ``channel`` (confirmed by the server) for the block.

        Every subscription of the link shares one pub/sub connection (`Listener`).
        """
        return self._listener.subscription(channel, on_message)

    async def close(self) -> None:
        """Fail the commands not answered yet; close the client, if this link made it.

        For good: later operations raise `JobStoreError` and send nothing.
        """
        self._closed = True
        self._turns.close()
        await self._listener.close()
        if self.owns:
            with contextlib.suppress(*ERRORS):
                await self.client.aclose()
