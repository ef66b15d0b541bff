"""The benchmark scripts keep working (small counts; no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_core_benchmark_prints_every_figure_with_its_baseline(backend: str) -> None:
    proc = subprocess.run(
        [sys.executable, "benchmarks/core.py", "--quick", "--backend", backend],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for figure in ("(a) spawn", "memory:", "(b) 4-hop chain", "(c) ask round trips"):
        assert figure in out
    assert out.count(" vs ") >= 4  # each figure is printed beside its baseline


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_pipeline_benchmark_prints_its_figure_with_the_baseline(backend: str) -> None:
    proc = subprocess.run(
        [sys.executable, "benchmarks/pipeline.py", "--quick", "--backend", backend],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "memory backend + default stack + no-op worker:" in proc.stdout
    assert "vs raw 6-hop anyio fast-path chain:" in proc.stdout
