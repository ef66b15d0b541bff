"""Redis Streams entries: how a message, its copies and its dead letter look as fields.

Pure functions of their arguments: no connection, no clock but the one passed in.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from foxactors._ack import Decision
from foxactors._errors import ConfigurationError
from foxactors._message import DEFAULT_PROPERTIES, MessageProperties
from foxactors.backends import _deadletter as letters
from foxactors.backends._deadletter import DeadLetter

ATTEMPT_FIELD = "x-attempt"
"""Attempts made before this entry was written (retries and requeues copy the entry)."""
SLOT_FIELD = "x-slot"
"""On a fair queue's entry: it holds one of its tenant's slots (see `_fair`); no header."""

PROPERTY_FIELDS = {
    "content_type": "content_type",
    "content_encoding": "content_encoding",
    "priority": "priority",
    "expiration": "expiration",
    "type": "message_type",
    "user_id": "user_id",
    "app_id": "app_id",
    "cluster_id": "cluster_id",
    "reply_to": "reply_to",
    "correlation_id": "correlation_id",
}
DLQ_FIELDS = (letters.FAILURE_REASON, letters.FINAL_ATTEMPT, letters.FAILED_AT, letters.ORIGINAL_ID)
DLQ_KEYS = frozenset(field.encode() for field in DLQ_FIELDS)
RESERVED_FIELDS = frozenset(
    {"payload", "id", "timestamp", ATTEMPT_FIELD, SLOT_FIELD, *PROPERTY_FIELDS, *DLQ_FIELDS}
)
"""Field names with a meaning of their own; headers may not use them."""

NUMERIC_FIELDS: dict[str, type[int] | type[float]] = {
    ATTEMPT_FIELD: int,
    "timestamp": float,
    "priority": int,
    "expiration": float,
}


class BadEntry(Exception):
    """An entry that cannot become a message; its text is the dead-letter reason."""


def _text(name: str, value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise BadEntry(f"bad field: {name} is not UTF-8 ({value[:40]!r})") from None


def _number(name: str, value: bytes, kind: type[int] | type[float]) -> Any:
    try:
        number = kind(value)
    except ValueError:
        raise BadEntry(f"bad field: {name}={value[:40]!r} is not {kind.__name__}") from None
    if not math.isfinite(number) or number < 0:
        raise BadEntry(f"bad field: {name}={value[:40]!r} is out of range")
    return number


def _entry_time(entry_id: bytes) -> float:
    return int(entry_id.partition(b"-")[0]) / 1000


Parsed = tuple[bytes, str, MessageProperties, int, float]  # body, id, properties, prior, time


def plain(
    entry_id: bytes, fields: Mapping[bytes, bytes], payload_key: bytes, default: MessageProperties
) -> Parsed | None:
    """Parse the common entries fast, or return None for the full parse.

    Common: payload, id and timestamp (what `publish` writes without properties), or
    a payload alone (what other producers often write).
    """
    body = fields.get(payload_key)
    if body is None or len(fields) > 3:
        return None
    if len(fields) == 1:
        return body, entry_id.decode(), default, 0, _entry_time(entry_id)
    message_id = fields.get(b"id")
    stamp = fields.get(b"timestamp")
    if message_id is None or stamp is None:
        return None
    try:
        published_at = float(stamp)
        text_id = message_id.decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return (body, text_id, default, 0, published_at) if published_at >= 0 else None


def parse(
    entry_id: bytes, fields: Mapping[bytes, bytes], payload_key: bytes, default: MessageProperties
) -> Parsed:
    """Split an entry's fields into body, id, properties, prior attempts, publish time.

    Raises:
        BadEntry: No payload, or a field of the wrong type.
    """
    body = fields.get(payload_key)
    if body is None:
        raise BadEntry(f"no {payload_key.decode()!r} field")
    message_id = entry_id
    numbers: dict[str, Any] = {}
    values: dict[str, Any] = {}
    headers: dict[str, Any] = {}
    for raw_key, value in fields.items():
        if raw_key == payload_key:
            continue
        key = _text("field name", raw_key)
        kind = NUMERIC_FIELDS.get(key)
        if kind is not None:
            numbers[key] = _number(key, value, kind)
        elif key == "id":
            message_id = value
        elif key == SLOT_FIELD:
            continue
        elif key in PROPERTY_FIELDS:
            values[PROPERTY_FIELDS[key]] = _text(key, value)
        else:
            try:
                headers[key] = value.decode()
            except UnicodeDecodeError:
                headers[key] = value
    prior = numbers.pop(ATTEMPT_FIELD, 0)
    published_at = numbers.pop("timestamp", None)
    values.update(numbers)  # priority, expiration
    if values or headers:
        values.setdefault("content_type", default.content_type)
        properties = MessageProperties(**values, headers=headers)
    else:
        properties = default
    published = published_at if published_at is not None else _entry_time(entry_id)
    return body, _text("id", message_id), properties, prior, published


def check_stream(stream: str) -> None:
    """Refuse a stream name that is not a non-empty string."""
    if not isinstance(stream, str) or not stream:
        raise ConfigurationError(f"stream name must be a non-empty string, got {stream!r}")


def entry_fields(
    body: bytes,
    properties: MessageProperties,
    message_id: str,
    *,
    payload_field: str,
    content_type: str,
    now: float,
) -> dict[str, Any]:
    """The entry fields of a message: body, id, time, properties, headers.

    Raises:
        ConfigurationError: A header uses a reserved name or has a value that
            Redis cannot hold (str, bytes, int and float can; they come back as str).
    """
    fields: dict[str, Any] = {payload_field: body, "id": message_id, "timestamp": repr(now)}
    if properties is DEFAULT_PROPERTIES:
        return fields
    for field, name in PROPERTY_FIELDS.items():
        value = getattr(properties, name)
        if value is None or (name == "content_type" and value == content_type):
            continue
        fields[field] = repr(value) if isinstance(value, float) else str(value)
    for key, value in properties.headers.items():
        if key in RESERVED_FIELDS or key == payload_field:
            raise ConfigurationError(
                f"header {key!r} uses a reserved field name of Redis entries; rename it"
            )
        if isinstance(value, bool) or not isinstance(value, str | bytes | int | float):
            raise ConfigurationError(
                f"header {key!r} is {type(value).__name__}; Redis fields hold str, bytes, "
                "int or float (encode it as a string)"
            )
        fields[key] = value
    return fields


Copy = tuple[bytes, int, Decision, float, str]  # entry id, attempt, decision, delay, reason
COPY_MODE = {
    Decision.RETRY: "later",
    Decision.DEFER: "later",
    Decision.REQUEUE: "now",
    Decision.DEAD_LETTER: "dlq",
}
"""The mode of the settle script for each decision that copies its entry."""


def dead_letter_fields(
    reason: str, attempt: int, entry_id: bytes, failed_at: float
) -> tuple[Any, ...]:
    """The fields a dead-letter copy adds to its entry's (flat, for the settle script)."""
    fields = {**letters.letter_fields(reason, attempt, failed_at), letters.ORIGINAL_ID: entry_id}
    return tuple(itertools.chain.from_iterable(fields.items()))


def dead_letter(
    queue: str,
    entry_id: bytes,
    fields: Mapping[bytes, bytes],
    payload_key: bytes,
    default: MessageProperties,
) -> DeadLetter:
    """The `DeadLetter` of an entry of ``queue``'s dead-letter stream."""
    extra = {k.decode(): v for k, v in fields.items() if k in DLQ_KEYS}
    rest = {k: v for k, v in fields.items() if k not in DLQ_KEYS}
    try:
        body, message_id, properties, _, _ = parse(entry_id, rest, payload_key, default)
    except BadEntry:  # a bad entry dead-lettered as it was
        body = rest.get(payload_key, b"")
        original = extra.get(letters.ORIGINAL_ID)
        message_id = original.decode(errors="replace") if original else entry_id.decode()
        properties = DEFAULT_PROPERTIES
    reason, attempts, failed_at = letters.read_letter_fields(extra)
    return DeadLetter(
        message_id,
        queue,
        body,
        properties,
        "unknown" if reason is None else reason,
        attempts,
        failed_at,
    )
