"""The benchmark scripts keep working (small counts; no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from foxactors.testing.servers import RabbitMQ

ROOT = Path(__file__).resolve().parent.parent

FIGURES = {
    "core": ["(a) spawn", "memory:", "(b) 4-hop chain", "(c) ask round trips"],
    "pipeline": [
        "memory backend + default stack + no-op worker:",
        "vs raw 6-hop anyio fast-path chain:",
    ],
}

RATIOS = {"core": 4, "pipeline": 1}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("script", sorted(FIGURES))
def test_benchmark_prints_each_figure_beside_its_baseline(script: str, backend: str) -> None:
    proc = subprocess.run(
        [sys.executable, f"benchmarks/{script}.py", "--quick", "--backend", backend],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for figure in FIGURES[script]:
        assert figure in proc.stdout
    assert proc.stdout.count("->") >= RATIOS[script]  # each figure as a ratio to its baseline


def test_rabbitmq_benchmark_prints_each_figure_beside_its_baselines(rabbitmq: RabbitMQ) -> None:
    proc = subprocess.run(
        [sys.executable, "benchmarks/rabbitmq.py", "--quick", "--url", rabbitmq.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for figure in ("publish with confirms", "(a) raw aio-pika", "(b) raw aio-pika", "foxactors"):
        assert figure in proc.stdout
    assert "foxactors / (a):" in proc.stdout
    assert "foxactors / (b):" in proc.stdout
