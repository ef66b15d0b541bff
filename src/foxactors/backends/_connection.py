"""Broker connections: their errors, their counts, and the one actor that owns them.

`BrokerConnection` is the connection actor of every broker: it connects in
``on_start`` (a wrong URL or password fails the start with a clear error), answers
`GetConnection` with the live connection, and crashes when a watch reports it lost,
so its rest_for_one supervisor rebuilds it and then what depends on it. A broker
supplies only a `Link`: how to connect, how to wait until the connection is lost,
how to close it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Generic, Protocol, TypeVar

import attrs

from foxactors._actor import Actor
from foxactors._errors import BackendError
from foxactors._lifecycle import Exit
from foxactors._logging import get_logger
from foxactors._redact import redact, redact_in

from ._messages import GetConnection

_logger = get_logger("foxactors")  # stdlib logging unless structlog is configured

C = TypeVar("C")  # a broker's connection (or client)


class BrokerUnreachable(BackendError):
    """A connection to a broker failed in a way worth trying again.

    Nothing listened, the network failed or the attempt timed out: the broker may be
    starting, restarting or on the far side of a healed network. A `WorkerApp`'s
    intake tries again with its reconnect backoff, at start as after a lost
    connection. Refused credentials, an unknown vhost or database, or a server that
    does not speak the protocol are plain `BackendError`: they fail at once, since
    trying again would not help; fix the URL.
    """


@attrs.frozen
class ConnectionStatistics:
    """What a broker backend's connections are doing, for health checks and dashboards.

    Attributes:
        consuming: Sources consuming right now. Health means this is above zero for
            a worker, not merely that a connection is open.
        connects: Connections opened successfully, in all.
        reconnects: Sources started after one of them was lost (supervised restarts).
        consecutive_failures: Failed connection attempts since the last success.
        lost: Sources whose connection or channel was lost, in all.
        last_error: The last connection error (password redacted), or None.
    """

    consuming: int
    connects: int
    reconnects: int
    consecutive_failures: int
    lost: int
    last_error: str | None

    @property
    def healthy(self) -> bool:
        """True while at least one source consumes."""
        return self.consuming > 0


class ConnectionCounts:
    """The counters behind `ConnectionStatistics`, kept by a broker backend."""

    def __init__(self) -> None:
        self.consuming = 0
        self.connects = 0
        self.reconnects = 0
        self.failures = 0
        self.lost = 0
        self.awaiting = 0
        self.last_error: str | None = None

    def snapshot(self) -> ConnectionStatistics:
        """The counts as a frozen `ConnectionStatistics`."""
        return ConnectionStatistics(
            self.consuming,
            self.connects,
            self.reconnects,
            self.failures,
            self.lost,
            self.last_error,
        )

    def connected(self) -> None:
        """A connection was opened."""
        self.failures = 0
        self.connects += 1

    def failed(self, error: str) -> None:
        """A connection attempt failed with ``error`` (already redacted)."""
        self.failures += 1
        self.last_error = error

    def refused(
        self, broker: str, url: str, exc: BaseException, *, wrong_password: bool, retryable: bool
    ) -> BackendError:
        """Count and log a failed connection attempt; return the error to raise.

        The error names the broker and the host, says why, and never the password.
        It is a `BrokerUnreachable` if ``retryable`` (the broker could not be
        reached), else a plain `BackendError` (it answered, and said no). The log
        line is the one line of a failed attempt: whoever retries adds none.
        """
        kind = type(exc).__name__
        detail = "wrong user or password?" if wrong_password else str(exc)
        detail = redact_in(detail, url)
        self.failed(f"{kind}: {detail}")
        _logger.warning(
            f"{broker.lower().replace(' ', '_')}.connect_failed",
            url=redact(url),
            error=self.last_error,
            consecutive_failures=self.failures,
        )
        error = BrokerUnreachable if retryable and not wrong_password else BackendError
        return error(f"cannot connect to {broker} at {redact(url)}: {kind}: {detail}")

    def started(self) -> None:
        """A source started consuming (a reconnect if one was lost before)."""
        self.consuming += 1
        if self.awaiting:
            self.awaiting -= 1
            self.reconnects += 1

    def ended(self, *, lost: bool) -> None:
        """A source stopped consuming, closed or ``lost``."""
        self.consuming -= 1
        self.lost += lost
        self.awaiting += lost


class Link(Protocol[C]):
    """The broker-specific part of a connection actor."""

    @property
    def broker(self) -> str:
        """The broker's name, for errors and logs (``"RabbitMQ"``)."""

    async def connect(self) -> C:
        """Open a connection, or raise `BackendError` (`BrokerUnreachable` to retry)."""

    async def wait_lost(self, connection: C) -> str:
        """Return once ``connection`` is lost, saying why (cancelled when it stops)."""

    async def close(self, connection: C) -> None:
        """Close ``connection`` (errors are ignored: it may be gone already)."""


class BrokerConnection(Actor[Any], Generic[C]):
    """Owns one connection for the consumers under the same supervisor.

    Answers `GetConnection` with it; when ``link.wait_lost`` returns, this actor
    crashes, so its rest_for_one supervisor rebuilds it and then the consumers that
    depended on it: never a connection back while consumers stay gone.
    """

    def __init__(self, link: Link[C]) -> None:
        self._link = link
        self._lost = False
        self._stopping = False

    async def on_start(self) -> None:
        """Connect (a wrong URL or password fails the start, with a clear error)."""
        self.connection = await self._link.connect()
        self.start_task(self._watch)

    async def _watch(self) -> None:
        why = await self._link.wait_lost(self.connection)
        if not self._stopping:  # else closed on purpose, by on_stop
            self._lost = True
            raise BackendError(f"lost the {self._link.broker} connection: {why}")

    async def receive(self, message: Any) -> Any:
        """Answer `GetConnection` with the live connection."""
        if isinstance(message, GetConnection):
            if self._lost:
                raise BackendError(f"the {self._link.broker} connection is lost; reconnecting")
            return self.connection
        return None

    async def on_stop(self, exit: Exit) -> None:
        """Close the connection."""
        self._stopping = True
        with contextlib.suppress(Exception):
            await self._link.close(self.connection)
