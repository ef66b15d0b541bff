"""Pipeline throughput beside a raw baseline measured in the same run.

foxactors: N small JSON messages published to the memory backend first, then the
default stack (consumer -> retry stage -> pool -> worker, outcomes back the same
way: 6 actor hops) with a no-op handler, timed until the queue is drained.
Baseline: N items through a raw 6-hop chain of anyio memory streams using the
``send_nowait``/``receive_nowait`` fast path. Also: the same per-message work
(deliveries from the memory source, the handler call, an outcome, the ack) in
one loop with no actors, to show what the actors themselves cost.

With ``--tracing``, the foxactors run is repeated with OpenTelemetry tracing on (the
SDK's tracer provider, spans batched to an exporter that drops them), interleaved with
runs with it off, and the on/off ratio printed; the publishes are timed too.
``--sample R`` keeps that share of the traces (the SDK's parent-based ratio sampler).

With ``--observe``: runs with metrics served (and scraped ten times a second by another
process) and with tracing, each alone and both, interleaved with runs with neither.

Run: python benchmarks/pipeline.py [--backend asyncio|trio] [--messages N] [--quick]
    [--tracing] [--observe] [--sample R]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import _baselines
import anyio
import structlog

import foxactors as fa

HOPS = 6  # consumer -> retry -> pool -> worker -> pool -> retry -> consumer
PREFETCH = 100


async def noop(message: fa.Message) -> None:
    pass


async def foxactors_rate(n: int, workers: int) -> float:
    return (await foxactors_rates(n, workers))[1]


async def foxactors_rates(n: int, workers: int, metrics: bool = False) -> tuple[float, float]:
    """Publishes per second, then messages processed per second.

    With ``metrics``, the app serves its endpoints and another process scrapes
    ``/metrics`` every `SCRAPE_EVERY` seconds while the messages are processed.
    """
    backend = fa.MemoryBackend()
    start = time.perf_counter()
    for i in range(n):
        await backend.publish("bench", {"n": i, "to": "user@example.com"})
    published = n / (time.perf_counter() - start)
    app = fa.WorkerApp("bench").add_worker(noop).with_concurrency_limit(workers)
    app = app.with_prefetch(PREFETCH)
    if metrics:
        from foxactors.observe import with_http  # noqa: PLC0415 - the metrics extra

        app = with_http(app, port=0)
    start = time.perf_counter()
    async with fa.open_system(app.build(backend, "bench")) as system:
        with scraping(system) if metrics else contextlib.nullcontext():
            await backend.join("bench")
            elapsed = time.perf_counter() - start
    assert backend.queue_statistics("bench").dead == 0
    return published, n / elapsed


SCRAPE_EVERY = 0.1
"""Seconds between scrapes with ``--observe``: far more often than Prometheus would."""
_SCRAPER = """
import sys, time, urllib.request
while True:
    urllib.request.urlopen(sys.argv[1]).read()
    time.sleep(float(sys.argv[2]))
"""


@contextlib.contextmanager
def scraping(system: fa.ActorSystem) -> Iterator[None]:
    """Scrape the app's /metrics from a process of its own for the block."""
    from foxactors.observe import HttpStatistics  # noqa: PLC0415 - the metrics extra

    served = system.statistics("/bench/http")
    assert isinstance(served, HttpStatistics)
    scraper = subprocess.Popen(
        [sys.executable, "-c", _SCRAPER, f"{served.url}/metrics", str(SCRAPE_EVERY)]
    )
    try:
        yield
    finally:
        scraper.kill()
        scraper.wait()


def dropping_provider(sample: float, queue_size: int) -> Any:
    """An SDK tracer provider keeping ``sample`` of the traces, exporting to nowhere."""
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415 - only here
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased  # noqa: PLC0415

    class Drop(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(sample)))
    provider.add_span_processor(BatchSpanProcessor(Drop(), max_queue_size=queue_size))
    return provider


def tracing_ratios(n: int, workers: int, backend: str, runs: int, sample: float) -> None:
    """Print the rates with tracing off and on, measured in turns, and their ratios."""
    provider = dropping_provider(sample, 4 * n)
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    for _ in range(runs):
        off.append(anyio.run(foxactors_rates, n, workers, backend=backend))
        fa.enable_tracing(provider)
        try:
            on.append(anyio.run(foxactors_rates, n, workers, backend=backend))
        finally:
            fa.disable_tracing()
            provider.force_flush()
    provider.shutdown()
    for what, index in (("publish", 0), ("process", 1)):
        best_off = max(rates[index] for rates in off)
        best_on = max(rates[index] for rates in on)
        print(
            f"tracing {what} (sampled {sample:.0%}): off {best_off:,.0f}/s, "
            f"on {best_on:,.0f}/s -> on/off {best_on / best_off:.0%} "
            f"({1e6 / best_on - 1e6 / best_off:+.1f} us/msg)"
        )


def observed_ratios(n: int, workers: int, backend: str, runs: int, sample: float) -> None:
    """Print the processing rate with metrics and tracing off, each on, and both on."""
    provider = dropping_provider(sample, 4 * n)
    best: dict[tuple[bool, bool], float] = {}
    for _ in range(runs):
        for metrics, tracing in ((False, False), (True, False), (False, True), (True, True)):
            if tracing:
                fa.enable_tracing(provider)
            try:
                _, rate = anyio.run(foxactors_rates, n, workers, metrics, backend=backend)
            finally:
                fa.disable_tracing()
                provider.force_flush()
            best[metrics, tracing] = max(best.get((metrics, tracing), 0.0), rate)
    provider.shutdown()
    off = best[False, False]
    print(f"observability off: {off:,.0f} msg/s")
    for what, key in (
        (f"metrics served, scraped every {SCRAPE_EVERY} s", (True, False)),
        (f"tracing (sampled {sample:.0%})", (False, True)),
        ("both", (True, True)),
    ):
        on = best[key]
        print(
            f"{what}: {on:,.0f} msg/s -> on/off {on / off:.0%} ({1e6 / on - 1e6 / off:+.1f} us/msg)"
        )


async def raw_rate(n: int) -> float:
    return await _baselines.raw_fast_chain(n, HOPS, PREFETCH)


async def direct_rate(n: int) -> float:
    """The same per-message work with no actors: one loop pulls, calls, acks.

    What is left when the actors are taken away: the memory source's deliveries
    (decoded message, ack handle), the handler call, an outcome, the ack.
    """
    backend = fa.MemoryBackend()
    for i in range(n):
        await backend.publish("bench", {"n": i, "to": "user@example.com"})
    source = await backend.open_source("bench", prefetch=PREFETCH)
    start = time.perf_counter()
    done = 0
    while done < n:
        outcomes = []
        for delivery in await source.receive(PREFETCH, PREFETCH // 2):
            await noop(delivery.message)
            outcomes.append(fa.Outcome(delivery, fa.OutcomeKind.SUCCEEDED))
        for outcome in outcomes:
            outcome.delivery.handle.ack()
        done += len(outcomes)
    elapsed = time.perf_counter() - start
    await source.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--messages", type=int, default=20_000, help="as in the design")
    parser.add_argument("--workers", type=int, default=8, help="the default concurrency")
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    parser.add_argument(
        "--tracing", action="store_true", help="also on/off with OpenTelemetry tracing"
    )
    parser.add_argument("--sample", type=float, default=1.0, help="share of traces kept")
    parser.add_argument(
        "--observe",
        action="store_true",
        help="also metrics (served and scraped) and tracing, off, each on, both on",
    )
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    n, runs = (2_000, 1) if args.quick else (args.messages, 3)

    ours = max(
        anyio.run(foxactors_rate, n, args.workers, backend=args.backend) for _ in range(runs)
    )
    raw = max(anyio.run(raw_rate, n, backend=args.backend) for _ in range(runs))
    direct = max(anyio.run(direct_rate, n, backend=args.backend) for _ in range(runs))
    print(
        f"foxactors pipeline benchmark, backend={args.backend}, {n:,} messages, "
        f"prefetch {PREFETCH}, {args.workers} workers"
    )
    print(
        f"memory backend + default stack + no-op worker: {ours:,.0f} msg/s "
        f"({1e6 / ours:.1f} us/msg; target >= 50,000/s)"
    )
    print(
        f"vs raw {HOPS}-hop anyio fast-path chain: {raw:,.0f} msg/s ({1e6 / raw:.1f} us/msg) "
        f"-> {ours / raw:.0%}"
    )
    print(
        f"vs the same per-message work with no actors: {direct:,.0f} msg/s "
        f"({1e6 / direct:.1f} us/msg) -> {ours / direct:.0%} (target >= 60%); "
        f"the actors add {1e6 / ours - 1e6 / direct:.1f} us/msg"
    )
    if args.tracing:
        tracing_ratios(n, args.workers, args.backend, runs, args.sample)
    if args.observe:
        observed_ratios(n, args.workers, args.backend, runs, args.sample)


if __name__ == "__main__":
    main()
