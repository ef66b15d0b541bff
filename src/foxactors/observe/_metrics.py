"""Prometheus metrics of a `Reading`, made at scrape time by a custom collector.

Nothing is counted for Prometheus on the hot path: the consumer, the pool and the
supervisors keep plain integers (their `statistics()`), and `TreeCollector` turns a
reading of them into metric families when a scrape asks. The exposition format is
prometheus-client's own (`generate_latest`), never written by hand.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from foxactors._lifecycle import ActorState
from foxactors.pipeline import DURATION_BUCKETS as BUCKETS
from foxactors.pipeline import ConsumerStatistics, PoolStatistics

from ._health import is_ready
from ._merge import OWN
from ._reading import Reading

PREFIX = "foxactors"

#: The consumer's outcome kinds, as the counter each is counted in.
OUTCOME_COUNTERS: dict[str, tuple[str, str]] = {
    "succeeded": ("messages_succeeded", "Messages whose handler returned (acked)."),
    "retry": ("messages_retried", "Failed attempts sent back for a later retry."),
    "dead_letter": ("messages_dead_lettered", "Messages sent to the dead-letter queue."),
    "failed": ("messages_dead_lettered", "Messages sent to the dead-letter queue."),
    "requeue": ("messages_requeued", "Deliveries put back at once (crash, shutdown)."),
    "defer": ("messages_deferred", "Deliveries deferred untried (circuit open)."),
    "settled": ("messages_settled_by_handler", "Deliveries settled by a manual-ack handler."),
}

_MESSAGE_LABELS = ["pipeline", "queue", "message_type"]


def _name(short: str) -> str:
    return f"{PREFIX}_{short}"


class TreeCollector(Collector):
    """A prometheus-client collector of one `Reading` (see docs/observability.md)."""

    def __init__(self, reading: Reading) -> None:
        self._reading = reading

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family of the reading."""
        yield from self._messages()
        yield from self._tree()
        yield from self._brokers()
        yield from self._periodic()

    def _messages(self) -> Iterator[Metric]:
        received = CounterMetricFamily(
            _name("messages_received"), "Deliveries pulled from the broker.", labels=_MESSAGE_LABELS
        )
        failed = CounterMetricFamily(
            _name("messages_failed"),
            "Attempts whose handler raised, timed out or crashed its worker.",
            labels=_MESSAGE_LABELS,
        )
        outcomes: dict[str, CounterMetricFamily] = {}
        for name, text in OUTCOME_COUNTERS.values():
            if name not in outcomes:
                outcomes[name] = CounterMetricFamily(_name(name), text, labels=_MESSAGE_LABELS)
        durations = HistogramMetricFamily(
            _name("message_duration_seconds"),
            "Seconds the handler ran, per attempt.",
            labels=_MESSAGE_LABELS,
        )
        totals: dict[tuple[str, str, str, str], float] = {}  # (counter, *labels) -> value
        for snap in self._reading.snapshot.walk():
            stats = snap.statistics
            if not isinstance(stats, ConsumerStatistics):
                continue
            pipeline = _pipeline_of(snap.path)
            base = (pipeline, stats.queue)
            for kind, count in stats.received.items():
                received.add_metric([*base, kind or ""], count)
            for kind, count in stats.failed.items():
                failed.add_metric([*base, kind or ""], count)
            for (outcome, kind), count in stats.settled.items():
                name = OUTCOME_COUNTERS.get(outcome, ("", ""))[0]
                if name:
                    key = (name, *base, kind or "")
                    totals[key] = totals.get(key, 0) + count
            for kind, histogram in stats.durations.items():
                cumulative = list(accumulate(histogram.counts))
                buckets = [(_le(b), float(n)) for b, n in zip(BUCKETS, cumulative, strict=False)]
                buckets.append(("+Inf", float(cumulative[-1])))
                durations.add_metric([*base, kind or ""], buckets, histogram.total)
        for (name, *labels), value in totals.items():
            outcomes[name].add_metric(labels, value)
        yield received
        yield from outcomes.values()
        yield failed
        yield durations

    def _tree(self) -> Iterator[Metric]:
        restarts = CounterMetricFamily(
            _name("actor_restarts"), "Restarts of the actor at each path.", labels=["path"]
        )
        mailbox = GaugeMetricFamily(
            _name("mailbox_depth"), "Messages waiting in each actor's mailbox.", labels=["path"]
        )
        states = GaugeMetricFamily(_name("actors"), "Actors in each state.", labels=["state"])
        in_flight = GaugeMetricFamily(
            _name("in_flight"), "Deliveries the workers hold.", labels=["pipeline"]
        )
        waiting = GaugeMetricFamily(
            _name("pool_waiting"), "Deliveries waiting for a worker.", labels=["pipeline"]
        )
        workers = GaugeMetricFamily(_name("workers"), "Worker actors.", labels=["pipeline"])
        busy = GaugeMetricFamily(
            _name("workers_busy"), "Workers holding work.", labels=["pipeline"]
        )
        counts = dict.fromkeys((s.value for s in ActorState), 0)
        for snap in self._reading.snapshot.walk():
            restarts.add_metric([snap.path], snap.restarts)
            mailbox.add_metric([snap.path], snap.mailbox_depth)
            counts[snap.state.value] += 1
            stats = snap.statistics
            if isinstance(stats, PoolStatistics):
                pipeline = [snap.path.rpartition("/")[0] or "/"]
                in_flight.add_metric(pipeline, stats.in_flight)
                waiting.add_metric(pipeline, stats.waiting)
                workers.add_metric(pipeline, stats.workers)
                busy.add_metric(pipeline, stats.busy)
        for state, count in counts.items():
            states.add_metric([state], count)
        yield from (restarts, mailbox, states, in_flight, waiting, workers, busy)

    def _brokers(self) -> Iterator[Metric]:
        labels = ["pipeline", "broker"]
        consuming = GaugeMetricFamily(
            _name("broker_consuming"), "Sources consuming now.", labels=labels
        )
        connects = CounterMetricFamily(
            _name("broker_connects"), "Broker connections opened.", labels=labels
        )
        reconnects = CounterMetricFamily(
            _name("broker_reconnects"), "Sources started after a lost one.", labels=labels
        )
        lost = CounterMetricFamily(
            _name("broker_lost"), "Sources whose connection was lost.", labels=labels
        )
        failures = GaugeMetricFamily(
            _name("broker_consecutive_failures"),
            "Failed connection attempts since the last success.",
            labels=labels,
        )
        depth = GaugeMetricFamily(
            _name("queue_messages"), "Messages in the queue, by state.", labels=["queue", "state"]
        )
        ready = GaugeMetricFamily(
            _name("ready"), "1 while every intake consumes (as /ready), else 0."
        )
        seen: set[tuple[str, str]] = set()
        for intake in self._reading.intakes:
            for state, count in intake.queue_depth.items():
                if (intake.queue, state) not in seen:
                    seen.add((intake.queue, state))
                    if state == "in_flight" and state in intake.seen_here:
                        # this process's deliveries only: marked, so a merge adds them up
                        own = {"queue": intake.queue, "state": state, OWN[0]: OWN[1]}
                        depth.add_sample(depth.name, own, count)
                    else:
                        depth.add_metric([intake.queue, state], count)
            stats = intake.connection
            if stats is None:
                continue
            key = [intake.pipeline, intake.broker]
            consuming.add_metric(key, stats.consuming)
            connects.add_metric(key, stats.connects)
            reconnects.add_metric(key, stats.reconnects)
            lost.add_metric(key, stats.lost)
            failures.add_metric(key, stats.consecutive_failures)
        ready.add_metric([], 1.0 if is_ready(self._reading) else 0.0)
        jobs = GaugeMetricFamily(_name("jobs"), "Jobs in each state.", labels=["state"])
        for state, count in sorted(self._reading.jobs.items()):
            jobs.add_metric([state], count)
        yield from (consuming, connects, reconnects, lost, failures, depth, jobs, ready)

    def _periodic(self) -> Iterator[Metric]:
        """The periodic jobs' schedulers: each job's next tick and the ticks enqueued."""
        # no scheduler can run unless its module was imported (the jobs extra)
        kind = getattr(sys.modules.get("foxactors.jobs._scheduler"), "PeriodicStatistics", None)
        if kind is None:
            return
        next_tick = GaugeMetricFamily(
            _name("periodic_next_tick_seconds"),
            "Unix time of the tick each periodic job waits for.",
            labels=["name"],
        )
        enqueued = CounterMetricFamily(
            _name("periodic_enqueued"),
            "Ticks this process's scheduler enqueued (another's ticks are theirs).",
            labels=["name"],
        )
        found = False
        for snap in self._reading.snapshot.walk():
            stats = snap.statistics
            if isinstance(stats, tuple) and stats and all(isinstance(s, kind) for s in stats):
                found = True
                for periodic in stats:
                    enqueued.add_metric([periodic.name], periodic.enqueued)
                    if periodic.next_tick is not None:
                        next_tick.add_metric([periodic.name], periodic.next_tick)
        if found:
            yield from (next_tick, enqueued)


def _pipeline_of(consumer_path: str) -> str:
    """The pipeline of a consumer at ``.../consumer`` or ``.../intake/consumer``."""
    parent = consumer_path.rpartition("/")[0]
    if parent.endswith("/intake"):
        parent = parent.rpartition("/")[0]
    return parent or "/"


def _le(bound: float) -> str:
    return repr(float(bound))


def render(reading: Reading) -> bytes:
    """The Prometheus text exposition of ``reading``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TreeCollector(reading))
    return generate_latest(registry)
