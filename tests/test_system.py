from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from structlog.testing import capture_logs

import foxactors as fa
from foxactors._system import CANCEL_GRACE

from .helpers import Crash, Recorder, ending_with, tree, worker

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.anyio
async def test_a_body_error_stops_the_tree_and_propagates_unwrapped() -> None:
    rec = Recorder()
    with pytest.raises(Crash, match="body"):
        async with fa.open_system(tree([worker("a", rec), worker("b", rec)])):
            raise Crash("body")
    assert rec.of("stop") == ["b", "a"]


@pytest.mark.anyio
async def test_a_failing_root_cancels_the_body_and_raises() -> None:
    rec = Recorder()
    reached_end = False
    with pytest.raises(fa.RestartIntensityExceeded):  # noqa: PT012 - it fails while the body runs
        async with fa.open_system(tree([worker("a", rec)], max_restarts=0)) as system:
            await system.ref("a").tell("crash")
            await anyio.sleep_forever()
            reached_end = True  # pragma: no cover
    assert not reached_end
    assert system.root.state is fa.ActorState.STOPPED
    assert system.ref("/app").state is fa.ActorState.STOPPED


@pytest.mark.anyio
async def test_snapshot_shows_the_whole_tree() -> None:
    rec = Recorder()
    spec = tree([worker("a", rec, mailbox_size=7), tree([worker("b", rec)], name="pool")])
    async with fa.open_system(spec) as system:
        await system.ref("pool/b").tell("crash")
        await wait_all_tasks_blocked()
        system.ref("a").tell_nowait("x")  # queued: nobody ran it yet
        snap = system.snapshot()
    assert [(s.path, s.kind, s.state, s.restarts) for s in snap.walk()] == [
        ("/app", "supervisor", fa.ActorState.RUNNING, 0),
        ("/app/a", "actor", fa.ActorState.RUNNING, 0),
        ("/app/pool", "supervisor", fa.ActorState.RUNNING, 0),
        ("/app/pool/b", "actor", fa.ActorState.RUNNING, 1),
    ]
    a = snap.find("/app/a")
    assert a is not None
    assert (a.mailbox_depth, a.mailbox_capacity, a.actor_class) == (1, 7, "Worker")
    assert snap.render().splitlines() == [
        "app [supervisor Supervisor] running restarts=0 mailbox=0/1000",
        "  a [actor Worker] running restarts=0 mailbox=1/7",
        "  pool [supervisor Supervisor] running restarts=0 mailbox=0/1000",
        "    b [actor Worker] running restarts=1 mailbox=0/1000",
    ]


class HangsInOnStop(fa.Actor[Any]):
    async def receive(self, message: Any) -> None:
        pass

    async def on_stop(self, exit: fa.Exit) -> None:
        await anyio.sleep_forever()


@pytest.mark.anyio
async def test_a_root_cancelled_after_its_shutdown_timeout_ends_killed_not_failed() -> None:
    rec = Recorder()
    children = [worker("a", rec), fa.ChildSpec("hangs", HangsInOnStop, shutdown=None)]
    with capture_logs() as logs:
        async with fa.open_system(tree(children, shutdown=2)) as system:
            a = system.ref("a")
            began = anyio.current_time()
        assert 2 <= anyio.current_time() - began < 3  # the root's timeout, then cancelled
    assert (await system.wait_stopped()).kind is fa.ExitKind.KILLED
    assert (await a.wait_stopped()).kind is fa.ExitKind.KILLED
    assert rec.of("stop") == []  # cancelled with the root, before its turn
    events = [(e["event"], e.get("actor"), e["log_level"]) for e in logs]
    assert ("actor.killed", "/app", "warning") in events
    assert [e for e in events if e[0] == "system.failed"] == []  # a kill, not a failure


@pytest.mark.anyio
async def test_a_system_cancelled_from_outside_stops_as_killed_with_its_hooks() -> None:
    rec = Recorder()
    spec = tree([worker("a", rec), tree([worker("b", rec)], name="inner")])
    with anyio.CancelScope() as outside:
        async with fa.open_system(spec) as system:
            outside.cancel()
            await anyio.sleep_forever()
    assert outside.cancelled_caught
    # reverse order, every hook told KILLED (a kill reaches the subtree), nothing drained
    assert [e for e in rec.events if e[0] == "stop"] == [
        ("stop", "b", "killed"),
        ("stop", "a", "killed"),
    ]
    assert (await system.wait_stopped()).kind is fa.ExitKind.KILLED


class HangsInReceive(fa.Actor[Any]):
    """Never finishes a message; notes whether its stop hook ran."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def receive(self, message: Any) -> Any:
        await anyio.sleep_forever()

    async def on_stop(self, exit: fa.Exit) -> None:
        self.rec.add("stop", "hangs", exit.kind.value)  # pragma: no cover - never reached


@pytest.mark.anyio
async def test_a_cancelled_system_is_killed_after_the_grace_if_it_hangs() -> None:
    rec = Recorder()
    hangs = fa.ChildSpec("hangs", lambda: HangsInReceive(rec), shutdown=None)
    with anyio.CancelScope() as outside:
        async with fa.open_system(tree([worker("a", rec), hangs])) as system:
            system.ref("hangs").tell_nowait("x")
            await wait_all_tasks_blocked()
            began = anyio.current_time()
            outside.cancel()
            await anyio.sleep_forever()
    waited = anyio.current_time() - began
    assert CANCEL_GRACE <= waited < CANCEL_GRACE + 1  # bounded, then cancelled
    assert rec.of("stop") == []  # "hangs" never stopped, so "a" never got its turn
    assert (await system.wait_stopped()).kind is fa.ExitKind.KILLED


@pytest.mark.anyio
async def test_kill_cancels_the_tree_at_once_without_hooks() -> None:
    rec = Recorder()
    async with fa.open_system(tree([worker("a", rec), worker("b", rec)])) as system:
        system.kill()
        assert (await system.wait_stopped()).kind is fa.ExitKind.KILLED
    assert rec.of("stop") == []


@pytest.mark.anyio
async def test_stop_and_wait_stopped() -> None:
    rec = Recorder()
    async with fa.open_system(tree([worker("a", rec)])) as system:
        system.stop()
        exit = await system.wait_stopped()
        assert exit.kind is fa.ExitKind.SHUTDOWN
        assert rec.of("stop") == ["a"]


class Finisher(fa.Actor[Any]):
    async def on_start(self) -> None:
        self.ref.tell_nowait("done")

    async def receive(self, message: Any) -> None:
        self.stop()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_returns_how_the_root_ended(backend: str) -> None:
    spec = ending_with("finisher", Finisher)
    assert fa.run(spec, backend=backend) == fa.Exit(fa.ExitKind.NORMAL)


PACKAGE_DIR = str(Path(fa.__file__).resolve().parent.parent)  # the foxactors under test


def foxactors(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "foxactors", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), PACKAGE_DIR])},
        **kwargs,
    )


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_turns_a_signal_into_an_ordered_shutdown(loop: str, sig: signal.Signals) -> None:
    lines = []
    with foxactors("run", "tests.apps:forever", "--log-format", "json", "--loop", loop) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait for the app to say it is ready
            lines.append(json.loads(line))
            if lines[-1]["event"] == "app.ready":
                break
        proc.send_signal(sig)
        lines += [json.loads(line) for line in proc.stdout]
        assert proc.wait(timeout=30) == 0
    stopped = [e["name"] for e in lines if e["event"] == "service.stopped"]
    assert stopped == ["web", "api", "db"]
    assert {e["exit"] for e in lines if e["event"] == "service.stopped"} == {"shutdown"}
    assert lines[-1]["event"] == "system.stopped"
    assert any(e["event"] == "system.signal" and e["signal"] == sig.name for e in lines)
    (banner,) = [e for e in lines if e["event"] == "app.starting"]  # a tree of its own
    assert (banner["app"], banner["level"]) == ("tests.apps:forever", "info")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.apps", "expected MODULE:ATTRIBUTE"),
        ("tests.nowhere:app", "cannot import module 'tests.nowhere'"),
        ("tests.apps:missing", "has no attribute 'missing'"),
        ("tests.apps:not_a_tree", "it must be a ChildSpec"),
        ("tests/apps.py:forever", "names a file: use a module path, e.g. tests.apps:forever"),
        ("./tests/apps.py", "names a file: use a module path, e.g. tests.apps:app"),
        ("/srv/jobs/app.py:tree", "names a file: use a module path, e.g. app:tree (run from"),
    ],
)
def test_cli_explains_a_bad_target(target: str, message: str) -> None:
    proc = foxactors("run", target)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert message in out


def test_the_example_runs_and_recovers_from_its_crashes() -> None:
    proc = subprocess.run(
        [sys.executable, "examples/supervision_tree.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count("order.paid") == 20
    assert out.count("actor.crashed") == 2
    assert out.count("actor.restarting") == 2
    assert "paid=20 total=229.80" in out
    assert "system.stopped" in out
    assert "Traceback" not in out


def test_the_cli_runs_the_example() -> None:
    proc = foxactors("run", "examples.supervision_tree:app", "--log-format", "json")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    events = [json.loads(line) for line in out.splitlines()]
    paid = sorted(e["order"] for e in events if e["event"] == "order.paid")
    assert paid == list(range(1, 21))
    crashes = [e for e in events if e["event"] == "actor.crashed"]
    assert len(crashes) == 2
    assert all("exception" in e for e in crashes)  # JSON logs keep the traceback


def test_the_email_pipeline_example_retries_and_dead_letters() -> None:
    proc = foxactors("run", "examples.email_pipeline:app", "--log-format", "json")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    events = [json.loads(line) for line in out.splitlines()]
    sent = sorted(e["to"] for e in events if e["event"] == "email.sent")
    assert sent == sorted(f"user{n}@example.com" for n in range(1, 9))  # each exactly once
    assert {e["to"]: e["attempt"] for e in events if e["event"] == "email.sent"}[
        "user4@example.com"
    ] == 3  # retried twice, then sent
    reasons = sorted(e["reason"] for e in events if e["event"] == "report.dead_letter")
    assert len(reasons) == 3
    assert reasons[0].startswith("no handler for message type 'send_fax'")
    assert reasons[1].startswith("not retried (BadAddress is in dead_on): BadAddress")
    assert reasons[2].startswith("undecodable: body is not valid JSON")
    assert events[-1]["event"] == "system.stopped"
    assert events[-1]["exit"] == "normal"


def test_cli_runs_a_bound_worker_app_until_sigterm() -> None:
    lines = []
    with foxactors(
        "run", "tests.apps:bound_app", "--log-format", "json", "--log-level", "debug"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(json.loads(line))
            if lines[-1]["event"] == "actor.started" and lines[-1]["actor"] == "/svc":
                break
        proc.send_signal(signal.SIGTERM)
        lines += [json.loads(line) for line in proc.stdout]
        assert proc.wait(timeout=30) == 0
    assert any(e["event"] == "pipeline.drained" for e in lines)
    assert lines[-1]["event"] == "system.stopped"


def test_cli_lists_a_dead_letter_file(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    sink = fa.JsonLinesSink(path)
    props = fa.MessageProperties(message_type="send_email")
    letter = fa.DeadLetter("m-1", "emails", b"{}", props, "failed after 4 attempts: X", 4, 0.0)
    anyio.run(sink.write, letter)
    listed = subprocess.run(
        [sys.executable, "-m", "foxactors", "dead-letters", "list", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {
        "id": "m-1",
        "queue": "emails",
        "reason": "failed after 4 attempts: X",
        "attempts": 4,
        "failed_at": 0.0,
        "message_type": "send_email",
    }
    assert "1 dead letter(s)" in listed.stderr
    text = subprocess.run(
        [sys.executable, "-m", "foxactors", "dead-letters", "list", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "1970-01-01T00:00:00+00:00  emails  m-1  attempts=4" in text.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "foxactors", "dead-letters", "list", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert missing.returncode == 1
    assert "cannot read dead letters from" in missing.stderr


def test_cli_loop_keeps_backend_as_a_deprecated_alias(capsys: pytest.CaptureFixture[str]) -> None:
    from foxactors._cli import main  # noqa: PLC0415

    assert main(["run", "tests.apps:missing", "--backend", "trio"]) == 1  # runs, then fails
    err = capsys.readouterr().err
    assert "--backend is deprecated (it names the event loop" in err
    assert "use --loop trio" in err


@pytest.mark.parametrize(
    ("loop", "expected"),
    [
        ("asyncio", {"backend": "asyncio"}),
        ("trio", {"backend": "trio"}),
        ("uvloop", {"backend": "asyncio", "backend_options": {"use_uvloop": True}}),
    ],
)
def test_cli_loop_picks_the_event_loop_and_names_a_missing_one(
    loop: str,
    expected: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse  # noqa: PLC0415
    import importlib.util  # noqa: PLC0415

    from foxactors._cli import _loop_of  # noqa: PLC0415

    args = argparse.Namespace(loop=loop, backend=None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())  # installed
    assert _loop_of(args) == expected
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # not installed
    if loop == "asyncio":
        assert _loop_of(args) == expected  # the standard library's
    else:
        assert _loop_of(args) is None
        assert f"--loop {loop} needs {loop}: pip install" in capsys.readouterr().err
