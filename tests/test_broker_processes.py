"""Worker processes on real brokers, killed and stopped mid-stream (asyncio, real time).

``examples/broker_worker.py`` runs under ``foxactors run`` in processes of their own, on
RabbitMQ and on Redis Streams; the tests count what each process handled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from foxactors import backends

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
CLAIM_MIN_IDLE = 1.0  # Redis: a killed worker's entries are taken over after this


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.fixture(params=["rabbitmq", "redis"])
def url(request: pytest.FixtureRequest) -> str:
    server = request.getfixturevalue(request.param)
    return str(server.url)


@pytest.fixture
def queue() -> str:
    return f"emails-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def backend(url: str) -> AsyncIterator[Any]:
    broker: Any = (
        backends.RedisBackend(url) if url.startswith("redis") else backends.RabbitMQBackend(url)
    )
    yield broker
    await broker.close()


def worker_process(url: str, queue: str, log: Path, **env: str) -> subprocess.Popen[str]:
    """``foxactors run examples.broker_worker:app`` in a process of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "foxactors", "run", "examples.broker_worker:app"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={
            **os.environ,
            # the foxactors under test first, then the examples package
            "PYTHONPATH": os.pathsep.join([str(Path(backends.__file__).parents[2]), str(ROOT)]),
            "FOXACTORS_BROKER_URL": url,
            "FOXACTORS_QUEUE": queue,
            "FOXACTORS_PROCESSED_LOG": str(log),
            "FOXACTORS_CLAIM_MIN_IDLE": str(CLAIM_MIN_IDLE),
            **env,
        },
    )


async def processed(log: Path, at_least: int, *, distinct: bool = False) -> Counter[int]:
    """Wait until another process logged ``at_least`` (distinct) numbers; return the counts."""
    path = anyio.Path(log)
    with anyio.fail_after(60):
        while True:
            lines = (await path.read_text()).split() if await path.exists() else []
            counts = Counter(int(n) for n in lines)
            if (len(counts) if distinct else len(lines)) >= at_least:
                return counts
            await anyio.sleep(0.05)  # polling another process's file, not our own tasks


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out
    return out


async def test_a_worker_killed_mid_stream_loses_nothing(
    backend: Any, url: str, queue: str, tmp_path: Path
) -> None:
    for n in range(300):
        await backend.publish(queue, {"n": n})
    log = tmp_path / "processed"
    first = worker_process(url, queue, log, FOXACTORS_STALL_FROM="100")
    second = None
    try:
        await processed(log, 101)  # it hangs from 100 on, with deliveries open
        first.kill()  # SIGKILL: no drain, no settlement
        first.communicate(timeout=30)
        before = await processed(log, 101)  # all the first process handled, final now
        second = worker_process(url, queue, log)
        # RabbitMQ returns the dead connection's deliveries at once; Redis leaves them
        # pending until their lease runs out and another consumer claims them.
        after = await processed(log, 300, distinct=True)
    finally:
        first.kill()
        if second is not None:
            await anyio.to_thread.run_sync(stop, second)
    assert set(after) == set(range(300))  # nothing lost
    duplicates = {n for n, count in after.items() if count > 1}
    # only deliveries in flight come again: the hung ones, and any done but not yet acked
    assert {n for n in before if n >= 100} <= duplicates <= set(before)
    assert len(duplicates) <= 20  # never more than the prefetch


async def test_sigterm_drains_in_flight_work_without_duplicates(
    backend: Any, url: str, queue: str, tmp_path: Path
) -> None:
    for n in range(400):
        await backend.publish(queue, {"n": n})
    log = tmp_path / "processed"
    first = worker_process(url, queue, log, FOXACTORS_WORK_SECONDS="0.02")
    await processed(log, 50)
    out = await anyio.to_thread.run_sync(stop, first)
    assert "pipeline.drained" in out
    stopped = await processed(log, 50)
    assert len(stopped) < 400  # it stopped mid-stream
    second = worker_process(url, queue, log)
    try:
        after = await processed(log, 400, distinct=True)
    finally:
        await anyio.to_thread.run_sync(stop, second)
    assert sorted(after.elements()) == list(range(400))  # each exactly once
