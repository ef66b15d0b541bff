"""A worker that starts before its broker waits for it; wrong credentials fail fast.

In docker-compose or Kubernetes a worker may start before its broker listens. The
intake then tries again with the reconnect backoff, one log line per attempt and no
password in it, while the rest of the tree is up; refused credentials still end the
start at once. The supervision logic runs against a memory backend whose connection
actor is refused at will (asyncio and trio, virtual time); the brokers' side against
a real closed port that a real server then takes (asyncio, real time), and through
``foxactors run``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog
from structlog.testing import LogCapture

import foxactors as fa
from foxactors.backends._connection import ConnectionCounts
from foxactors.testing.servers import RabbitMQ, RedisServer, free_port, redis_server, session_server

from .brokers import BROKERS, Partition
from .conftest import REQUIRED

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
SECRET = "hunter2-boot"


class Watch(LogCapture):
    """Captures log events, and says when ``count`` of them were named ``event``."""

    def __init__(self, event: str, count: int) -> None:
        super().__init__()
        self.event = event
        self.count = count
        self.reached = anyio.Event()

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> Any:
        try:
            return super().__call__(logger, method_name, event_dict)
        finally:
            if sum(e["event"] == self.event for e in self.entries) >= self.count:
                self.reached.set()


@contextlib.contextmanager
def watching(event: str, count: int) -> Iterator[Watch]:
    """Like `structlog.testing.capture_logs`, with a `Watch` as the capture."""
    watch = Watch(event, count)
    processors = structlog.get_config()["processors"]
    old = processors.copy()
    try:
        processors.clear()
        processors.append(watch)
        structlog.configure(processors=processors)
        yield watch
    finally:
        processors.clear()
        processors.extend(old)
        structlog.configure(processors=processors)


def troubles(entries: list[Any]) -> list[Any]:
    """The events a default (info) configuration would show as warnings or worse."""
    return [e for e in entries if e["log_level"] in ("warning", "error", "critical")]


# -- the supervision logic, on both event loops --------------------------------------


class Refusing(fa.MemoryBackend):
    """A memory backend behind a connection actor whose first ``refusals`` connects fail.

    They fail as a broker's would: with `BrokerUnreachable` (nothing listens), or
    with the error of refused credentials (``wrong_password``), counted and logged
    by the same `ConnectionCounts` as the brokers'.
    """

    url = f"memory://worker:{SECRET}@broker/"

    def __init__(self, refusals: float, *, wrong_password: bool = False) -> None:
        super().__init__()
        self.refusals = refusals
        self.wrong_password = wrong_password
        self.attempts: list[float] = []
        self.counts = ConnectionCounts()

    def connection_actor(self) -> Callable[[], fa.Actor[Any]]:
        return functools.partial(RefusedConnection, self)

    async def open_source(self, queue: str, *, prefetch: int, connection: Any = None) -> Any:
        assert connection is self
        return await super().open_source(queue, prefetch=prefetch)


class RefusedConnection(fa.Actor[Any]):
    def __init__(self, backend: Refusing) -> None:
        self.backend = backend

    async def on_start(self) -> None:
        backend = self.backend
        backend.attempts.append(anyio.current_time())
        if len(backend.attempts) <= backend.refusals:
            error = ConnectionRefusedError(111, "Connection refused")
            raise backend.counts.refused(
                "Memory",
                backend.url,
                error,
                wrong_password=backend.wrong_password,
                retryable=not backend.wrong_password,
            )
        backend.counts.connected()

    async def receive(self, message: Any) -> Any:
        return self.backend  # the only question is CONNECTION


def app_for(handled: anyio.Event, **reconnect: Any) -> fa.WorkerApp:
    async def handle(message: fa.Message) -> None:
        handled.set()

    return fa.WorkerApp("jobs").add_worker(handle).with_reconnect(**reconnect)


async def test_a_broker_down_at_boot_is_tried_again_with_the_reconnect_backoff() -> None:
    backend = Refusing(refusals=6)  # for longer than reset_after (10 s): no reset
    handled = anyio.Event()
    app = app_for(handled, min_delay=1, max_delay=4, random_factor=0)
    await backend.publish("jobs", "hello")
    with watching("memory.connect_failed", 1) as logs:
        async with fa.open_system(app.build(backend, "jobs")) as system:
            await logs.reached.wait()
            snapshot = system.snapshot()  # the tree is up; the intake waits
            states = {a.path: a.state for a in snapshot.walk()}
            assert states["/jobs"] is fa.ActorState.RUNNING
            assert states["/jobs/pool"] is fa.ActorState.RUNNING
            assert states["/jobs/intake"] is fa.ActorState.RUNNING
            assert states["/jobs/intake/connection"] is fa.ActorState.RESTARTING
            with anyio.fail_after(60):
                await handled.wait()
    start = backend.attempts[0]
    assert [round(t - start, 1) for t in backend.attempts] == [0, 1, 3, 7, 11, 15, 19]
    shown = troubles(logs.entries)
    assert [(e["event"], e["consecutive_failures"]) for e in shown] == [
        ("memory.connect_failed", n) for n in range(1, 7)
    ]  # one line per attempt, nothing else
    assert all(e["url"] == "memory://worker:***@broker/" for e in shown)
    assert SECRET not in repr(logs.entries)
    assert backend.queue_statistics("jobs") == fa.backends.QueueStatistics(0, 0, 0, 0)


async def test_refused_credentials_at_boot_fail_the_start_at_once() -> None:
    backend = Refusing(refusals=math.inf, wrong_password=True)
    app = app_for(anyio.Event(), min_delay=1)
    with pytest.raises(fa.StartError) as caught:
        async with fa.open_system(app.build(backend, "jobs")):
            pytest.fail("the pipeline started")  # pragma: no cover
    assert len(backend.attempts) == 1
    assert "wrong user or password?" in str(caught.value)
    assert "memory://worker:***@broker/" in str(caught.value)
    assert SECRET not in str(caught.value)


async def test_a_pipeline_waiting_for_its_broker_stops_at_once() -> None:
    backend = Refusing(refusals=math.inf)
    app = app_for(anyio.Event(), min_delay=1, max_delay=1)
    with watching("memory.connect_failed", 3) as logs:
        async with fa.open_system(app.build(backend, "jobs")) as system:
            await logs.reached.wait()
            asked = anyio.current_time()
            system.stop()
            exit = await system.wait_stopped()
    assert exit.kind is fa.ExitKind.SHUTDOWN
    assert anyio.current_time() - asked < 1  # no drain waiting for a consumer never started
    assert {e["event"] for e in troubles(logs.entries)} == {"memory.connect_failed"}


async def test_give_up_after_bounds_the_wait_for_a_broker_at_boot() -> None:
    backend = Refusing(refusals=math.inf)
    app = app_for(anyio.Event(), min_delay=1, max_delay=1, random_factor=0, give_up_after=3)
    started = anyio.current_time()
    with pytest.raises(fa.RestartIntensityExceeded, match="/jobs/intake: more than 3 restarts"):
        async with fa.open_system(app.build(backend, "jobs")):
            await anyio.sleep_forever()
    assert [round(t - started, 1) for t in backend.attempts] == [0, 1, 2, 3]  # then it gave up


# -- real brokers on a real closed port ------------------------------------------------


@pytest.fixture(scope="module")
def locked() -> Iterator[RedisServer]:
    """A Redis that wants a password."""
    yield from session_server(redis_server(password=SECRET), required=REQUIRED)


class Later:
    """A broker URL (with a password) on a port where nothing listens until `come_up`."""

    def __init__(self, broker: str, request: pytest.FixtureRequest) -> None:
        self.broker = broker
        self.port = free_port()
        self._stack = contextlib.AsyncExitStack()
        if broker == "rabbitmq":
            self._rabbitmq: RabbitMQ = request.getfixturevalue("rabbitmq")
            self.user = f"boot-{uuid.uuid4().hex[:8]}"
            self.url = f"amqp://{self.user}:{SECRET}@127.0.0.1:{self.port}/"
        else:
            self.url = f"redis://:{SECRET}@127.0.0.1:{self.port}/0"

    def backend(self) -> Any:
        if self.broker == "rabbitmq":
            return fa.backends.RabbitMQBackend(self.url)
        return fa.backends.RedisBackend(self.url, poll_interval=0.01)

    async def come_up(self, tasks: anyio.abc.TaskGroup) -> None:
        """Start serving on the port: a Redis of its own, or a relay to RabbitMQ."""
        if self.broker == "rabbitmq":
            ctl = self._rabbitmq.ctl
            await anyio.to_thread.run_sync(ctl, "add_user", self.user, SECRET)
            await anyio.to_thread.run_sync(
                ctl, "set_permissions", "-p", "/", self.user, ".*", ".*", ".*"
            )
            await tasks.start(Partition(self._rabbitmq.port, self.port).serve)
            return
        directory = Path(self._stack.enter_context(tempfile.TemporaryDirectory()))
        server = RedisServer(self.port, directory, appendonly=False, password=SECRET)
        self._stack.callback(server.stop)
        await anyio.to_thread.run_sync(server.start)

    async def close(self) -> None:
        await self._stack.aclose()


@pytest.fixture
async def later(request: pytest.FixtureRequest) -> Any:
    case = Later(request.param, request)
    yield case
    await case.close()


@pytest.mark.parametrize("anyio_backend", [("asyncio", {})])  # brokers: real time
@pytest.mark.parametrize("later", BROKERS, indirect=True)
async def test_a_worker_started_before_its_broker_waits_and_then_consumes(later: Later) -> None:
    backend = later.backend()
    queue = f"jobs-{uuid.uuid4().hex[:8]}"
    handled = anyio.Event()
    app = app_for(handled, min_delay=0.05, max_delay=0.2)
    event = f"{later.broker}.connect_failed"
    with watching(event, 3) as logs:
        async with anyio.create_task_group() as tasks:
            async with fa.open_system(app.build(backend, queue)):
                with anyio.fail_after(30):
                    await logs.reached.wait()
                down = list(logs.entries)
                await later.come_up(tasks)
                await backend.publish(queue, "hello")
                with anyio.fail_after(30):
                    await handled.wait()
                stats = backend.statistics()
                assert (stats.consuming, stats.consecutive_failures) == (1, 0)
            tasks.cancel_scope.cancel()
    await backend.close()
    shown = troubles(down)
    assert len(shown) >= 3
    assert {e["event"] for e in shown} == {event}  # one line per attempt, nothing else
    assert [e["consecutive_failures"] for e in shown] == list(range(1, len(shown) + 1))
    assert all(":***@127.0.0.1" in e["url"] for e in shown)
    assert SECRET not in repr(logs.entries)


@pytest.mark.parametrize("anyio_backend", [("asyncio", {})])
@pytest.mark.parametrize("broker", BROKERS)
async def test_a_wrong_password_at_boot_fails_fast(
    broker: str, request: pytest.FixtureRequest
) -> None:
    if broker == "rabbitmq":
        port = request.getfixturevalue("rabbitmq").port
        backend: Any = fa.backends.RabbitMQBackend(f"amqp://guest:{SECRET}x@127.0.0.1:{port}/")
    else:
        port = request.getfixturevalue("locked").port
        backend = fa.backends.RedisBackend(f"redis://:{SECRET}x@127.0.0.1:{port}/0")
    app = app_for(anyio.Event(), min_delay=0.05)
    with anyio.fail_after(20), pytest.raises(fa.StartError) as caught:
        async with fa.open_system(app.build(backend, "jobs")):
            pytest.fail("the pipeline started")  # pragma: no cover
    assert "wrong user or password?" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert backend.statistics().consecutive_failures == 1  # one attempt, no retries
    await backend.close()


APP = """
import os
import foxactors as fa
from foxactors.backends import RedisBackend

async def handle(message):
    pass

app = (
    fa.WorkerApp("jobs")
    .add_worker(handle)
    .with_reconnect(min_delay=0.05, max_delay=0.1)
    .with_backend(RedisBackend(os.environ["BOOT_URL"]), "jobs")
)
"""


def test_foxactors_run_waits_for_a_broker_that_is_down(tmp_path: Path) -> None:
    (tmp_path / "boot_app.py").write_text(APP)
    url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    path = os.pathsep.join([str(ROOT / "src"), str(tmp_path)])
    lines: list[dict[str, Any]] = []
    with subprocess.Popen(
        [sys.executable, "-m", "foxactors", "run", "boot_app:app", "--log-format", "json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": path, "BOOT_URL": url},
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(json.loads(line))
            if sum(e["event"] == "redis.connect_failed" for e in lines) == 3:
                break
        proc.send_signal(signal.SIGTERM)
        lines += [json.loads(line) for line in proc.stdout]
        assert proc.wait(timeout=30) == 0
    shown = [e for e in lines if e["level"] in ("warning", "error")]
    assert {e["event"] for e in shown} == {"redis.connect_failed"}
    assert lines[-1]["event"] == "system.stopped"
    assert SECRET not in json.dumps(lines)
