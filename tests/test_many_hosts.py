"""Three hosts, one queue: independent ``foxactors run`` processes, one killed under load.

Each process is started as a separate host would be (its own interpreter, its own
broker connection, settings from ``FOXACTORS_*`` variables) against one queue on a
real RabbitMQ and a real Redis. One of them hangs after a few messages, holding
unacked deliveries, and is killed with SIGKILL while the others are busy. Every id
must be handled, duplicates may only be what the killed one held (at most its
prefetch), and the queue must drain. Asyncio, real time: deadlines, no sleeps.
"""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from .brokers import BROKERS, case
from .helpers import foxactors_run, until

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
MESSAGES = 600
PREFETCH = 10
CONCURRENCY = 4
STALL_AFTER = 20  # the victim hangs from its 21st message on


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


def host(broker: str, url: str, queue: str, records: Path, out: Path, **env: str) -> Any:
    """``foxactors run tests.hosts_app:app`` as one more host, its output in ``out``."""
    return foxactors_run(
        "tests.hosts_app:app",
        out,
        {
            f"FOXACTORS_{broker.upper()}_URL": url,
            "FOXACTORS_QUEUE": queue,
            "FOXACTORS_CONCURRENCY": str(CONCURRENCY),
            "FOXACTORS_PREFETCH": str(PREFETCH),
            "HOSTS_RECORD_DIR": str(records),
            "HOSTS_WORK_SECONDS": "0.005",
            "HOSTS_CLAIM_MIN_IDLE": "1",
            **env,
        },
    )


def read(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def stop(process: subprocess.Popen[bytes], out: Path) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    assert process.returncode == 0, out.read_text()


@pytest.mark.parametrize("broker", BROKERS)
async def test_three_hosts_share_a_queue_and_a_killed_one_loses_nothing(
    broker: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server = request.getfixturevalue(broker)
    queue = f"hosts-{uuid.uuid4().hex[:8]}"
    records = tmp_path / "records"
    records.mkdir()
    outs = [tmp_path / f"host-{i}.out" for i in range(3)]
    victim = host(broker, server.url, queue, records, outs[0], HOSTS_STALL_AFTER=str(STALL_AFTER))
    others = [host(broker, server.url, queue, records, out) for out in outs[1:]]
    everyone = [victim, *others]
    publisher = case(broker, server)
    try:
        await until(
            "every host consuming", lambda: all(".consuming" in o.read_text() for o in outs)
        )
        for out in outs:  # the settings came from the environment, as on a real host
            assert f"concurrency={CONCURRENCY}" in out.read_text()
            assert f"prefetch={PREFETCH}" in out.read_text()
        for n in range(MESSAGES):
            await publisher.backend.publish(queue, {"id": n})
        mine = records / str(victim.pid)
        stalled = await until(
            "the victim holding", lambda: [x for x in read(mine) if "stalled" in x]
        )
        seen = {line.split()[0] for path in records.iterdir() for line in read(path)}
        assert len(seen) < MESSAGES  # killed under load, with work left in the queue
        victim.kill()  # SIGKILL: no drain, no settlement
        victim.wait(timeout=30)
        held = Counter(line.split()[0] for line in read(mine))  # final now

        def counts() -> Counter[str]:
            return Counter(line.split()[0] for p in records.iterdir() for line in read(p))

        await until("every id handled", lambda: len(counts()) == MESSAGES)
        for process, out in zip(others, outs[1:], strict=True):
            await anyio.to_thread.run_sync(stop, process, out)  # drains, acks what it did
        assert await publisher.stranded(queue) == 0  # nothing left, nothing pending
    finally:
        for process in everyone:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        await publisher.backend.close()
    handled = counts()
    assert set(handled) == {str(n) for n in range(MESSAGES)}  # nothing lost
    duplicates = {n for n, count in handled.items() if count > 1}
    assert {line.split()[0] for line in stalled} <= duplicates  # what it held came back
    assert duplicates <= set(held)  # only what the killed host had in flight
    assert len(duplicates) <= PREFETCH  # which never exceeds its prefetch
    assert max(handled.values()) == 2  # and each came back once
    assert sum(held.values()) > STALL_AFTER  # it had worked before it hung
