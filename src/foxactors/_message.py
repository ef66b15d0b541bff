"""Messages and outcomes: frozen values that travel through the pipeline. No I/O."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._ack import AckHandle

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return _EMPTY if not value else MappingProxyType(dict(value))


@attrs.frozen
class MessageProperties:
    """Broker-neutral message properties (AMQP's, which Redis fields map onto).

    Build them with keywords or with the fluent ``with_*`` methods, which return a
    new instance: ``MessageProperties().with_priority(5).with_header("tenant", "a")``.
    """

    content_type: str = "application/json"
    content_encoding: str | None = None
    priority: int | None = None
    expiration: float | None = None
    message_type: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    cluster_id: str | None = None
    reply_to: str | None = None
    correlation_id: str | None = None
    headers: Mapping[str, Any] = attrs.field(default=_EMPTY, converter=_frozen_mapping)

    def with_content_type(self, value: str) -> MessageProperties:
        """Return a copy with ``content_type`` set."""
        return attrs.evolve(self, content_type=value)

    def with_content_encoding(self, value: str | None) -> MessageProperties:
        """Return a copy with ``content_encoding`` set."""
        return attrs.evolve(self, content_encoding=value)

    def with_priority(self, value: int | None) -> MessageProperties:
        """Return a copy with ``priority`` set: 0-9 or a `Priority`, higher first.

        None (the default) counts as `Priority.NORMAL` on every backend.
        """
        return attrs.evolve(self, priority=value)

    def with_expiration(self, seconds: float | None) -> MessageProperties:
        """Return a copy with ``expiration`` (time to live in the queue) set."""
        return attrs.evolve(self, expiration=seconds)

    def with_message_type(self, value: str | None) -> MessageProperties:
        """Return a copy with ``message_type`` set; it routes to a handler."""
        return attrs.evolve(self, message_type=value)

    def with_user_id(self, value: str | None) -> MessageProperties:
        """Return a copy with ``user_id`` set."""
        return attrs.evolve(self, user_id=value)

    def with_app_id(self, value: str | None) -> MessageProperties:
        """Return a copy with ``app_id`` set."""
        return attrs.evolve(self, app_id=value)

    def with_cluster_id(self, value: str | None) -> MessageProperties:
        """Return a copy with ``cluster_id`` set."""
        return attrs.evolve(self, cluster_id=value)

    def with_reply_to(self, value: str | None) -> MessageProperties:
        """Return a copy with ``reply_to`` set."""
        return attrs.evolve(self, reply_to=value)

    def with_correlation_id(self, value: str | None) -> MessageProperties:
        """Return a copy with ``correlation_id`` set; logs of the message carry it."""
        return attrs.evolve(self, correlation_id=value)

    def with_headers(self, headers: Mapping[str, Any]) -> MessageProperties:
        """Return a copy whose headers are ``headers`` merged over the current ones."""
        return attrs.evolve(self, headers={**self.headers, **headers})

    def with_header(self, key: str, value: Any) -> MessageProperties:
        """Return a copy with one header set."""
        return self.with_headers({key: value})


DEFAULT_PROPERTIES = MessageProperties()


class Priority(enum.IntEnum):
    """Named priority levels; any int from 0 to 9 is a priority too (higher first).

    A message with no priority counts as `NORMAL` on every backend, so plain
    publishes and normal jobs share one level. Redis Streams keeps one stream per
    named level: an int between two levels is delivered with the level below it.
    """

    LOW = 0
    NORMAL = 3
    HIGH = 6
    CRITICAL = 9


MAX_PRIORITY = 9
"""The highest priority; RabbitMQ queues are declared with it as ``x-max-priority``."""


def effective_priority(priority: int | None) -> int:
    """The level a message of ``priority`` is delivered at: None counts as `NORMAL`."""
    return Priority.NORMAL.value if priority is None else priority


def check_priority(properties: MessageProperties) -> None:
    """Refuse to publish a message whose priority is not None or an int from 0 to 9.

    Every backend's ``publish`` calls it, so a priority that one broker would clip
    (RabbitMQ caps it at the queue's ``x-max-priority``) or another would file under
    a level nobody expects fails the same way everywhere, before anything is sent.

    Raises:
        ConfigurationError: Naming the priority and the accepted values.
    """
    value = properties.priority
    if value is None or (
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_PRIORITY
    ):
        return
    raise ConfigurationError(
        f"message priority must be None or an int from 0 to {MAX_PRIORITY} "
        f"(foxactors.Priority.LOW .. CRITICAL), got {value!r}"
    )


def priority_value(value: object) -> int:
    """Return ``value`` (a `Priority`, its name, or an int 0-9) as an int.

    Raises:
        ConfigurationError: Anything else, naming the value and the accepted ones.
    """
    if isinstance(value, str):
        member = Priority.__members__.get(value.upper())
        if member is not None:
            return int(member)
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_PRIORITY:
        return int(value)
    raise ConfigurationError(
        f"priority must be an int from 0 to {MAX_PRIORITY} or one of "
        f"{', '.join(m.name.lower() for m in Priority)} (Priority.*), got {value!r}"
    )


@attrs.frozen
class Message:
    """A message as a handler sees it.

    Attributes:
        id: The message id (unique per publish).
        payload: The decoded body (JSON by default).
        body: The raw bytes as received.
        properties: Its properties; ``properties.headers`` are its headers.
        attempt: 1 on the first delivery, then 2, 3...: redeliveries after crashes
            and delayed retries both count.
        queue: The queue it was consumed from.
        published_at: When it was published, in wall-clock Unix seconds.
    """

    id: str
    payload: Any
    body: bytes
    properties: MessageProperties = DEFAULT_PROPERTIES
    attempt: int = 1
    queue: str = ""
    published_at: float = 0.0

    @property
    def headers(self) -> Mapping[str, Any]:
        """Shortcut for ``properties.headers``."""
        return self.properties.headers

    @property
    def message_type(self) -> str | None:
        """Shortcut for ``properties.message_type``."""
        return self.properties.message_type


@attrs.frozen(slots=True)
class Delivery:
    """A message plus the one handle that settles it.

    Attributes:
        message: The message.
        handle: Its ack handle; settled exactly once.
    """

    message: Message
    handle: AckHandle


class OutcomeKind(enum.Enum):
    """What became of a delivery; stages turn results into decisions."""

    SUCCEEDED = "succeeded"
    """The handler returned: ack."""
    FAILED = "failed"
    """The handler raised (or timed out, or crashed its worker); the retry stage decides."""
    RETRY = "retry"
    """Try again after ``delay`` seconds."""
    REQUEUE = "requeue"
    """Put back at once (e.g. shutting down before it started)."""
    DEFER = "defer"
    """Not tried (a circuit is open): back after ``delay`` seconds, no attempt counted."""
    DEAD_LETTER = "dead_letter"
    """Give up: to the dead-letter queue with ``reason``."""
    SETTLED = "settled"
    """Nothing left to do: settled by hand (manual mode), or not run because its
    consumer is gone (the broker has it back)."""


@attrs.frozen(slots=True)
class Outcome:
    """The result for one delivery, travelling back through the stages.

    Attributes:
        delivery: The delivery it is about.
        kind: What happened or what to do.
        error: The handler's exception, for failures.
        delay: Seconds to wait, for retries.
        reason: Why, for dead letters and failures (one line, no payload).
        max_attempts: How many attempts the retry policy allows, when one decided
            (for logs: "attempt 2 of 4").
        duration: Seconds the handler ran, when it ran (for logs).
    """

    delivery: Delivery
    kind: OutcomeKind
    error: BaseException | None = attrs.field(default=None, eq=False)
    delay: float = 0.0
    reason: str = ""
    max_attempts: int | None = None
    duration: float | None = attrs.field(default=None, eq=False)
