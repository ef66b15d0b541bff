"""Merging several processes' metrics: sums of what each counted, whatever the order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from foxactors.observe import merge

QUEUES = st.sampled_from(["a", "b", "c"])
# one process: (queue -> messages received, queue depth it saw, ready)
PROCESS = st.tuples(
    st.dictionaries(QUEUES, st.integers(0, 10_000), max_size=3),
    st.integers(0, 500),
    st.booleans(),
)


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def exposition(process: tuple[dict[str, int], int, bool]) -> str:
    received, depth, ready = process
    counter = CounterMetricFamily("foxactors_messages_received", "x", labels=["queue"])
    for queue, count in received.items():
        counter.add_metric([queue], count)
    queued = GaugeMetricFamily("foxactors_queue_messages", "x", labels=["queue", "state"])
    queued.add_metric(["a", "ready"], depth)
    up = GaugeMetricFamily("foxactors_ready", "x")
    up.add_metric([], 1.0 if ready else 0.0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed([counter, queued, up]))
    return generate_latest(registry).decode()


def values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@given(st.lists(PROCESS, min_size=1, max_size=5))
def test_counters_add_up_shared_gauges_take_the_largest_ready_the_smallest(
    processes: list[tuple[dict[str, int], int, bool]],
) -> None:
    merged = values(merge(exposition(p) for p in processes).decode())
    for queue in ("a", "b", "c"):
        expected = sum(received.get(queue, 0) for received, _, _ in processes)
        key = ("foxactors_messages_received_total", (("queue", queue),))
        if any(queue in received for received, _, _ in processes):
            assert merged[key] == expected
        else:
            assert key not in merged
    depth = ("foxactors_queue_messages", (("queue", "a"), ("state", "ready")))
    assert merged[depth] == max(d for _, d, _ in processes)
    assert merged[("foxactors_ready", ())] == float(all(r for _, _, r in processes))


@given(st.lists(PROCESS, min_size=3, max_size=5))
def test_merging_in_any_order_or_grouping_gives_the_same(
    processes: list[tuple[dict[str, int], int, bool]],
) -> None:
    texts = [exposition(p) for p in processes]
    at_once = values(merge(texts).decode())
    shuffled = list(reversed(texts))
    grouped = merge([merge(shuffled[:2]).decode(), *shuffled[2:]]).decode()
    assert values(grouped) == at_once


def test_histograms_from_several_processes_add_bucket_by_bucket() -> None:
    def histogram(observations: list[float]) -> str:
        registry = CollectorRegistry()
        h = Histogram("foxactors_message_duration_seconds", "x", registry=registry)
        for seconds in observations:
            h.observe(seconds)
        return generate_latest(registry).decode()

    one, two = [0.001, 0.2, 3.0], [0.05, 0.2]
    merged = values(merge([histogram(one), histogram(two)]).decode())
    for key, value in values(histogram(one + two)).items():
        if key[0].endswith(("_bucket", "_count")):
            assert merged[key] == value
    assert merged[("foxactors_message_duration_seconds_count", ())] == 5


def test_the_next_tick_of_a_periodic_job_is_one_time_not_a_sum() -> None:
    def process(enqueued: int) -> str:
        tick = GaugeMetricFamily("foxactors_periodic_next_tick_seconds", "x", labels=["name"])
        tick.add_metric(["daily"], 1_800_000_000.0)  # every scheduler waits for the same tick
        count = CounterMetricFamily("foxactors_periodic_enqueued", "x", labels=["name"])
        count.add_metric(["daily"], enqueued)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed([tick, count]))
        return generate_latest(registry).decode()

    merged = values(merge([process(2), process(1), process(0)]).decode())
    daily = (("name", "daily"),)
    assert merged[("foxactors_periodic_next_tick_seconds", daily)] == 1_800_000_000.0
    assert merged[("foxactors_periodic_enqueued_total", daily)] == 3  # each tick once, somewhere


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), min_size=1, max_size=5))
def test_a_depth_only_its_process_sees_is_added_up(processes: list[tuple[int, int]]) -> None:
    # RabbitMQ: each process counts only the deliveries it holds (labelled seen="process")
    texts = []
    for ready, held in processes:
        queued = GaugeMetricFamily("foxactors_queue_messages", "x", labels=["queue", "state"])
        queued.add_metric(["a", "ready"], ready)
        queued.add_sample(
            "foxactors_queue_messages",
            {"queue": "a", "state": "in_flight", "seen": "process"},
            held,
        )
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed([queued]))
        texts.append(generate_latest(registry).decode())
    merged = values(merge(texts).decode())
    in_flight = (("queue", "a"), ("seen", "process"), ("state", "in_flight"))
    assert merged[("foxactors_queue_messages", in_flight)] == sum(h for _, h in processes)
    waiting = (("queue", "a"), ("state", "ready"))
    assert merged[("foxactors_queue_messages", waiting)] == max(r for r, _ in processes)
