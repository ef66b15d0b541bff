"""`Tally`: what a consumer received and settled, counted as plain integers.

The consumer is the one place every delivery enters and every outcome is settled,
so it counts there: a dict lookup and an add per delivery and per outcome, and a
bisect into fixed buckets for the handler's duration. Nothing is formatted or
locked on the hot path; `ConsumerStatistics` copies the counts when someone reads
them (a metrics scrape, a test).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TypeVar

import attrs

from foxactors._message import Delivery, Outcome, OutcomeKind

DURATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Upper bounds (seconds) of the duration histogram's buckets; +Inf comes after."""

K = TypeVar("K")
V = TypeVar("V")

_FAILED_KINDS = frozenset({OutcomeKind.FAILED, OutcomeKind.RETRY, OutcomeKind.DEAD_LETTER})


def _frozen(value: Mapping[K, V]) -> Mapping[K, V]:
    """A read-only copy of ``value``."""
    return MappingProxyType(dict(value))


@attrs.frozen
class Durations:
    """Handler durations of one message type, as a cumulative-ready histogram.

    Attributes:
        counts: Observations per bucket of `DURATION_BUCKETS`, then one for +Inf
            (not cumulative: each observation counts in one bucket).
        total: Sum of the observed seconds.
    """

    counts: tuple[int, ...]
    total: float


@attrs.frozen
class ConsumerStatistics:
    """What one consumer did since it was built, read without an ask.

    The counts live in the consumer's cell-long `Tally`, so they survive restarts
    of the consumer (a reconnect) and only grow: counters, as Prometheus wants them.
    ``None`` as a message type means the message had none.

    Attributes:
        queue: The queue it consumes.
        consuming: Whether it is pulling now: its source is open and has not
            failed (a lost connection), and intake is not stopped. A connected
            consumer that stopped intake (draining) is not.
        received: Deliveries pulled, by message type.
        settled: Outcomes settled (or skipped as settled already), by
            ``(outcome kind value, message type)``: ``succeeded``, ``retry``,
            ``requeue``, ``defer``, ``dead_letter``, ``failed`` (no retry stage:
            dead-lettered), ``settled``.
        failed: Attempts whose handler failed (raised, timed out, crashed its
            worker), whatever came next, by message type.
        durations: Handler durations of attempts that ran, by message type.
    """

    queue: str
    consuming: bool
    received: Mapping[str | None, int] = attrs.field(hash=False)
    settled: Mapping[tuple[str, str | None], int] = attrs.field(hash=False)
    failed: Mapping[str | None, int] = attrs.field(hash=False)
    durations: Mapping[str | None, Durations] = attrs.field(hash=False)


class Tally:
    """The consumer's counters: plain dicts of ints, updated in place."""

    __slots__ = ("_durations", "failed", "received", "settled")

    def __init__(self) -> None:
        self.received: dict[str | None, int] = {}
        self.settled: dict[tuple[OutcomeKind, str | None], int] = {}
        self.failed: dict[str | None, int] = {}
        self._durations: dict[str | None, list[float]] = {}  # bucket counts, then the sum

    def pulled(self, deliveries: Sequence[Delivery]) -> None:
        """Count ``deliveries`` as received."""
        received = self.received
        for delivery in deliveries:
            kind = delivery.message.properties.message_type
            received[kind] = received.get(kind, 0) + 1

    def outcome(self, outcome: Outcome) -> None:
        """Count ``outcome`` as settled, and its duration if its handler ran."""
        kind = outcome.kind
        message_type = outcome.delivery.message.properties.message_type
        key = (kind, message_type)
        settled = self.settled
        settled[key] = settled.get(key, 0) + 1
        if outcome.error is not None and kind in _FAILED_KINDS:
            self.failed[message_type] = self.failed.get(message_type, 0) + 1
        duration = outcome.duration
        if duration is not None:
            buckets = self._durations.get(message_type)
            if buckets is None:
                buckets = self._durations[message_type] = [0.0] * (len(DURATION_BUCKETS) + 2)
            buckets[bisect_left(DURATION_BUCKETS, duration)] += 1
            buckets[-1] += duration

    def statistics(self, queue: str, *, consuming: bool) -> ConsumerStatistics:
        """The counts now, as a frozen `ConsumerStatistics`."""
        return ConsumerStatistics(
            queue=queue,
            consuming=consuming,
            received=_frozen(self.received),
            settled=_frozen({(kind.value, t): n for (kind, t), n in self.settled.items()}),
            failed=_frozen(self.failed),
            durations=_frozen(
                {
                    t: Durations(tuple(int(n) for n in b[:-1]), b[-1])
                    for t, b in self._durations.items()
                }
            ),
        )
