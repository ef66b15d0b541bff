"""Worker processes on real brokers, killed and stopped mid-stream (asyncio, real time).

``examples/broker_worker.py`` runs under ``foxactors run`` in processes of their own, on
RabbitMQ and on Redis Streams; the tests count what each process handled. Then the
same under one parent, ``foxactors run --processes 2`` (``tests/apps_processes.py``):
a child killed under load is restarted and nothing is lost; SIGTERM drains them all.
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
from prometheus_client.parser import text_string_to_metric_families

from foxactors import backends

from .brokers import BROKERS, case
from .helpers import until
from .test_processes import Parent, alive, get

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
CLAIM_MIN_IDLE = 1.0  # Redis: a killed worker's entries are taken over after this


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(broker: str, request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(broker)


@pytest.fixture
def url(server: Any) -> str:
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


# ``foxactors run --processes 2``: the same guarantees with a parent restarting children

PROCESSES_APP = "tests.apps_processes:recording_app"
STALL_AFTER = 20  # the victim hangs from its 20th message on, holding unacked deliveries
PREFETCH = 10  # the app's


def records_of(records: Path) -> dict[int, list[str]]:
    """What each process recorded, by pid (a line per message: the number, maybe "stalled")."""
    return {int(path.name): path.read_text().splitlines() for path in records.iterdir()}


def numbers(records: Path) -> Counter[int]:
    return Counter(int(line.split()[0]) for lines in records_of(records).values() for line in lines)


def parent_of(url: str, queue: str, records: Path, *args: str, **env: str) -> Parent:
    """``foxactors run tests.apps_processes:recording_app --processes 2 ARGS`` (JSON logs)."""
    records.mkdir(exist_ok=True)
    return Parent(
        PROCESSES_APP,
        "--processes",
        "2",
        *args,
        env={
            "FOXACTORS_TEST_BROKER_URL": url,
            "FOXACTORS_TEST_QUEUE": queue,
            "PROCS_RECORD_DIR": str(records),
            **env,
        },
    )


def drained(parent: Parent) -> dict[int, int]:
    """SIGTERM the parent; its children's exit statuses, once it exited 0."""
    parent.process.send_signal(signal.SIGTERM)
    assert parent.finish() == 0, parent.seen[-5:]
    return {e["pid"]: e["status"] for e in parent.seen if e.get("event") == "process.stopped"}


async def test_processes_a_child_killed_under_load_comes_back_and_nothing_is_lost(
    broker: str, server: Any, queue: str, tmp_path: Path
) -> None:
    messages = 600
    publisher = await numbered(broker, server, queue, messages)
    records = tmp_path / "records"
    token = tmp_path / "stall"
    token.touch()
    parent = parent_of(
        server.url,
        queue,
        records,
        PROCS_WORK_SECONDS="0.005",
        PROCS_STALL_AFTER=str(STALL_AFTER),
        PROCS_STALL_TOKEN=str(token),
    )
    try:
        started = await anyio.to_thread.run_sync(
            lambda: {parent.event("process.started", process=i)["pid"]: i for i in (1, 2)}
        )

        def stalled() -> list[tuple[int, list[str]]]:
            found = records_of(records).items()
            return [(pid, ls) for pid, ls in found if any("stalled" in line for line in ls)]

        [(victim, _)] = await until("a child holding unacked work", stalled)
        assert victim in started
        assert len(numbers(records)) < messages  # killed under load, with work left
        os.kill(victim, signal.SIGKILL)  # no drain, no settlement
        died = await anyio.to_thread.run_sync(lambda: parent.event("process.died", pid=victim))
        assert "SIGKILL" in died["status"]
        again = await anyio.to_thread.run_sync(
            lambda: parent.event("process.started", process=started[victim])
        )
        assert again["pid"] not in started
        assert again["restarts"] == 1
        held = Counter(int(line.split()[0]) for line in records_of(records)[victim])  # final
        await until("every number handled", lambda: len(numbers(records)) == messages)
        stopped = await anyio.to_thread.run_sync(drained, parent)
        assert stopped == dict.fromkeys(set(started) - {victim} | {again["pid"]}, 0)
        assert await publisher.stranded(queue) == 0  # nothing left, nothing pending
    finally:
        await anyio.to_thread.run_sync(parent.close)
        await publisher.backend.close()
    handled = numbers(records)
    assert set(handled) == set(range(messages))  # nothing lost
    duplicates = {n for n, count in handled.items() if count > 1}
    victim_stalled = {
        int(line.split()[0]) for line in records_of(records)[victim] if "stalled" in line
    }
    assert victim_stalled <= duplicates  # what it held came back
    assert duplicates <= set(held)  # only what the killed child had in flight
    assert len(duplicates) <= PREFETCH  # which never exceeds its prefetch
    assert max(handled.values()) == 2  # and each came back once


async def numbered(broker: str, server: Any, queue: str, count: int) -> Any:
    """A publisher of ``broker`` that has published ``{"n": 0}`` to ``count - 1``."""
    publisher = case(broker, server)
    for n in range(count):
        await publisher.backend.publish(queue, {"n": n})
    return publisher


async def a_second_parent_finishes(
    url: str, queue: str, records: Path, messages: int, publisher: Any
) -> None:
    """A new parent handles what the first left; nothing stays in the queue."""
    second = parent_of(url, queue, records)
    try:
        await until("every number handled", lambda: len(numbers(records)) == messages)
        await anyio.to_thread.run_sync(drained, second)
        assert await publisher.stranded(queue) == 0
    finally:
        await anyio.to_thread.run_sync(second.close)


async def test_processes_sigterm_drains_every_child_without_duplicates(
    broker: str, server: Any, queue: str, tmp_path: Path
) -> None:
    messages = 400
    publisher = await numbered(broker, server, queue, messages)
    records = tmp_path / "records"
    first = parent_of(server.url, queue, records, PROCS_WORK_SECONDS="0.02")
    try:
        await until(
            "50 messages handled", lambda: records.exists() and sum(numbers(records).values()) >= 50
        )
        stopped = await anyio.to_thread.run_sync(drained, first)
        assert len(stopped) == 2
        assert set(stopped.values()) == {0}
        assert {e["pid"] for e in first.seen if e.get("event") == "pipeline.drained"} == set(
            stopped
        )
        assert sum(numbers(records).values()) < messages  # it stopped mid-stream
        await a_second_parent_finishes(server.url, queue, records, messages, publisher)
    finally:
        await anyio.to_thread.run_sync(first.close)
        await publisher.backend.close()
    assert sorted(numbers(records).elements()) == list(range(messages))  # each exactly once


CONCURRENCY = 4  # the app's


def merged(base: str, queue: str) -> dict[str, float]:
    """``foxactors_queue_messages`` of ``queue`` in the parent's merged metrics, by state."""
    return {
        sample.labels["state"]: sample.value
        for family in text_string_to_metric_families(get(base + "/metrics")[1])
        for sample in family.samples
        if sample.name == "foxactors_queue_messages" and sample.labels["queue"] == queue
    }


async def test_processes_merged_queue_depth_counts_what_every_child_holds(
    broker: str, server: Any, queue: str, tmp_path: Path
) -> None:
    # every message hangs: each child holds its prefetch, the queue 2 * PREFETCH in
    # flight, half in each child; on RabbitMQ each child counts only its own half
    publisher = await numbered(broker, server, queue, 2 * PREFETCH + 5)
    records = tmp_path / "records"
    parent = parent_of(server.url, queue, records, "--http-port", "0", PROCS_STALL_AFTER="1")
    try:
        base = await anyio.to_thread.run_sync(
            lambda: str(parent.event("processes.http.serving")["url"])
        )

        def holding() -> bool:  # each worker of each child hangs on a message
            counts = Counter(len(lines) for lines in records_of(records).values())
            return counts == Counter({CONCURRENCY: 2})

        await until("both children holding their prefetch", holding)
        await until("the children's figures", lambda: merged(base, queue).get("ready") == 5)
        depth = merged(base, queue)
        assert depth["in_flight"] == 2 * PREFETCH
        assert depth["dead"] == 0
    finally:
        await anyio.to_thread.run_sync(parent.close)
        await publisher.backend.close()


async def test_processes_children_drain_and_end_when_the_parent_is_killed(
    broker: str, server: Any, queue: str, tmp_path: Path
) -> None:
    messages = 400
    publisher = await numbered(broker, server, queue, messages)
    records = tmp_path / "records"
    # with its endpoints the parent has threads: the kernel's parent-death signal then
    # comes once per thread, and a second SIGTERM would cancel the children's drain
    first = parent_of(server.url, queue, records, "--http-port", "0", PROCS_WORK_SECONDS="0.02")
    try:
        base = await anyio.to_thread.run_sync(
            lambda: str(first.event("processes.http.serving")["url"])
        )
        children = await anyio.to_thread.run_sync(
            lambda: [first.event("process.started", process=i)["pid"] for i in (1, 2)]
        )
        await until("two ready children", lambda: get(base + "/ready")[0] == 200)
        await until("50 messages handled", lambda: sum(numbers(records).values()) >= 50)
        first.process.kill()  # SIGKILL: the parent cannot tell its children anything
        await anyio.to_thread.run_sync(first.process.wait)
        await until("the children ended", lambda: not any(alive(pid) for pid in children))
        assert sum(numbers(records).values()) < messages  # they stopped mid-stream
        await a_second_parent_finishes(server.url, queue, records, messages, publisher)
    finally:
        await anyio.to_thread.run_sync(first.close)
        await publisher.backend.close()
    # they drained: what they started they finished and acked, the rest went back
    assert sorted(numbers(records).elements()) == list(range(messages))  # each exactly once
