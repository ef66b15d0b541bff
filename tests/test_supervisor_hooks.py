"""Hooks for Supervisor subclasses: transient start failures, escalating exits."""

from __future__ import annotations

import functools

import anyio
import pytest
from structlog.testing import capture_logs

import foxactors as fa

from .helpers import Crash, Recorder, Worker

pytestmark = pytest.mark.anyio


class NotYet(Exception):
    """A start failure that passes by itself."""


class FailsFirst(Worker):
    """Fails its start while ``failures`` says so, then runs like a Worker."""

    def __init__(self, name: str, rec: Recorder, failures: list[int], started: anyio.Event) -> None:
        super().__init__(name, rec)
        self.failures = failures
        self.started = started

    async def on_start(self) -> None:
        if self.failures[0] > 0:
            self.failures[0] -= 1
            self.rec.add("failed", self.name)
            raise NotYet(self.name)
        await super().on_start()
        self.started.set()


class Patient(fa.Supervisor):
    """A supervisor for which NotYet at start is only a crash."""

    def start_failure_is_transient(self, error: Exception) -> bool:
        return isinstance(error, NotYet)


def children(
    rec: Recorder, failures: list[int], started: anyio.Event | None = None
) -> list[fa.ChildSpec]:
    backoff = fa.Backoff(min_delay=1, max_delay=1, random_factor=0)
    event = started or anyio.Event()
    return [
        fa.ChildSpec("a", lambda: Worker("a", rec)),
        fa.ChildSpec("b", lambda: FailsFirst("b", rec, failures, event), backoff=backoff),
        fa.ChildSpec("c", lambda: Worker("c", rec)),
    ]


@pytest.mark.parametrize(
    ("strategy", "first_starts"),
    [("one_for_one", ["a", "c"]), ("rest_for_one", ["a"]), ("one_for_all", ["a"])],
)
async def test_a_transient_start_failure_is_restarted_with_backoff(
    strategy: str, first_starts: list[str]
) -> None:
    rec, failures, started = Recorder(), [2], anyio.Event()
    spec = fa.ChildSpec(
        "root",
        lambda: Patient(children(rec, failures, started), strategy=strategy, max_restarts=5),
    )
    async with fa.open_system(spec) as system:
        assert rec.of("start") == first_starts  # the start succeeded without b
        assert system.ref("b").state is fa.ActorState.RESTARTING
        start = anyio.current_time()
        await started.wait()
        assert anyio.current_time() - start >= 2  # two failures, one second each
        assert rec.of("failed") == ["b", "b"]
        assert await system.ref("b").ask("hi") == "hi"
        assert await system.ref("c").ask("hi") == "hi"


async def test_other_start_failures_still_fail_the_start() -> None:
    rec = Recorder()

    class Broken(Worker):
        async def on_start(self) -> None:
            raise Crash("broken")

    specs = [
        fa.ChildSpec("a", lambda: Worker("a", rec)),
        fa.ChildSpec("b", lambda: Broken("b", rec)),
    ]
    spec = fa.ChildSpec("root", lambda: Patient(specs))
    with pytest.raises(fa.StartError, match="child /root/b failed to start: Crash: broken"):
        async with fa.open_system(spec):
            pass
    assert rec.events == [("start", "a"), ("stop", "a", "shutdown")]


async def test_transient_start_failures_count_towards_the_intensity() -> None:
    rec, failures = Recorder(), [100]
    patient = fa.ChildSpec(
        "patient",
        lambda: Patient(children(rec, failures), max_restarts=2, within=60),
        restart=fa.Restart.TEMPORARY,
    )
    async with fa.open_system(fa.Supervisor.spec("root", [patient])) as system:
        exit = await system.ref("patient").wait_stopped()
    assert exit.kind is fa.ExitKind.CRASHED
    assert isinstance(exit.error, fa.RestartIntensityExceeded)
    assert rec.of("failed") == ["b", "b", "b"]  # the first start and two restarts


class Strict(fa.Supervisor):
    """Fails at once when child ``b`` crashes with a Crash."""

    def escalates(self, id: str, exit: fa.Exit) -> bool:
        return id == "b" and isinstance(exit.error, Crash)


async def test_an_escalating_exit_fails_the_supervisor_without_a_restart() -> None:
    rec = Recorder()
    specs = [fa.ChildSpec(n, functools.partial(Worker, n, rec)) for n in "abc"]
    root = fa.Supervisor.spec(
        "root", [fa.ChildSpec("strict", lambda: Strict(specs), backoff=fa.Backoff.none())]
    )
    async with fa.open_system(root) as system:
        with capture_logs() as logs:
            await system.ref("strict/a").tell("crash")  # a is restarted as usual
            assert await system.ref("strict/a").ask("hi") == "hi"
            await system.ref("strict/b").tell("crash")  # strict fails; root restarts it
            await anyio.wait_all_tasks_blocked()
            assert await system.ref("strict/b").ask("hi") == "hi"
    restarting = [e["actor"] for e in logs if e["event"] == "actor.restarting"]
    assert restarting == ["/root/strict/a", "/root/strict"]
    crashed = [e for e in logs if e["event"] == "actor.crashed" and e["actor"] == "/root/strict"]
    assert [e["error"] for e in crashed] == ["Crash: b"]


async def test_a_transient_start_failure_that_escalates_stops_the_started_children() -> None:
    rec, failures = Recorder(), [100]
    patient = fa.ChildSpec(
        "patient",
        lambda: Patient(children(rec, failures), max_restarts=0),
        restart=fa.Restart.TEMPORARY,
    )
    with pytest.raises(fa.StartError):
        async with fa.open_system(fa.Supervisor.spec("root", [patient])):
            pass
    assert ("stop", "a", "shutdown") in rec.events  # a was started: it was stopped, not lost
