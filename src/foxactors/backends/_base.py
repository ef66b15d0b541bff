"""The contract between the pipeline and a message backend."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
import structlog

from foxactors._ack import Settler
from foxactors._errors import BackendError
from foxactors._message import Delivery, MessageProperties

_logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("foxactors")

CONNECTION = "foxactors.connection.get"
"""What a consumer asks a backend's connection actor for: the live connection.

A backend whose consumers share a connection offers ``connection_actor()`` (a factory
of an actor that owns the connection, answers this message with it, and crashes when
it is lost) and ``open_source(queue, prefetch=..., connection=...)``. `WorkerApp`
then puts the connection actor and the consumer under a rest_for_one supervisor,
followed by the backend's ``intake_actors(queue)`` if it has any (named factories of
helper actors that ask the consumer for its source with `SOURCE`).
"""


SOURCE = "foxactors.consumer.source"
"""What a backend's helper actors ask the consumer for: its current source."""


class BrokerUnreachable(BackendError):
    """A connection to a broker failed in a way worth trying again.

    Nothing listened, the network failed or the attempt timed out: the broker may be
    starting, restarting or on the far side of a healed network. A `WorkerApp`'s
    intake tries again with its reconnect backoff, at start as after a lost
    connection. Refused credentials, an unknown vhost or database, or a server that
    does not speak the protocol are plain `BackendError`: they fail at once, since
    trying again would not help; fix the URL.
    """


def redact(url: str) -> str:
    """Return ``url`` with its password (in the authority or the query) as ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except (TypeError, ValueError):
        return "<unparseable URL>"
    netloc = parts.netloc
    if password is not None:
        host = netloc.rpartition("@")[2]
        netloc = f"{parts.username or ''}:***@{host}"
    query = parts.query
    if "password" in query:
        query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(query, True)])
    return urlunsplit(parts._replace(netloc=netloc, query=query))


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
        detail = detail.replace(url, redact(url))
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


@attrs.frozen
class DeadLetter:
    """A message that was given up on, with why and when.

    Attributes:
        id: The original message id.
        queue: The queue it came from.
        body: The original body, untouched.
        properties: The original properties and headers, untouched.
        reason: Why it was dead-lettered (one line).
        attempts: How many times it was delivered.
        failed_at: When, in wall-clock Unix seconds (NaN if a broker's record lacks it).
    """

    id: str
    queue: str
    body: bytes
    properties: MessageProperties
    reason: str
    attempts: int
    failed_at: float


class Source(Settler, Protocol):
    """One consumer of one queue, with credit: never more than ``prefetch`` unsettled.

    Handles of a closed source are stale: settling them is a logged no-op.
    """

    queue: str
    prefetch: int

    @property
    def unsettled(self) -> int:
        """Deliveries handed out and not yet settled."""

    async def receive(self, max_count: int, min_credit: int = 1) -> list[Delivery]:
        """Wait for a delivery and ``min_credit`` free credit; return at most ``max_count``.

        ``min_credit`` is GenStage's minimum demand: asking again only once that much
        credit is free makes deliveries arrive in batches.
        """

    async def wait_settled(self) -> None:
        """Wait until no delivery is unsettled."""

    async def close(self) -> None:
        """Stop consuming; every unsettled delivery goes back to its queue."""


class Backend(Protocol):
    """A place messages are published to and consumed from."""

    name: str

    async def publish(
        self,
        queue: str,
        payload: Any,
        *,
        properties: MessageProperties | None = None,
        delay: float = 0.0,
    ) -> str:
        """Publish ``payload`` (encoded by the backend's codec); return the message id."""

    async def open_source(self, queue: str, *, prefetch: int) -> Source:
        """Start consuming ``queue`` with at most ``prefetch`` unsettled deliveries."""

    def statistics(self) -> ConnectionStatistics:
        """Return what its connections and consumers are doing (one shape for all)."""
