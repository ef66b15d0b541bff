"""AMQP properties and headers: how a message and its copies look on the wire.

Pure functions of their arguments: no connection, no clock but the one passed in.
"""

from __future__ import annotations

import collections
import datetime
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import aio_pika
import attrs

from foxactors._ack import Decision
from foxactors._message import MessageProperties, effective_priority
from foxactors.backends import _deadletter as letters
from foxactors.backends._deadletter import DeadLetter

ATTEMPT_HEADER = "x-retry-attempt"
DLQ_HEADERS = (
    letters.ORIGINAL_ROUTING_KEY,
    letters.FAILURE_REASON,
    letters.FINAL_ATTEMPT,
    letters.FAILED_AT,
)
REPLAY_DROPS = frozenset({*DLQ_HEADERS, ATTEMPT_HEADER, "x-death", "x-delivery-count"})
CLUSTER_HEADER = "x-cluster-id"  # AMQP 0-9-1 reserves cluster-id; RabbitMQ refuses it


def to_amqp(
    properties: MessageProperties,
    body: bytes,
    message_id: str,
    *,
    now: float,
    persistent: bool = True,
) -> aio_pika.Message:
    """Build an aio-pika message from broker-neutral properties, published ``now``.

    A message without a priority gets `Priority.NORMAL`'s: a priority queue takes a
    missing priority for 0, the lowest, where every backend counts it as normal.
    """
    headers = dict(properties.headers)
    if properties.cluster_id is not None:
        headers[CLUSTER_HEADER] = properties.cluster_id
    return aio_pika.Message(
        body,
        headers=headers,
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        delivery_mode=(
            aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
        ),
        priority=effective_priority(properties.priority),
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        expiration=properties.expiration,
        message_id=message_id,
        timestamp=datetime.datetime.fromtimestamp(now, datetime.UTC),
        type=properties.message_type,
        user_id=properties.user_id,
        app_id=properties.app_id,
    )


def from_amqp(props: Any) -> MessageProperties:
    """Map AMQP basic properties (pamqp) to `MessageProperties`."""
    headers = dict(props.headers or {})
    cluster_id = headers.pop(CLUSTER_HEADER, None)
    expiration = props.expiration
    return MessageProperties(
        content_type=props.content_type or "application/octet-stream",
        content_encoding=props.content_encoding,
        priority=props.priority,
        expiration=float(expiration) / 1000 if expiration else None,
        message_type=props.message_type,
        user_id=props.user_id,
        app_id=props.app_id,
        cluster_id=cluster_id if isinstance(cluster_id, str) else None,
        reply_to=props.reply_to,
        correlation_id=props.correlation_id,
        headers=headers,
    )


COPIED = (Decision.RETRY, Decision.DEFER, Decision.DEAD_LETTER)
"""The decisions applied by publishing a copy of the delivery (then acking it)."""


def attempt_of(headers: Mapping[str, Any], redelivered: bool) -> tuple[int, int | None, str]:
    """The attempt number of a delivery, its quorum delivery count, and what is wrong.

    ``x-retry-attempt`` counts the attempts that went through the retry path; a
    redelivery adds to it: a quorum queue's ``x-delivery-count``, else one if the
    broker's redelivered flag is set. The last item is a dead-letter reason if
    ``x-retry-attempt`` is not a count (then counted as 0), else empty.
    """
    prior = headers.get(ATTEMPT_HEADER, 0)
    problem = ""
    if type(prior) is not int or prior < 0:
        problem = f"bad header: {ATTEMPT_HEADER}={prior!r} is not a count"
        prior = 0
    count = headers.get("x-delivery-count")  # quorum queues count redeliveries
    if type(count) is not int:
        count = None
    return prior + 1 + (count if count is not None else int(redelivered)), count, problem


def copy_headers(
    headers: Mapping[str, Any] | None,
    expiration: Any,
    decision: Decision,
    attempt: int,
    *,
    reason: str,
    routing_key: str,
    now: float,
) -> dict[str, Any]:
    """The headers of the retry, defer or dead-letter copy of a delivery.

    A retry copy counts the attempt just made; a defer copy does not (it never ran);
    a dead-letter copy says why, when and after how many attempts.
    """
    out = {k: v for k, v in (headers or {}).items() if k != "x-delivery-count"}
    if expiration:
        out["x-original-expiration"] = expiration
    if decision is Decision.DEAD_LETTER:
        out[letters.ORIGINAL_ROUTING_KEY] = routing_key
        out.update(letters.letter_fields(reason, attempt, now))
    else:
        out[ATTEMPT_HEADER] = attempt if decision is Decision.RETRY else attempt - 1
    return out


def copy_of(props: Any, body: bytes, headers: dict[str, Any]) -> aio_pika.Message:
    """A copy of a delivered message (AMQP basic properties ``props``) with ``headers``."""
    return aio_pika.Message(
        body,
        headers=headers,
        content_type=props.content_type,
        content_encoding=props.content_encoding,
        delivery_mode=props.delivery_mode,
        priority=props.priority,
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        message_id=props.message_id,
        timestamp=props.timestamp,
        type=props.message_type,
        user_id=props.user_id,
        app_id=props.app_id,
    )


def dead_letter(queue: str, body: bytes, props: Any) -> DeadLetter:
    """The `DeadLetter` of a message of ``queue``'s dead-letter queue."""
    headers = dict(props.headers or {})
    reason, attempts, failed_at = letters.read_letter_fields(headers)
    if reason is None:  # dead-lettered by the broker itself (e.g. expired)
        deaths = headers.get("x-death") or [{}]
        reason = f"{deaths[0].get('reason', 'unknown')} (by the broker)"
    return DeadLetter(
        props.message_id or "", queue, body, from_amqp(props), reason, attempts, failed_at
    )


def replay_properties(letter: DeadLetter) -> MessageProperties:
    """The properties a dead letter is published again with: attempts start over."""
    headers = {k: v for k, v in letter.properties.headers.items() if k not in REPLAY_DROPS}
    return attrs.evolve(letter.properties, headers=headers)


T = TypeVar("T")


def waves(copies: list[T], message_id: Callable[[T], str | None]) -> list[list[T]]:
    """Split ``copies`` into waves in which no two share a message id.

    aiormq matches a returned message to its publish by message id: with two copies
    of one id in flight at once, the return of one could fail the other's publish
    and let the returned one resolve as delivered. (It gives a message without an id
    a random one, so those never clash.)
    """
    out: list[list[T]] = []
    seen: collections.Counter[str] = collections.Counter()
    for entry in copies:
        key = message_id(entry)
        n = 0
        if key:
            n, seen[key] = seen[key], seen[key] + 1
        if n == len(out):
            out.append([])
        out[n].append(entry)
    return out
