"""``foxactors run --processes N`` with real processes and real signals (Redis).

The parent runs in a subprocess with JSON logs; a reader thread hands its lines to
the test, which waits for the events it expects (with deadlines) or polls the
parent's endpoints. Nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from foxactors import backends
from foxactors.testing.servers import RedisServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SRC = Path(backends.__file__).parents[2]
DEADLINE = 30.0


class Parent:
    """A ``foxactors run ... --processes N`` in a subprocess, its JSON lines read aside."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "foxactors", "run", *args, "--log-format", "json"],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(SRC), str(ROOT)]),
                **(env or {}),
            },
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """The next event ``check`` accepts; fails after the deadline or at the end."""
        end = time.monotonic() + DEADLINE
        while (left := end - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"the parent ended before {what}; it said: {self.seen[-5:]}")
            event: dict[str, Any] = json.loads(line)  # one JSON object a line
            self.seen.append(event)
            if check(event):
                return event
        pytest.fail(f"no {what} within {DEADLINE}s; the parent said: {self.seen[-5:]}")

    def event(self, name: str, **fields: Any) -> dict[str, Any]:
        return self.wait_for(
            lambda e: e.get("event") == name and all(e.get(k) == v for k, v in fields.items()),
            f"{name} {fields}",
        )

    def finish(self) -> int:
        """Wait for the parent's exit, reading the rest of its lines; its status."""
        status = self.process.wait(timeout=DEADLINE)
        while (line := self.lines.get(timeout=DEADLINE)) is not None:
            self.seen.append(json.loads(line))
        return status

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=DEADLINE)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()
        while (line := self._unread()) is not None:  # children the test did not wait for
            with contextlib.suppress(ValueError):
                self.seen.append(json.loads(line))
        for event in self.seen:
            if event.get("event") == "process.started" and alive(event["pid"]):
                os.kill(event["pid"], signal.SIGKILL)

    def _unread(self) -> str | None:
        try:
            return self.lines.get_nowait()
        except queue.Empty:
            return None


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:  # gone meanwhile, or no /proc: as os.kill said
        return not Path("/proc/self").exists()
    return stat.rpartition(")")[2].split()[0] != "Z"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def poll(check: Callable[[], bool], what: str) -> None:
    """Ask ``check`` until it holds (another process's state: nothing to wait on)."""
    end = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > end:
            pytest.fail(f"no {what} within {DEADLINE}s")
        time.sleep(0.05)  # polling another process, not synchronising our own tasks


@pytest.fixture
def stream() -> str:
    return f"procs-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def parent(redis: RedisServer, stream: str) -> Iterator[Callable[..., Parent]]:
    started: list[Parent] = []

    def start(*args: str) -> Parent:
        p = Parent(
            *args,
            env={"FOXACTORS_TEST_REDIS_URL": redis.url, "FOXACTORS_TEST_QUEUE": stream},
        )
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()


def publish(url: str, stream: str, count: int) -> None:
    async def go() -> None:
        backend = backends.RedisBackend(url)
        try:
            for n in range(count):
                await backend.publish(stream, {"n": n})
        finally:
            await backend.close()

    asyncio.run(go())


def ready(base: str) -> bool:
    return get(base + "/ready")[0] == 200


def succeeded(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "foxactors_messages_succeeded_total"
    )


def start_serving(parent: Parent) -> str:
    return str(parent.event("processes.http.serving")["url"])


APP = "tests.apps_processes:redis_app"


def test_a_killed_child_is_restarted_and_consumes_again(
    parent: Callable[..., Parent], redis: RedisServer, stream: str
) -> None:
    p = parent(APP, "--processes", "2", "--http-port", "0")
    base = start_serving(p)
    pids = {p.event("process.started", process=i)["pid"] for i in (1, 2)}
    assert len(pids) == 2
    poll(lambda: ready(base), "two ready children")
    health = json.loads(get(base + "/health")[1])
    assert {c["pid"] for c in health["processes"]} == pids
    victim = health["processes"][0]["pid"]
    os.kill(victim, signal.SIGKILL)
    died = p.event("process.died", process=1)
    assert died["pid"] == victim
    assert "SIGKILL" in died["status"]
    again = p.event("process.started", process=1)
    assert again["pid"] not in pids
    assert again["restarts"] == 1
    poll(lambda: ready(base), "the restarted child consuming")
    health = json.loads(get(base + "/health")[1])
    assert health["processes"][0]["pid"] == again["pid"]
    assert health["processes"][0]["ready"]
    publish(redis.url, stream, 50)  # the restarted child consumes with the other one
    poll(lambda: succeeded(get(base + "/metrics")[1]) == 50, "50 messages handled")
    p.process.send_signal(signal.SIGTERM)
    assert p.finish() == 0


def test_sigterm_drains_every_child_and_all_exit_zero(parent: Callable[..., Parent]) -> None:
    p = parent(APP, "--processes", "2", "--http-port", "0")
    base = start_serving(p)
    pids = {p.event("process.started", process=i)["pid"] for i in (1, 2)}
    poll(lambda: ready(base), "two consuming children")
    p.process.send_signal(signal.SIGTERM)
    assert p.finish() == 0
    stopped = {e["pid"]: e["status"] for e in p.seen if e.get("event") == "process.stopped"}
    assert stopped == dict.fromkeys(pids, 0)
    drained = {e["pid"] for e in p.seen if e.get("event") == "system.stopped"}
    assert drained == pids
    assert not any(alive(pid) for pid in pids)


def test_aggregated_metrics_count_what_every_child_handled(
    parent: Callable[..., Parent], redis: RedisServer, stream: str
) -> None:
    p = parent(APP, "--processes", "2", "--http-port", "0")
    base = start_serving(p)
    poll(lambda: ready(base), "two ready children")
    publish(redis.url, stream, 200)
    poll(lambda: succeeded(get(base + "/metrics")[1]) == 200, "200 messages in the merged metrics")
    health = json.loads(get(base + "/health")[1])
    each = [succeeded(get(c["url"] + "/metrics")[1]) for c in health["processes"]]
    assert sum(each) == 200
    merged = get(base + "/metrics")[1]
    assert "foxactors_processes 2.0" in merged
    p.process.send_signal(signal.SIGTERM)
    assert p.finish() == 0


def test_a_child_that_keeps_failing_makes_the_parent_give_up(
    parent: Callable[..., Parent],
) -> None:
    p = parent("tests.apps_processes:broken", "--processes", "2", "--max-restarts", "2")
    status = p.finish()
    assert status == 1
    failed = [e for e in p.seen if e.get("event") == "processes.failed"]
    assert len(failed) == 1
    assert "more than 2 restarts within 60s" in failed[0]["reason"]
    assert "the database is unreachable" in failed[0]["reason"]  # the child's own error
    started = [e["pid"] for e in p.seen if e.get("event") == "process.started"]
    assert 3 <= len(started) <= 4  # two first starts, then restarts up to the limit
    assert not any(alive(pid) for pid in started)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--processes", "0"], "--processes must be 1 or more, got 0"),
        (["--processes", "-2"], "--processes must be 1 or more, got -2"),
        (["--processes", "2", "--concurrency", "0"], "--concurrency: "),
        (["--processes", "2", "--stop-timeout", "0"], "--stop-timeout must be a number of"),
    ],
)
def test_bad_input_is_one_line_and_no_child_starts(
    parent: Callable[..., Parent], args: list[str], said: str
) -> None:
    p = parent(APP, *args)
    assert p.finish() == 1
    assert p.seen == []  # no child started, nothing logged
    assert p.process.stderr is not None
    error = p.process.stderr.read().strip()
    assert said in error
    assert "\n" not in error


@pytest.mark.parametrize(
    ("app", "said"),
    [
        ("tests.apps:bound_app", "uses the memory backend"),
        ("tests.no_such_module:app", "cannot import module 'tests.no_such_module'"),
        ("tests.apps:forever --queue q", "--queue applies only to a WorkerApp"),
    ],
)
def test_an_app_that_cannot_run_in_processes_is_refused_at_once(
    parent: Callable[..., Parent], app: str, said: str
) -> None:
    p = parent(*app.split(), "--processes", "2")
    assert p.finish() == 1
    assert p.seen == []
    assert p.process.stderr is not None
    error = p.process.stderr.read().strip()
    assert said in error
    assert "\n" not in error


def test_reload_restarts_the_children_when_a_py_file_changes(tmp_path: Path) -> None:
    app = tmp_path / "reloadapp.py"
    app.write_text(
        "import foxactors as fa\n"
        "from tests.apps import Ready\n"
        "app = fa.Supervisor.spec('svc', [fa.ChildSpec('ready', Ready)])\n"
    )
    p = Parent("reloadapp:app", "--reload", cwd=tmp_path)
    try:
        first = p.event("process.started", process=1)["pid"]
        p.wait_for(lambda e: e.get("event") == "app.ready" and e.get("pid") == first, "ready")
        app.write_text(app.read_text() + "# changed\n")
        p.event("processes.reloading")
        again = p.event("process.started", process=1)
        assert again["pid"] != first
        assert again["restarts"] == 0  # a reload is no crash
        p.process.send_signal(signal.SIGTERM)
        assert p.finish() == 0
    finally:
        p.close()


def test_a_child_that_ignores_sigterm_is_killed_after_the_stop_timeout() -> None:
    p = Parent("tests.apps_processes:stubborn", "--processes", "2", "--stop-timeout", "0.5")
    try:
        _stop_timeout_kills_the_stubborn_child(p)
    finally:
        p.close()


def _stop_timeout_kills_the_stubborn_child(p: Parent) -> None:
    ready = [p.event("app.ready") for _ in (1, 2)]
    [stubborn] = [e["pid"] for e in ready if e["ignores_sigterm"]]
    [other] = [e["pid"] for e in ready if not e["ignores_sigterm"]]
    p.process.send_signal(signal.SIGTERM)
    overdue = p.event("process.stop_timeout")
    assert (overdue["pid"], overdue["timeout"], overdue["action"]) == (stubborn, 0.5, "kill")
    assert p.finish() == 1
    stopped = {e["pid"]: e["status"] for e in p.seen if e.get("event") == "process.stopped"}
    assert stopped == {stubborn: -signal.SIGKILL, other: 0}  # the other one drained
    [failed] = [e for e in p.seen if e.get("event") == "processes.failed"]
    assert failed["reason"] == f"killed after --stop-timeout 0.5s: process 1 (pid {stubborn})"
    assert not alive(stubborn)


def test_a_child_told_to_stop_while_it_starts_drains_once_started(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    p = Parent(
        "tests.apps_processes:slow_second", "--processes", "2", env={"PROCS_GATE": str(gate)}
    )
    try:
        first = p.wait_for(lambda e: e.get("event") in ("app.ready", "app.gated"), "a child")
        other = "app.gated" if first["event"] == "app.ready" else "app.ready"
        second = p.event(other)
        up, starting = (first, second) if first["event"] == "app.ready" else (second, first)
        up, starting = up["pid"], starting["pid"]
        p.process.send_signal(signal.SIGTERM)  # forwarded to both children at once
        assert p.event("process.stopped", pid=up)["status"] == 0
        gate.touch()  # its SIGTERM came while it started: pending, not fatal
        assert p.event("process.stopped", pid=starting)["status"] == 0
        assert p.finish() == 0
        assert {e["pid"] for e in p.seen if e.get("event") == "system.stopped"} == {up, starting}
    finally:
        p.close()
