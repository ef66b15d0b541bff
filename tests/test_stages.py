from __future__ import annotations

import inspect
import itertools
import os
import re
import threading
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

import foxactors as fa

pytestmark = pytest.mark.anyio

QUEUE = "jobs"


def test_breaker_is_a_pure_state_machine() -> None:
    b = fa.Breaker(failure_threshold=2, open_timeout=10)
    assert b.admit(0) == (True, b)
    b = b.record(False, 1)
    assert b.state is fa.BreakerState.CLOSED
    b = b.record(True, 2).record(False, 3)  # a success resets the count
    assert b.failures == 1
    b = b.record(False, 4)
    assert (b.state, b.opened_at) == (fa.BreakerState.OPEN, 4)
    assert b.admit(13)[0] is False
    assert b.retry_in(13) == 1
    allowed, probe = b.admit(14)
    assert allowed
    assert probe.state is fa.BreakerState.HALF_OPEN
    assert probe.admit(14)[0] is False  # one probe at a time
    assert probe.record(False, 15).state is fa.BreakerState.OPEN
    assert probe.record(True, 15).state is fa.BreakerState.CLOSED
    with pytest.raises(fa.ConfigurationError, match="failure_threshold must be an int >= 1"):
        fa.Breaker(failure_threshold=0)


def test_token_bucket_is_a_pure_function() -> None:
    bucket = fa.TokenBucket(rate=2, burst=3)
    waits = []
    for now in (0, 0, 0, 0):
        wait, bucket = bucket.take(now)
        waits.append(wait)
    assert waits == [0, 0, 0, 0.5]
    wait, bucket = bucket.take(0.5)
    assert wait == 0
    with pytest.raises(fa.ConfigurationError, match="rate must be tokens per second > 0"):
        fa.TokenBucket(rate=0)
    with pytest.raises(fa.ConfigurationError, match="burst must be an int >= 1"):
        fa.TokenBucket(rate=1, burst=0)


def test_token_bucket_gives_a_token_due_now_despite_float_rounding() -> None:
    # 0.7 - 0.6 is a hair under 0.1: without a tolerance the bucket asks for a wait
    # of 2e-17 s, which 0.7 + wait cannot express, so a virtual clock never gets there
    # and the stage's timer fires again and again at the same instant.
    _, bucket = fa.TokenBucket(rate=10).take(0.6)
    wait, bucket = bucket.take(0.7)
    assert wait == 0
    assert bucket.tokens == 0
    assert bucket.take(0.7)[0] == pytest.approx(0.1)


async def test_breaker_defers_untried_messages_while_open() -> None:
    backend = fa.MemoryBackend()
    healthy = False
    seen: list[tuple[int, int, float]] = []

    async def handle(message: fa.Message) -> None:
        seen.append((message.payload, message.attempt, anyio.current_time()))
        if not healthy:
            raise ConnectionError("dependency down")

    app = (
        fa.WorkerApp()
        .add_worker(handle)
        .with_concurrency_limit(1)
        .with_circuit_breaker(failure_threshold=2, open_timeout=10)
        .with_retry(max_retries=1, initial_backoff=1)
    )
    with capture_logs() as logs:
        async with fa.open_system(app.build(backend, QUEUE)) as system:
            closed = system.statistics("breaker")
            assert isinstance(closed, fa.BreakerStatistics)
            assert (closed.state, closed.opened_at, closed.probe_at) == (
                fa.BreakerState.CLOSED,
                None,
                None,
            )
            await backend.publish(QUEUE, 0)
            await backend.publish(QUEUE, 1)
            await anyio.wait_all_tasks_blocked()  # both failed: the circuit is open
            state = system.statistics("breaker")  # read as it is, without an ask
            assert isinstance(state, fa.BreakerStatistics)
            assert state.state is fa.BreakerState.OPEN
            assert (state.consecutive_failures, state.failure_threshold) == (2, 2)
            assert state.opened_at is not None
            assert state.probe_at == state.opened_at + 10
            assert [(n, a) for n, a, _ in seen] == [(0, 1), (1, 1)]
            healthy = True
            await backend.publish(QUEUE, 2)  # arrives while open: deferred, untried
            await backend.publish(QUEUE, 3)
            await backend.join(QUEUE)
            after = system.statistics("breaker")
            assert isinstance(after, fa.BreakerStatistics)
            assert (after.state, after.consecutive_failures, after.probe_at) == (
                fa.BreakerState.CLOSED,
                0,
                None,
            )
            # Four deferred while open (two new, two retries), then three again while
            # the probe was out: the circuit lets one through at a time.
            assert (after.opened, after.deferred) == (1, 7)
    later = seen[2:]
    assert all(at >= state.opened_at + 10 for _, _, at in later)  # nothing ran while open
    # Deferrals are not attempts: the retried ones run on attempt 2, the others on 1.
    assert sorted((n, a) for n, a, _ in later) == [(0, 2), (1, 2), (2, 1), (3, 1)]
    assert backend.dead_letters(QUEUE) == []
    events = [e["event"] for e in logs if e["event"].startswith("breaker.")]
    assert events == ["breaker.open", "breaker.half_open", "breaker.closed"]
    documented = re.findall(r"``(breaker\.\w+)``", fa.pipeline.CircuitBreakerStage.__doc__ or "")
    assert sorted(documented) == sorted(events)  # the docstring names the events logged


async def test_breaker_state_is_a_deprecated_alias_that_still_answers() -> None:
    backend = fa.MemoryBackend()

    async def handle(message: fa.Message) -> None:
        pass

    app = fa.WorkerApp().add_worker(handle).with_circuit_breaker()
    async with fa.open_system(app.build(backend, QUEUE)) as system:
        with pytest.warns(DeprecationWarning, match=r"BREAKER_STATE is deprecated.*statistics"):
            request = fa.BREAKER_STATE
        assert await system.ref("breaker").ask(request) == fa.Breaker()
        with pytest.warns(DeprecationWarning, match=r"foxactors\.pipeline\.BREAKER_STATE"):
            assert fa.pipeline.BREAKER_STATE is request
    with pytest.warns(DeprecationWarning, match="BREAKER_STATE"):
        from foxactors import BREAKER_STATE  # noqa: PLC0415 - the import is what is tested
    assert BREAKER_STATE is request
    with pytest.raises(AttributeError, match="has no attribute 'NOTHING'"):
        fa.NOTHING  # type: ignore[attr-defined]  # noqa: B018 - the lookup is the test


async def test_rate_limit_spaces_messages_out() -> None:
    backend = fa.MemoryBackend()
    times: list[float] = []

    async def handle(message: fa.Message) -> None:
        times.append(anyio.current_time())

    for n in range(8):
        await backend.publish(QUEUE, n)
    app = fa.WorkerApp().add_worker(handle).with_rate_limit(rate=2, burst=2)
    async with fa.open_system(app.build(backend, QUEUE)):
        await backend.join(QUEUE)
    start = times[0]
    offsets = [round(t - start, 2) for t in times]
    assert offsets[:2] == [0, 0]  # the burst
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(times[1:])]
    assert all(g >= 0.5 for g in gaps)  # then 2 per second
    assert round(times[-1] - start) == 3


async def test_rate_limited_deliveries_go_back_on_shutdown() -> None:
    backend = fa.MemoryBackend()

    async def handle(message: fa.Message) -> None:
        pass

    for n in range(5):
        await backend.publish(QUEUE, n)
    app = fa.WorkerApp().add_worker(handle).with_rate_limit(rate=0.01).with_drain_timeout(1)
    async with fa.open_system(app.build(backend, QUEUE)):
        await anyio.wait_all_tasks_blocked()
    stats = backend.queue_statistics(QUEUE)
    assert (stats.ready, stats.in_flight, stats.dead) == (4, 0, 0)  # one ran, four returned


class BrokenSink:
    def write(self, letter: fa.DeadLetter) -> None:
        raise OSError("disk full")


async def test_dead_letter_sinks_record_and_replay(tmp_path: Path) -> None:
    backend = fa.MemoryBackend()
    healthy = False
    handled: list[int] = []

    async def handle(message: fa.Message) -> None:
        if not healthy:
            raise ValueError(f"bad {message.payload}")
        handled.append(message.payload)

    memory = fa.MemorySink()
    path = tmp_path / "dead.jsonl"
    app = (
        fa.WorkerApp()
        .add_worker(handle)
        .without_retry()
        .with_dead_letter_sink(memory)
        .with_dead_letter_sink(fa.JsonLinesSink(path))
        .with_dead_letter_sink(BrokenSink())
    )
    props = fa.MessageProperties(correlation_id="c-7").with_header("tenant", "acme")
    for n in (1, 2):
        await backend.publish(QUEUE, n, properties=props)
    with capture_logs() as logs:
        async with fa.open_system(app.build(backend, QUEUE)):
            await backend.join(QUEUE)
    assert sorted(d.reason for d in memory.letters) == [
        "failed (no retry stage): ValueError: bad 1",
        "failed (no retry stage): ValueError: bad 2",
    ]
    from_file = fa.read_dead_letters(path)
    assert [(d.id, d.reason, d.body, d.properties) for d in from_file] == [
        (d.id, d.reason, d.body, props) for d in memory.letters
    ]
    assert sum(e["event"] == "dead_letter_sink.failed" for e in logs) == 2
    assert backend.purge_dead_letters(QUEUE) == 2  # the backend's DLQ had them too

    healthy = True
    assert await fa.replay_dead_letters(path, backend) == 2
    async with fa.open_system(app.build(backend, QUEUE)):
        await backend.join(QUEUE)
    assert sorted(handled) == [1, 2]


async def test_the_json_lines_sink_syncs_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "dead.jsonl"
    loop_thread = threading.get_ident()
    synced: list[tuple[int, int]] = []  # (thread, letters on file when synced)
    fsync = os.fsync

    def watched_fsync(fd: int) -> None:
        synced.append((threading.get_ident(), len(path.read_text().splitlines())))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", watched_fsync)
    sink = fa.JsonLinesSink(path)
    props = fa.MessageProperties()
    letters = [fa.DeadLetter(f"m-{n}", QUEUE, b"{}", props, "x", 1, 0.0) for n in range(3)]
    for n, letter in enumerate(letters, 1):
        written = sink.write(letter)
        if inspect.isawaitable(written):
            await written
        assert fa.read_dead_letters(path) == letters[:n]  # on file when write returns
        assert synced[-1][1] == n  # and synced after it was written
    sink.close()
    assert len(synced) == 3
    assert all(thread != loop_thread for thread, _ in synced)  # in a worker thread


async def test_batches_are_full_or_timed_and_settled_per_message() -> None:
    backend = fa.MemoryBackend()
    batches: list[tuple[float, list[int]]] = []

    async def handle(messages: list[fa.Message]) -> dict[str, BaseException] | None:
        batches.append((anyio.current_time(), [m.payload for m in messages]))
        failed: dict[str, BaseException] = {}
        for m in messages:
            if m.payload == 3 and m.attempt == 1:
                failed[m.id] = ValueError("three")
            if m.payload == 99:
                raise RuntimeError("whole batch")  # fails every message in it
        return failed

    for n in range(25):
        await backend.publish(QUEUE, n)
    app = (
        fa.WorkerApp()
        .add_batch_worker(handle, size=10, interval=1)
        .with_retry(max_retries=1, initial_backoff=5)
    )
    async with fa.open_system(app.build(backend, QUEUE)):
        await backend.join(QUEUE)
        first = [payloads for _, payloads in batches]
        assert [len(p) for p in first[:3]] == [10, 10, 5]  # full, full, then by time
        # the flush timer started when batch 3's first message arrived, a moment of
        # real time (which asyncio's virtual clock includes) before batch 2 was handled
        assert batches[2][0] - batches[1][0] >= 0.99
        assert first[3] == [3]  # the one failure, retried alone 5 s later
        await backend.publish(QUEUE, 99)
        await backend.join(QUEUE)
    (letter,) = backend.dead_letters(QUEUE)
    assert letter.reason == "failed after 2 attempts: batch failed: RuntimeError: whole batch"
    with pytest.raises(fa.ConfigurationError, match="batch size must be an int >= 1"):
        fa.WorkerApp().add_batch_worker(handle, size=0)

    async def single(message: fa.Message) -> None:
        pass

    with pytest.raises(fa.ConfigurationError, match="do not combine it with"):
        fa.WorkerApp().add_batch_worker(handle).add_worker(single).build(backend, QUEUE)
