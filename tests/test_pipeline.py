from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from structlog.testing import capture_logs

import foxactors as fa
from foxactors.pipeline import Pool
from foxactors.pipeline._pool import LOOKAHEAD, resident_memory

pytestmark = pytest.mark.anyio

QUEUE = "jobs"


async def publish(backend: fa.MemoryBackend, *payloads: Any, **options: Any) -> list[str]:
    return [await backend.publish(QUEUE, p, **options) for p in payloads]


async def run_until_drained(backend: fa.MemoryBackend, app: fa.WorkerApp) -> fa.ActorSnapshot:
    async with fa.open_system(app.build(backend, QUEUE)) as system:
        with anyio.fail_after(3600):
            await backend.join(QUEUE)
        return system.snapshot()


async def test_success_is_acked_once_and_failures_retry_then_dead_letter() -> None:
    backend = fa.MemoryBackend()
    attempts: Counter[int] = Counter()
    done: list[int] = []

    async def handle(message: fa.Message) -> None:
        n = message.payload
        attempts[n] += 1
        assert attempts[n] == message.attempt
        if n == 1 and message.attempt < 3:
            raise RuntimeError("flaky")
        if n == 2:
            raise ValueError("always")
        done.append(n)

    await publish(backend, 0, 1, 2)
    app = fa.WorkerApp("app").add_worker(handle).with_retry(max_retries=2, initial_backoff=5)
    started = anyio.current_time()
    await run_until_drained(backend, app)
    assert sorted(done) == [0, 1]
    assert attempts == {0: 1, 1: 3, 2: 3}
    assert anyio.current_time() - started >= 5 + 10  # two backoffs: 5 s, then 10 s
    (letter,) = backend.dead_letters(QUEUE)
    assert letter.reason == "failed after 3 attempts: ValueError: always"
    assert letter.attempts == 3


async def test_without_retry_a_failure_is_dead_lettered_at_once() -> None:
    backend = fa.MemoryBackend()

    async def handle(message: fa.Message) -> None:
        raise KeyError("missing")

    await publish(backend, "x")
    await run_until_drained(backend, fa.WorkerApp().add_worker(handle).without_retry())
    (letter,) = backend.dead_letters(QUEUE)
    assert letter.reason == "failed (no retry stage): KeyError: 'missing'"


class NoSuchDomain(Exception):
    pass


async def test_errors_in_dead_on_are_dead_lettered_at_once_others_retried() -> None:
    backend = fa.MemoryBackend()
    attempts: Counter[str] = Counter()

    async def handle(message: fa.Message) -> None:
        attempts[message.payload] += 1
        if message.payload == "ghost@invalid":
            raise NoSuchDomain("no such domain: invalid")
        if message.attempt < 2:
            raise RuntimeError("gateway timed out")

    await publish(backend, "ghost@invalid", "ada@example.com")
    app = fa.WorkerApp().add_worker(handle)
    app = app.with_retry(max_retries=3, initial_backoff=1, dead_on=(NoSuchDomain,))
    await run_until_drained(backend, app)
    assert attempts == {"ghost@invalid": 1, "ada@example.com": 2}
    (letter,) = backend.dead_letters(QUEUE)
    assert letter.reason == (
        "not retried (NoSuchDomain is in dead_on): NoSuchDomain: no such domain: invalid"
    )
    assert letter.attempts == 1


def test_dead_on_refuses_what_is_not_an_exception_class() -> None:
    with pytest.raises(fa.ConfigurationError, match="dead_on must be a tuple of exception"):
        fa.RetryPolicy(dead_on=("NoSuchDomain",))  # type: ignore[arg-type]


async def test_routing_by_message_type_and_unknown_types() -> None:
    backend = fa.MemoryBackend()
    seen: list[tuple[str, Any]] = []

    async def email(message: fa.Message) -> None:
        seen.append(("email", message.payload))

    async def sms(message: fa.Message) -> None:
        seen.append(("sms", message.payload))

    for kind, payload in [("send_email", 1), ("send_sms", 2), ("send_fax", 3)]:
        await publish(backend, payload, properties=fa.MessageProperties(message_type=kind))
    app = fa.WorkerApp().register("send_email", email).register("send_sms", sms)
    await run_until_drained(backend, app)
    assert sorted(seen) == [("email", 1), ("sms", 2)]
    (letter,) = backend.dead_letters(QUEUE)
    assert letter.reason == (
        "no handler for message type 'send_fax' (registered: send_email, send_sms)"
    )


async def test_timeouts_and_non_exception_errors_are_failures_not_dead_pipelines() -> None:
    backend = fa.MemoryBackend()

    class Odd(BaseException):
        pass

    async def handle(message: fa.Message) -> None:
        if message.payload == "hang":
            await anyio.sleep_forever()
        if message.payload == "odd":
            raise Odd("not an Exception")

    await publish(backend, "hang", "odd", "fine")
    app = fa.WorkerApp().add_worker(handle).with_timeout(2).without_retry()
    await run_until_drained(backend, app)
    reasons = sorted(d.reason for d in backend.dead_letters(QUEUE))
    assert reasons == [
        "failed (no retry stage): Odd: not an Exception",
        "failed (no retry stage): timed out after 2 s",
    ]


async def test_a_long_message_does_not_strand_others() -> None:
    backend = fa.MemoryBackend()
    release = anyio.Event()
    done: list[str] = []

    async def handle(message: fa.Message) -> None:
        if message.payload == "long":
            await release.wait()
        done.append(message.payload)

    shorts = [f"short-{i}" for i in range(3 * LOOKAHEAD)]
    await publish(backend, "long", *shorts)
    app = fa.WorkerApp().add_worker(handle).with_concurrency_limit(2)
    async with fa.open_system(app.build(backend, QUEUE)):
        await wait_all_tasks_blocked()
        # All passed the long one, including those queued behind it as lookaheads:
        # the idle worker took them back.
        assert sorted(done) == sorted(shorts)
        release.set()
        await backend.join(QUEUE)
    assert done[-1] == "long"


async def test_unsettled_deliveries_never_exceed_the_prefetch() -> None:
    backend = fa.MemoryBackend()
    in_flight: list[int] = []

    async def handle(message: fa.Message) -> None:
        in_flight.append(backend.queue_statistics(QUEUE).in_flight)
        await anyio.sleep(0.01)

    await publish(backend, *range(50))
    app = fa.WorkerApp().add_worker(handle).with_concurrency_limit(8).with_prefetch(5)
    await run_until_drained(backend, app)
    assert len(in_flight) == 50
    assert max(in_flight) == 5


async def test_graceful_stop_finishes_in_flight_work_and_returns_the_rest() -> None:
    backend = fa.MemoryBackend()
    started: list[int] = []
    finished: list[int] = []
    all_busy = anyio.Event()

    async def handle(message: fa.Message) -> None:
        started.append(message.payload)
        if len(started) == 2:
            all_busy.set()
        await anyio.sleep(3)
        finished.append(message.payload)

    await publish(backend, *range(10))
    app = fa.WorkerApp().add_worker(handle).with_concurrency_limit(2).with_prefetch(6)
    async with fa.open_system(app.build(backend, QUEUE)) as system:
        await all_busy.wait()
        system.stop()
        await system.wait_stopped()
    assert sorted(finished) == [0, 1]  # in-flight work was allowed to finish
    stats = backend.queue_statistics(QUEUE)
    assert (stats.ready, stats.in_flight, stats.dead) == (8, 0, 0)


async def test_work_that_misses_the_drain_deadline_is_requeued() -> None:
    backend = fa.MemoryBackend()
    busy = anyio.Event()

    async def handle(message: fa.Message) -> None:
        busy.set()
        await anyio.sleep(100)

    await publish(backend, "slow")
    app = fa.WorkerApp().add_worker(handle).with_drain_timeout(5)
    async with fa.open_system(app.build(backend, QUEUE)) as system:
        await busy.wait()
        began = anyio.current_time()
    assert 5 <= anyio.current_time() - began < 100
    assert backend.queue_statistics(QUEUE).ready == 1
    assert system.root.state is fa.ActorState.STOPPED


class Exploding:
    """A Worker whose timeout property raises: crashes the worker actor itself."""

    id = "exploding"

    def __init__(self) -> None:
        self.explosions = 0  # armed by the test once the app is built

    @property
    def timeout(self) -> float | None:
        if self.explosions > 0:
            self.explosions -= 1
            raise RuntimeError("bug in the runtime's caller")
        return None

    async def process(self, message: fa.Message) -> None:
        pass


async def test_a_crashed_worker_returns_its_delivery_and_poison_is_caught() -> None:
    backend = fa.MemoryBackend()
    await publish(backend, "first")
    worker = Exploding()
    app = fa.WorkerApp().add_worker(worker).with_concurrency_limit(1).with_retry(max_retries=5)
    spec = app.build(backend, QUEUE)
    worker.explosions = 2
    async with fa.open_system(spec) as system:
        await backend.join(QUEUE)
        snapshot = system.snapshot()
    assert backend.dead_letters(QUEUE) == []
    assert snapshot.find("/app/pool/worker-1").restarts == 2  # type: ignore[union-attr]

    # A message that keeps coming back (crashes, lost consumers) is poison:
    await publish(backend, "poison")
    source = await backend.open_source(QUEUE, prefetch=1)
    for _ in range(3):
        (await source.receive(1))[0].handle.requeue()
    await source.close()
    await run_until_drained(
        backend, fa.WorkerApp().add_worker(Exploding()).with_retry(max_retries=2)
    )
    (letter,) = backend.dead_letters(QUEUE)
    assert letter.reason == "poison message: delivered 4 times with max_retries=2"


class Tracer(fa.Stage):
    """A user stage: records both directions."""

    trace: ClassVar[list[str]] = []

    async def on_delivery(self, delivery: fa.Delivery) -> None:
        Tracer.trace.append(f"in {delivery.message.payload}")
        await self.forward(delivery)

    async def on_outcome(self, outcome: fa.Outcome) -> None:
        Tracer.trace.append(f"out {outcome.delivery.message.payload} {outcome.kind.value}")
        await self.reply(outcome)


class Rejector(fa.Stage):
    """Answers some deliveries itself without passing them on."""

    async def on_delivery(self, delivery: fa.Delivery) -> None:
        if delivery.message.payload == "blocked":
            await self.reply(fa.Outcome(delivery, fa.OutcomeKind.DEAD_LETTER, reason="blocked"))
        else:
            await self.forward(delivery)


class CrashesOnce(fa.Stage):
    """A stage with a bug: it crashes on payload 3, the first time only."""

    crashed: ClassVar[bool] = False

    async def on_delivery(self, delivery: fa.Delivery) -> None:
        if delivery.message.payload == 3 and not CrashesOnce.crashed:
            CrashesOnce.crashed = True
            raise RuntimeError("stage bug")
        await self.forward(delivery)


async def test_a_stage_that_crashes_mid_run_returns_the_whole_run() -> None:
    backend = fa.MemoryBackend()
    CrashesOnce.crashed = False
    attempts: dict[int, int] = {}

    async def handle(message: fa.Message) -> None:
        assert message.payload not in attempts  # none handled twice
        attempts[message.payload] = message.attempt

    await publish(backend, *range(6))  # pulled as one run
    app = fa.WorkerApp().add_worker(handle).with_middleware(CrashesOnce, name="buggy")
    await run_until_drained(backend, app)
    assert CrashesOnce.crashed
    # 0-2 had been handled by the stage but not passed on: they came back with the
    # rest of the run, so every message was delivered twice and handled once.
    assert attempts == dict.fromkeys(range(6), 2)
    assert backend.queue_statistics(QUEUE).dead == 0


async def test_a_pool_that_crashes_returns_the_work_in_hand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = fa.MemoryBackend()
    handled: list[int] = []
    room = Pool._room  # where the pool places every piece of work
    crashes = [RuntimeError("pool bug")]

    def room_once_crashing(self: Pool, work: Any) -> int | None:
        if crashes:
            raise crashes.pop()
        return room(self, work)

    async def handle(message: fa.Message) -> None:
        handled.append(message.payload)

    monkeypatch.setattr(Pool, "_room", room_once_crashing)
    await publish(backend, 0)  # a single delivery: in hand, not yet waiting in the pool
    await run_until_drained(backend, fa.WorkerApp().add_worker(handle))
    assert not crashes
    assert handled == [0]  # returned, not stranded in flight
    await publish(backend, *range(1, 7))  # a run: it waits in the pool when it crashes
    crashes.append(RuntimeError("pool bug"))
    await run_until_drained(backend, fa.WorkerApp().add_worker(handle))
    assert not crashes
    assert sorted(handled) == list(range(7))


async def test_a_pool_crash_mid_batch_returns_every_delivery_of_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = fa.MemoryBackend()
    handled: list[tuple[int, int]] = []
    running = anyio.Event()
    room = Pool._room
    crashes: list[Exception] = []

    def room_crashing_when_armed(self: Pool, work: Any) -> int | None:
        if crashes:
            raise crashes.pop()
        return room(self, work)

    async def handle(messages: list[fa.Message]) -> None:
        if not running.is_set():  # the first batch is still running when the pool crashes
            running.set()
            await anyio.sleep(3)
            return
        handled.extend((m.payload, m.attempt) for m in messages)

    monkeypatch.setattr(Pool, "_room", room_crashing_when_armed)
    await publish(backend, 0, 1, 2)  # one batch of three
    app = fa.WorkerApp().add_batch_worker(handle, size=3, interval=1).with_prefetch(10)
    async with fa.open_system(app.build(backend, QUEUE)):
        await running.wait()
        crashes.append(RuntimeError("pool bug"))
        await publish(backend, 3)  # its batch reaches the pool, which crashes placing it
        with anyio.fail_after(60):
            await backend.join(QUEUE)
    assert not crashes
    # every delivery of the running batch went back (not only the one the pool's
    # bookkeeping keyed the batch by) and ran again; none was stranded unsettled
    assert sorted(handled) == [(0, 2), (1, 2), (2, 2), (3, 2)]  # 3 came back with the crash
    assert backend.queue_statistics(QUEUE) == fa.backends.QueueStatistics(0, 0, 0, 0)


async def test_user_stages_see_deliveries_in_and_outcomes_out() -> None:
    backend = fa.MemoryBackend()
    Tracer.trace = []

    async def handle(message: fa.Message) -> None:
        if message.payload == "bad":
            raise RuntimeError("bad")

    await publish(backend, "ok", "bad", "blocked")
    app = (
        fa.WorkerApp()
        .add_worker(handle)
        .with_middleware(Tracer, name="tracer")
        .with_middleware(Rejector, name="rejector")
        .with_concurrency_limit(1)
        .with_retry(max_retries=0)
    )
    snapshot = await run_until_drained(backend, app)
    assert [s.path for s in snapshot.walk()] == [
        "/app",
        "/app/pool",
        "/app/pool/worker-1",
        "/app/retry",
        "/app/rejector",
        "/app/tracer",
        "/app/consumer",
    ]  # started innermost first; the consumer last
    assert sorted(Tracer.trace) == [
        "in bad",
        "in blocked",
        "in ok",
        "out bad dead_letter",
        "out blocked dead_letter",
        "out ok succeeded",
    ]
    for payload in ("ok", "bad", "blocked"):  # each went in before it came out
        ins = [i for i, e in enumerate(Tracer.trace) if e == f"in {payload}"]
        outs = [i for i, e in enumerate(Tracer.trace) if e.startswith(f"out {payload} ")]
        assert ins[0] < outs[0]
    assert sorted(d.reason for d in backend.dead_letters(QUEUE)) == [
        "blocked",
        "failed after 1 attempt: RuntimeError: bad",
    ]


@pytest.mark.parametrize("strategy", ["round_robin", "random", "least_loaded"])
async def test_every_strategy_spreads_unstarted_deliveries_and_bounds_them(
    strategy: str,
) -> None:
    backend = fa.MemoryBackend()
    gate = anyio.Event()

    async def handle(message: fa.Message) -> None:
        await gate.wait()

    await publish(backend, *range(3 + 7))
    app = fa.WorkerApp().add_worker(handle).with_concurrency_limit(3).with_strategy(strategy)
    async with fa.open_system(app.build(backend, QUEUE)) as system:
        await wait_all_tasks_blocked()
        workers = [s.path for s in system.snapshot().walk() if "/worker-" in s.path]
        # One delivery in hand per worker; the 7 others queued behind them as
        # lookaheads (an idle worker would take them back), spread evenly.
        depths = sorted(system.ref(p).statistics().depth for p in workers)
        assert depths == [2, 2, 3]
        assert backend.queue_statistics(QUEUE).in_flight == 10
        gate.set()
        await backend.join(QUEUE)


async def test_lookaheads_are_bounded_and_the_rest_waits_in_the_pool() -> None:
    backend = fa.MemoryBackend()
    gate = anyio.Event()

    async def handle(message: fa.Message) -> None:
        await gate.wait()

    await publish(backend, *range(2 + 2 * LOOKAHEAD + 3))
    app = fa.WorkerApp().add_worker(handle).with_concurrency_limit(2)
    async with fa.open_system(app.build(backend, QUEUE)) as system:
        await wait_all_tasks_blocked()
        workers = [s.path for s in system.snapshot().walk() if "/worker-" in s.path]
        depths = [system.ref(p).statistics().depth for p in workers]
        assert depths == [LOOKAHEAD, LOOKAHEAD]
        # all were delivered; what no worker may hold yet waits in the pool
        assert backend.queue_statistics(QUEUE).in_flight == 2 + 2 * LOOKAHEAD + 3
        gate.set()
        await backend.join(QUEUE)


def test_builder_refuses_bad_configuration() -> None:
    async def handle(message: fa.Message) -> None:
        pass

    with pytest.raises(fa.ConfigurationError, match="concurrency limit must be an int >= 1, got 0"):
        fa.WorkerApp().with_concurrency_limit(0)
    with pytest.raises(fa.ConfigurationError, match="initial_backoff must be a number >= 0"):
        fa.WorkerApp().with_retry(initial_backoff=-1)
    with pytest.raises(fa.ConfigurationError, match="no handler"):
        fa.WorkerApp().build(fa.MemoryBackend(), QUEUE)
    with pytest.raises(fa.ConfigurationError, match="must be an async function"):
        fa.WorkerApp().add_worker(print)  # type: ignore[arg-type]
    with pytest.raises(fa.ConfigurationError, match="timeout must be seconds > 0"):
        fa.WorkerApp().add_worker(handle, timeout=0)
    with pytest.raises(fa.ConfigurationError, match="prefetch must be an int >= 1"):
        fa.WorkerApp().with_prefetch(0)
    with pytest.raises(fa.ConfigurationError, match="strategy must be one of"):
        fa.WorkerApp().with_strategy("fastest")
    with pytest.raises(fa.ConfigurationError, match="a stage named 'retry' already exists"):
        fa.WorkerApp().with_middleware(Tracer, name="retry")
    with pytest.raises(fa.ConfigurationError, match="retry delay must be seconds >= 0"):
        fa.AckHandle(None, "t", 1).retry(-1)  # type: ignore[arg-type]


def test_retry_policy_is_a_pure_function() -> None:
    policy = fa.RetryPolicy(
        max_retries=3, initial_backoff=1, max_backoff=5, multiplier=3, jitter=0.5
    )
    assert [policy.delay(n, 0.0) for n in (1, 2, 3)] == [1, 3, 5]
    assert policy.delay(1, 1.0) == 1.5
    assert policy.decide(3, "x", 0.0) == (fa.OutcomeKind.RETRY, 5, "")
    assert policy.decide(4, "boom", 0.0) == (
        fa.OutcomeKind.DEAD_LETTER,
        0.0,
        "failed after 4 attempts: boom",
    )
    with pytest.raises(
        fa.ConfigurationError, match=r"max_backoff \(1\) must be >= initial_backoff"
    ):
        fa.RetryPolicy(initial_backoff=2, max_backoff=1)
    with pytest.raises(fa.ConfigurationError, match="multiplier must be a number >= 1"):
        fa.RetryPolicy(multiplier=0.5)


def test_message_properties_builders_return_new_values() -> None:
    base = fa.MessageProperties()
    props = (
        base.with_priority(5)
        .with_header("a", 1)
        .with_headers({"b": 2})
        .with_message_type("t")
        .with_correlation_id("c")
        .with_reply_to("r")
        .with_app_id("app")
        .with_user_id("u")
        .with_cluster_id("k")
        .with_expiration(9.5)
        .with_content_encoding("gzip")
        .with_content_type("text/plain")
    )
    assert base == fa.MessageProperties()
    assert props.headers == {"a": 1, "b": 2}
    assert (props.priority, props.message_type, props.correlation_id, props.reply_to) == (
        5,
        "t",
        "c",
        "r",
    )
    assert (props.app_id, props.user_id, props.cluster_id, props.expiration) == (
        "app",
        "u",
        "k",
        9.5,
    )
    assert (props.content_encoding, props.content_type) == ("gzip", "text/plain")
    with pytest.raises(TypeError):
        props.headers["c"] = 3  # type: ignore[index]


async def test_manual_ack_mode_and_its_mistakes() -> None:
    backend = fa.MemoryBackend()

    async def handle(delivery: fa.Delivery) -> None:
        kind = delivery.message.payload
        if kind == "ack":
            delivery.handle.ack()
        elif kind == "later":
            delivery.handle.retry(5) if delivery.message.attempt == 1 else delivery.handle.ack()
        elif kind == "settle-then-raise":
            delivery.handle.dead_letter("rejected by hand")
            raise RuntimeError("after settling")
        # "forget": returns without settling

    await publish(backend, "ack", "later", "settle-then-raise", "forget")
    app = fa.WorkerApp().add_worker(handle, manual_ack=True)
    started = anyio.current_time()
    await run_until_drained(backend, app)
    assert anyio.current_time() - started >= 5  # the manual retry was held by the backend
    reasons = sorted(d.reason for d in backend.dead_letters(QUEUE))
    assert reasons == [
        "manual ack: the handler returned without settling its delivery",
        "rejected by hand",  # settled once by hand; the raise did not settle it again
    ]
    with pytest.raises(fa.ConfigurationError, match="manual_ack applies to handler functions"):
        fa.WorkerApp().add_worker(Exploding(), manual_ack=True)


async def test_workers_are_recycled_without_counting_as_crashes() -> None:
    backend = fa.MemoryBackend()
    done: list[int] = []

    async def handle(message: fa.Message) -> None:
        done.append(message.payload)

    await publish(backend, *range(30))
    app = (
        fa.WorkerApp()
        .add_worker(handle)
        .with_concurrency_limit(1)  # one worker: exactly 30 / 3 recycles
        .with_worker_recycling(max_messages=3)
    )
    with capture_logs() as logs:
        snapshot = await run_until_drained(backend, app)
    assert sorted(done) == list(range(30))
    restarts = [s.restarts for s in snapshot.walk() if "/worker-" in s.path]
    assert sum(restarts) == 10  # every 3 messages; many more than the intensity allows
    assert sum(e["event"] == "worker.recycled" for e in logs) == 10
    assert snapshot.state is fa.ActorState.RUNNING
    with pytest.raises(fa.ConfigurationError, match="max_messages must be an int >= 1"):
        fa.WorkerApp().with_worker_recycling(0)


class Counting:
    """A Worker class: what one instance handled, and how many instances were made."""

    made: ClassVar[int] = 0
    id = "counting"
    timeout = None

    def __init__(self) -> None:
        Counting.made += 1
        self.handled: list[int] = []

    async def process(self, message: fa.Message) -> None:
        self.handled.append(message.payload)
        assert len(self.handled) <= 5  # a fresh instance after every 5


async def test_a_worker_class_gives_every_worker_life_a_fresh_instance() -> None:
    backend = fa.MemoryBackend()
    Counting.made = 0
    await publish(backend, *range(30))
    app = (
        fa.WorkerApp()
        .add_worker(Counting)
        .with_concurrency_limit(2)
        .with_worker_recycling(max_messages=5)
    )
    snapshot = await run_until_drained(backend, app)
    restarts = [s.restarts for s in snapshot.walk() if "/worker-" in s.path]
    assert sum(restarts) >= 30 // 5 - 1  # each worker after every 5 it handled
    assert Counting.made == 2 + sum(restarts)  # one per worker, one per recycle
    assert backend.queue_statistics(QUEUE).dead == 0


async def test_workers_are_recycled_one_at_a_time_while_memory_is_high() -> None:
    backend = fa.MemoryBackend()
    release = anyio.Event()
    high = [True]

    def measure() -> int:
        return (200 if high[0] else 50) * 2**20

    async def handle(message: fa.Message) -> None:
        if message.payload == "slow":
            await release.wait()

    await publish(backend, "slow")
    app = (
        fa.WorkerApp()
        .add_worker(handle)
        .with_concurrency_limit(2)
        .with_worker_recycling(max_memory_mb=100, check_interval=1, measure=measure)
    )

    def restarts(system: fa.ActorSystem) -> list[int]:
        return [s.restarts for s in system.snapshot().walk() if "/worker-" in s.path]

    with capture_logs() as logs:
        async with fa.open_system(app.build(backend, QUEUE)) as system:
            await anyio.sleep(2.5)  # virtual time: checks at 1 s and 2 s, both high
            # worker-1 was told first, but finishes "slow" before it goes; worker-2 is idle
            assert restarts(system) == [0, 1]
            high[0] = False
            release.set()
            await backend.join(QUEUE)
            await anyio.sleep(10)  # memory is low now: no more recycling
            assert restarts(system) == [1, 1]
    events = [e["event"] for e in logs]
    assert events.count("pool.memory_high") == 2
    assert events.count("worker.recycled") == 2
    assert backend.queue_statistics(QUEUE).dead == 0


def test_worker_recycling_and_worker_classes_refuse_bad_input() -> None:
    app = fa.WorkerApp()
    with pytest.raises(fa.ConfigurationError, match="needs max_messages or max_memory_mb"):
        app.with_worker_recycling()
    for bad in (0, -1, True, "1", float("inf")):
        with pytest.raises(fa.ConfigurationError, match="max_memory_mb must be a number"):
            app.with_worker_recycling(max_memory_mb=bad)  # type: ignore[arg-type]
    with pytest.raises(fa.ConfigurationError, match="memory check interval"):
        app.with_worker_recycling(max_memory_mb=100, check_interval=0)
    with pytest.raises(fa.ConfigurationError, match="give it a timeout property instead"):
        app.add_worker(Counting, timeout=3)
    with pytest.raises(fa.ConfigurationError, match="give it a timeout property instead"):
        app.add_worker(Counting(), timeout=3)
    with pytest.raises(fa.ConfigurationError, match="manual_ack applies to handler functions"):
        app.register("count", Counting, manual_ack=True)


def test_resident_memory_measures_this_process() -> None:
    assert 10 * 2**20 < resident_memory() < 4 * 2**30  # an interpreter with the suite loaded


async def test_a_worker_class_whose_instances_are_not_workers_fails_the_start() -> None:
    class NotAWorker:  # has process, but its instances no id or timeout
        async def process(self, message: fa.Message) -> None:
            pass

    class NoProcess:
        pass

    with pytest.raises(fa.ConfigurationError, match="NoProcess has no process method"):
        fa.WorkerApp().add_worker(NoProcess)  # caught when added, not at start
    app = fa.WorkerApp().add_worker(NotAWorker)
    with pytest.raises(fa.StartError, match=r"NotAWorker\(\) is not a Worker"):
        async with fa.open_system(app.build(fa.MemoryBackend(), QUEUE)):
            pass


class FlakyBackend(fa.MemoryBackend):
    """A memory backend whose first consumer loses its 'connection' mid-stream.

    It fails on its ``fail_on``-th call of ``receive``; `reopened` is set when the
    next consumer opens.
    """

    def __init__(self, fail_on: int = 3) -> None:
        super().__init__()
        self.opened = 0
        self.fail_on = fail_on
        self.reopened = anyio.Event()

    async def open_source(self, queue: str, *, prefetch: int) -> Any:
        source = await super().open_source(queue, prefetch=prefetch)
        self.opened += 1
        if self.opened == 2:
            self.reopened.set()
        if self.opened == 1:
            receive = source.receive
            calls = 0

            async def dropping(max_count: int, min_credit: int = 1) -> list[fa.Delivery]:
                nonlocal calls
                calls += 1
                if calls == self.fail_on:
                    raise fa.BackendError("connection reset by peer")
                return await receive(max_count, min_credit)

            source.receive = dropping  # type: ignore[method-assign]
        return source


async def test_a_lost_connection_crashes_the_consumer_and_supervision_reconnects() -> None:
    backend = FlakyBackend()
    handled: Counter[int] = Counter()

    async def handle(message: fa.Message) -> None:
        await anyio.sleep(0.01)
        handled[message.payload] += 1

    await publish(backend, *range(40))
    app = fa.WorkerApp().add_worker(handle).with_prefetch(4).with_concurrency_limit(2)
    with capture_logs() as logs:
        snapshot = await run_until_drained(backend, app)
    assert backend.opened == 2  # a second connection after the crash
    assert snapshot.find("/app/consumer").restarts == 1  # type: ignore[union-attr]
    assert sorted(handled) == list(range(40))  # nothing lost...
    assert sum(handled.values()) - 40 <= 4  # ...duplicates only for what was in flight
    assert backend.queue_statistics(QUEUE) == fa.backends.QueueStatistics(0, 0, 0, 0)
    crashed = [e for e in logs if e["event"] == "actor.crashed"]
    assert [e["actor"] for e in crashed] == ["/app/consumer"]
    assert "connection reset by peer" in crashed[0]["error"]


async def test_deliveries_of_a_lost_consumer_are_not_started() -> None:
    backend = FlakyBackend(fail_on=2)  # lost right after its first run of deliveries
    handled: list[tuple[int, int]] = []

    async def handle(message: fa.Message) -> None:
        handled.append((message.payload, message.attempt))

    await publish(backend, *range(10))
    app = fa.WorkerApp().add_worker(handle).with_prefetch(10).with_concurrency_limit(1)
    with capture_logs() as logs:
        await run_until_drained(backend, app)
    # None had started when their consumer was lost: not run then (their outcome
    # could not be settled), each ran once when delivered again.
    assert sorted(handled) == [(n, 2) for n in range(10)]
    events = [e["event"] for e in logs]
    assert events.count("delivery.skipped_stale") == 10
    assert "settlement.stale" not in events  # nothing was settled for them
    assert backend.queue_statistics(QUEUE) == fa.backends.QueueStatistics(0, 0, 0, 0)


async def test_batches_of_a_lost_consumer_are_not_started() -> None:
    backend = FlakyBackend(fail_on=2)
    handled: list[tuple[int, int]] = []

    async def handle(messages: list[fa.Message]) -> None:
        handled.extend((m.payload, m.attempt) for m in messages)

    await publish(backend, *range(10))
    app = fa.WorkerApp().add_batch_worker(handle, size=5, interval=1).with_prefetch(10)
    await run_until_drained(backend, app)
    assert sorted(handled) == [(n, 2) for n in range(10)]  # each once, when redelivered
