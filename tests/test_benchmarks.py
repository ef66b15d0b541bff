"""The benchmark scripts keep working (small counts; no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from foxactors.testing.servers import RabbitMQ, RedisServer

ROOT = Path(__file__).resolve().parent.parent

FIGURES = {
    "core": ["(a) spawn", "memory:", "(b) 4-hop chain", "(c) ask round trips"],
    "pipeline": [
        "memory backend + default stack + no-op worker:",
        "vs raw 6-hop anyio fast-path chain:",
        "vs the same per-message work with no actors:",
    ],
}

RATIOS = {"core": 4, "pipeline": 2}


def quick_run(script: str, *args: str) -> str:
    """Run ``benchmarks/<script>.py --quick`` and return what it printed."""
    proc = subprocess.run(
        [sys.executable, f"benchmarks/{script}.py", "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("script", sorted(FIGURES))
def test_benchmark_prints_each_figure_beside_its_baseline(script: str, backend: str) -> None:
    out = quick_run(script, "--backend", backend)
    for figure in FIGURES[script]:
        assert figure in out
    assert out.count("->") >= RATIOS[script]  # each figure as a ratio to its baseline


def test_rabbitmq_benchmark_prints_each_figure_beside_its_baselines(rabbitmq: RabbitMQ) -> None:
    out = quick_run("rabbitmq", "--url", rabbitmq.url)
    for figure in ("publish with confirms", "(a) raw aio-pika", "(b) raw aio-pika", "foxactors"):
        assert figure in out
    assert "foxactors / (a):" in out
    assert "foxactors / (b):" in out


def test_redis_benchmark_prints_each_figure_beside_its_baselines(redis: RedisServer) -> None:
    out = quick_run("redis_streams", "--url", redis.url)
    for figure in ("publish (foxactors", "(a) raw redis-py", "(b) raw redis-py", "foxactors"):
        assert figure in out
    assert "foxactors / (a):" in out
    assert "foxactors / (b):" in out


def test_jobs_benchmark_prints_each_figure_beside_its_baseline(redis: RedisServer) -> None:
    out = quick_run("jobs", "--redis-url", redis.url, "--backends", "memory,redis")
    for figure in (
        "(a) baseline: MemoryBackend.publish",
        "(a) baseline: raw redis-py XADD",
        "enqueue with records",
        "enqueue_many with records",
        "(b) baseline: same pipeline, no records",
        "jobs end to end, results read back",
        "the same, sent one at a time",
        "(d) enqueue -> handler start, half of (b)",
        "(d) enqueue -> handler start, half of one at a time",
        "(c) end to end on Redis",
        "foxactors sent one at a time",
        ", half of one at a time: p50",  # (d) beside (c), as beside (b)
        "(e) Redis job store",
    ):
        assert figure in out
    # the floor (the same Redis work from bare redis-py) beside (b) on Redis and (c)
    assert "floor: its Redis work from bare redis-py" in out
    assert "floor: its Redis work, bare" in out
    # (a) 2 + 2 per store, (b) 1 per store: memory 3, redis 7 + floor 1; (c) floor 1; (e) 2;
    # peers: 1 each if installed
    assert out.count("->") >= 14
    for peer in ("arq", "celery"):  # a peer that is not installed says how to get it
        assert peer in out


def test_tenants_benchmark_prints_fair_beside_fifo_and_the_ratios() -> None:
    out = quick_run("tenants")
    for figure in (
        "(a) a lone tenant's job behind a backlog",
        "plain FIFO: ",
        "fair      : ",
        "(b) dispatch cost per message",
        "fair, 10,000 tenants: ",
        "(c) pipeline throughput",
    ):
        assert figure in out
    for ratio in (
        "-> FIFO wait / fair wait: ",
        "-> 100 tenants / 1 tenant: ",
        "-> 10,000 tenants / 1 tenant: ",
        "-> plain / fair with 1 tenant: ",
        "-> on / off: ",
    ):
        assert ratio in out


def test_pipeline_benchmark_prints_tracing_on_beside_off() -> None:
    out = quick_run("pipeline", "--tracing")
    for what in ("publish", "process"):
        assert f"tracing {what} (sampled 100%): off " in out


def test_pipeline_benchmark_prints_metrics_and_tracing_on_beside_off() -> None:
    out = quick_run("pipeline", "--observe")
    assert "observability off: " in out
    for what in ("metrics served, scraped every", "tracing (sampled 100%)", "both"):
        assert f"{what}" in out
    assert out.count("-> on/off ") == 3


def test_processes_benchmark_prints_each_figure_beside_its_baseline(
    rabbitmq: RabbitMQ, redis: RedisServer
) -> None:
    out = quick_run("processes", "--rabbitmq-url", rabbitmq.url, "--redis-url", redis.url)
    for broker in ("rabbitmq", "redis"):
        assert f"{broker}: 1 process:" in out
        assert f"{broker}: 2 processes:" in out
    assert "app start (spawn to consuming, 1 process):" in out
    assert "restart (SIGKILL to consuming again):" in out
    assert out.count("->") == 3  # each 2-process figure and the restart, as ratios


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_simulate_benchmark_prints_virtual_time_per_real_second(backend: str) -> None:
    out = quick_run("simulate", "--backend", backend)
    assert f"(a) 100 messages under 5 faults on {backend}:" in out
    assert "x real time" in out
    assert f"(b) hypothesis examples of a 20-message app on {backend}:" in out
