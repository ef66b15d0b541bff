"""Merging the metrics of several processes into one exposition.

Each worker process serves (or hands its parent) its own exposition; the parent of
``foxactors run --processes N`` merges them with `merge` and serves the result, so
Prometheus scrapes one endpoint and sees the whole. Samples with the same name and
labels are added up: counters and histograms (bucket, count, sum) because each
process counted its own messages; most gauges (in flight, workers, consuming)
because each process holds its own. A few gauges describe something the processes
share, the broker's queue or the job store, and every process reports the same
figure: those take the largest (`SHARED_GAUGES`), unless a sample is labelled
``seen="process"`` (`OWN`): then it counts what only its process holds, as
RabbitMQ's in-flight deliveries, and is added up. Readiness takes the smallest, so
the whole is ready only when every process is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from foxactors._errors import ConfigurationError

#: Gauges every process reports alike (a shared queue, a shared store, the periodic jobs'
#: ticks): the largest wins.
SHARED_GAUGES = frozenset(
    {"foxactors_queue_messages", "foxactors_jobs", "foxactors_periodic_next_tick_seconds"}
)
#: The label of a shared gauge's sample that counts only what its process holds: added up.
OWN = ("seen", "process")
#: Gauges that hold for the whole only if they hold for every process: the smallest wins.
ALL_GAUGES = frozenset({"foxactors_ready"})


def _rule(name: str, kind: str) -> Callable[[float, float], float]:
    if kind == "gauge" and name in SHARED_GAUGES:
        return max
    if kind == "gauge" and name in ALL_GAUGES:
        return min
    return _add


def _add(a: float, b: float) -> float:
    return a + b


class _Merged(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def merge_families(expositions: Iterable[str]) -> list[Metric]:
    """The metric families of ``expositions`` (Prometheus text), merged (see module).

    Raises:
        ConfigurationError: One family has different types in two expositions, or
            one is not Prometheus text.
    """
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in expositions:
        try:
            parsed = list(text_string_to_metric_families(text))
        except ValueError as exc:
            raise ConfigurationError(f"not a Prometheus exposition: {exc}") from exc
        for family in parsed:
            known = families.get(family.name)
            if known is None:
                known = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
                values[family.name] = {}
            elif known.type != family.type:
                raise ConfigurationError(
                    f"metric {family.name} is a {known.type} in one process and a "
                    f"{family.type} in another: every process must run the same version"
                )
            combine = _rule(family.name, family.type)
            samples = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                old = samples.get(key)
                own = sample.labels.get(OWN[0]) == OWN[1]
                rule = _add if own else combine
                samples[key] = sample.value if old is None else rule(old, sample.value)
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    return list(families.values())


def merge(expositions: Iterable[str]) -> bytes:
    """Merge the Prometheus text of several processes into one exposition (see module)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(merge_families(expositions)))
    return generate_latest(registry)
