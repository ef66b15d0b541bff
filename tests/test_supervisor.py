from __future__ import annotations

import functools
import itertools
from typing import Any, ClassVar

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from structlog.testing import capture_logs

import foxactors as fa

from .helpers import Crash, Gate, Recorder, tree, worker

pytestmark = pytest.mark.anyio

PERMANENT, TRANSIENT, TEMPORARY = fa.Restart.PERMANENT, fa.Restart.TRANSIENT, fa.Restart.TEMPORARY


def state(ref: fa.ActorRef[Any]) -> fa.ActorState:
    """Read the state through a call, so that type narrowing does not stick."""
    return ref.state


async def crash(system: fa.ActorSystem, path: str, message: str = "crash") -> None:
    await system.ref(path).tell(message)
    await wait_all_tasks_blocked()


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [
        ("one_for_one", ["b"]),
        ("one_for_all", ["a", "b", "c"]),
        ("rest_for_one", ["b", "c"]),
    ],
)
async def test_strategy_picks_the_children_to_restart(strategy: str, restarted: list[str]) -> None:
    rec = Recorder()
    children = [worker(n, rec) for n in "abc"]
    async with fa.open_system(tree(children, strategy=strategy)) as system:
        refs = [system.ref(n) for n in "abc"]
        rec.events.clear()
        await crash(system, "b")
        assert [system.ref(n) for n in "abc"] == refs  # same refs after the restart
    stopped_by_cascade = [e[1] for e in rec.events if e[0] == "stop" and e[2] == "shutdown"]
    starts = rec.of("start")
    assert starts == restarted
    # Siblings are stopped in reverse start order before the group restarts.
    others = [n for n in reversed(restarted) if n != "b"]
    assert stopped_by_cascade[: len(others)] == others


async def test_restart_types() -> None:
    rec = Recorder()
    children = [
        worker("perm", rec, PERMANENT),
        worker("trans", rec, TRANSIENT),
        worker("temp", rec, TEMPORARY),
    ]
    async with fa.open_system(tree(children)) as system:
        await crash(system, "perm", "exit")  # permanent: restarted even after a normal exit
        await crash(system, "trans", "crash")  # transient: restarted after a crash...
        await crash(system, "trans", "exit")  # ...but not after a normal exit
        await crash(system, "temp", "crash")  # temporary: never
        names = [s.path for s in system.snapshot().walk()]
    assert rec.count("start", "perm") == 2
    assert rec.count("start", "trans") == 2
    assert rec.count("start", "temp") == 1
    assert names == ["/app", "/app/perm"]


async def test_temporary_siblings_are_not_restarted_by_a_cascade() -> None:
    rec = Recorder()
    children = [worker("a", rec), worker("temp", rec, TEMPORARY), worker("b", rec, TRANSIENT)]
    async with fa.open_system(tree(children, strategy="one_for_all")) as system:
        await crash(system, "a")
        names = [s.path for s in system.snapshot().walk()]
    assert names == ["/app", "/app/a", "/app/b"]
    assert rec.count("start", "temp") == 1
    assert rec.count("start", "b") == 2  # transient siblings are restarted


async def test_intensity_escalates_exactly_when_exceeded() -> None:
    rec = Recorder()
    spec = tree([worker("w", rec)], max_restarts=2, within=10)
    with pytest.raises(  # noqa: PT012 - the escalation has to happen inside the block
        fa.RestartIntensityExceeded, match="more than 2 restarts within 10"
    ) as info:
        async with fa.open_system(spec) as system:
            await crash(system, "w")
            await crash(system, "w")
            assert rec.count("start", "w") == 3
            await crash(system, "w")  # the third restart in the window: give up
            pytest.fail("the body should have been cancelled")  # pragma: no cover
    assert isinstance(info.value.__cause__, Crash)
    assert rec.count("start", "w") == 3
    assert rec.events[-2:] == [("crash", "w", "crash"), ("stop", "w", "crashed")]


async def test_restarts_outside_the_window_do_not_count() -> None:
    rec = Recorder()
    async with fa.open_system(tree([worker("w", rec)], max_restarts=1, within=5)) as system:
        for _ in range(4):
            await crash(system, "w")
            await anyio.sleep(5.5)
        assert system.root.state is fa.ActorState.RUNNING
    assert rec.count("start", "w") == 5


async def test_one_for_all_cascade_counts_as_one_restart() -> None:
    rec = Recorder()
    children = [worker(n, rec) for n in "abcd"]
    async with fa.open_system(tree(children, strategy="one_for_all", max_restarts=1)) as system:
        await crash(system, "c")  # restarts four children: still one restart
        assert system.root.state is fa.ActorState.RUNNING
    assert rec.count("start", "a") == 2


async def test_a_supervisor_that_gives_up_is_one_failure_of_its_parent() -> None:
    rec = Recorder()
    inner = fa.Supervisor.spec(
        "inner", [worker("w", rec), worker("x", rec)], max_restarts=0, backoff=fa.Backoff.none()
    )
    async with fa.open_system(tree([inner, worker("sibling", rec)], max_restarts=1)) as system:
        w = system.ref("inner/w")
        with capture_logs() as logs:
            await crash(system, "inner/w")
        # inner gave up: stopped its children (reverse order), failed, and was
        # restarted by the root; its children restarted on the same references.
        assert system.ref("inner/w") is w
        snap = system.snapshot()
        assert snap.find("/app/inner").restarts == 1  # type: ignore[union-attr]
        assert snap.find("/app/sibling").restarts == 0  # type: ignore[union-attr]
        assert rec.count("start", "w") == 2
        assert rec.count("start", "x") == 2
        assert await w.ask("ping") == "ping"
    events = [(e["event"], e.get("actor")) for e in logs]
    assert ("supervisor.gave_up", "/app/inner") in events
    assert ("actor.crashed", "/app/inner") in events
    stops = [e for e in rec.events if e[0] == "stop"]
    # w ended by its crash; x was then stopped when inner gave up.
    assert stops[:2] == [("stop", "w", "crashed"), ("stop", "x", "shutdown")]


async def test_backoff_delays_grow_cap_and_reset_in_virtual_time() -> None:
    send, starts = anyio.create_memory_object_stream[float](10)

    class Timed(fa.Actor[Any]):
        async def on_start(self) -> None:
            send.send_nowait(anyio.current_time())

        async def receive(self, message: Any) -> None:
            raise Crash(message)

    backoff = fa.Backoff(min_delay=1, max_delay=4, random_factor=0, reset_after=30)
    spec = fa.ChildSpec("t", Timed, backoff=backoff)
    times: list[float] = []
    async with send, starts, fa.open_system(tree([spec], max_restarts=100, within=1)) as system:
        ref = system.ref("t")
        times.append(await starts.receive())
        for _ in range(5):
            await ref.tell("crash")
            await wait_all_tasks_blocked()
            assert ref.state is fa.ActorState.RESTARTING  # waiting out its delay...
            await ref.tell("queued")  # ...while its mailbox still takes messages
            times.append(await starts.receive())
            await wait_all_tasks_blocked()  # the restarted actor crashes on "queued"
            times.append(await starts.receive())
        await anyio.sleep(40)  # stay up longer than reset_after
        await ref.tell("crash")
        times.append(await starts.receive())
    gaps = [round(b - a) for a, b in itertools.pairwise(times)]
    assert gaps[:10] == [1, 2, 4, 4, 4, 4, 4, 4, 4, 4]
    assert gaps[-1] == 40 + 1  # back to the first delay after a stable period


def test_backoff_is_a_pure_function() -> None:
    b = fa.Backoff(min_delay=0.5, max_delay=8, random_factor=0.5, reset_after=10)
    assert [b.delay(n, 0.0) for n in range(6)] == [0.5, 1, 2, 4, 8, 8]
    assert b.delay(1, 0.5) == 1.25
    assert b.delay(10, 0.99) == 8  # jitter never exceeds the cap
    assert b.delay(10_000, 0.5) == 8
    assert b.next_attempt(3, uptime=9.9) == 4
    assert b.next_attempt(3, uptime=10) == 0
    assert fa.Backoff.none().delay(7, 0.9) == 0


def test_intensity_is_a_pure_function() -> None:
    i = fa.RestartIntensity(max_restarts=2, within=5)
    ok, h = i.admit((), 0)
    assert ok
    ok, h = i.admit(h, 1)
    assert ok
    ok, _h3 = i.admit(h, 2)
    assert not ok
    ok, h = i.admit(h, 5)  # the restart at 0 is still in [0, 5]
    assert not ok
    ok, h = i.admit((1.0, 2.0), 6.5)
    assert ok
    assert h == (2.0, 6.5)
    assert fa.RestartIntensity(0, 5).admit((), 0)[0] is False


async def test_dynamic_children() -> None:
    rec = Recorder()
    async with fa.open_system(tree([worker("static", rec)], max_children=2)) as system:
        ref = await fa.start_child(system.root, worker("dyn", rec))
        assert ref.path == "/app/dyn"
        assert await ref.ask("hi") == "hi"
        with pytest.raises(fa.SupervisionError, match="max_children=2"):
            await fa.start_child(system.root, worker("third", rec))
        with pytest.raises(fa.ConfigurationError, match="already has a child 'dyn'"):
            await fa.start_child(system.root, worker("dyn", rec))
        await fa.stop_child(system.root, "dyn")
        assert ref.state is fa.ActorState.STOPPED
        with pytest.raises(fa.SupervisionError, match="no child 'dyn'"):
            await fa.stop_child(system.root, "dyn")
        ref2 = await fa.start_child(system.root, worker("dyn", rec))
        assert ref2 is not ref
        assert system.root.state is fa.ActorState.RUNNING  # refusals did not crash it


class FailingStart(fa.Actor[Any]):
    async def on_start(self) -> None:
        raise Crash("cannot start")

    async def receive(self, message: Any) -> None:
        pass


async def test_dynamic_child_that_fails_to_start_is_not_kept() -> None:
    async with fa.open_system(tree([])) as system:
        with pytest.raises(fa.StartError, match="/app/bad failed to start: Crash: cannot start"):
            await fa.start_child(system.root, fa.ChildSpec("bad", FailingStart))
        assert [s.path for s in system.snapshot().walk()] == ["/app"]


async def test_a_failing_start_stops_started_children_in_reverse_and_fails_the_tree() -> None:
    rec = Recorder()
    children = [
        worker("a", rec),
        worker("b", rec),
        fa.ChildSpec("bad", FailingStart),
        worker("never", rec),
    ]
    with pytest.raises(fa.StartError, match="child /app/bad failed to start") as info:
        async with fa.open_system(tree(children)):
            pytest.fail("the tree must not start")  # pragma: no cover
    assert isinstance(info.value.__cause__, Crash)
    assert rec.events == [
        ("start", "a"),
        ("start", "b"),
        ("stop", "b", "shutdown"),
        ("stop", "a", "shutdown"),
    ]


async def test_start_order_and_reverse_shutdown_order_across_levels() -> None:
    rec = Recorder()
    inner = fa.Supervisor.spec("inner", [worker("i1", rec), worker("i2", rec)])
    async with fa.open_system(tree([worker("a", rec), inner, worker("z", rec)])):
        assert rec.of("start") == ["a", "i1", "i2", "z"]
    assert rec.of("stop") == ["z", "i2", "i1", "a"]


class Slow(fa.Actor[Any]):
    async def receive(self, message: Any) -> None:
        pass

    async def on_stop(self, exit: fa.Exit) -> None:
        await anyio.sleep(100)


async def test_shutdown_timeout_then_cancel() -> None:
    rec = Recorder()
    children = [worker("a", rec), fa.ChildSpec("slow", Slow, shutdown=3)]
    async with fa.open_system(tree(children)):
        began = anyio.current_time()
    assert 3 <= anyio.current_time() - began < 4
    assert rec.of("stop") == ["a"]  # the next child was still stopped


@pytest.mark.parametrize("mode", ["any_significant", "all_significant"])
async def test_significant_children_shut_their_supervisor_down(mode: str) -> None:
    rec = Recorder()
    job = fa.Supervisor.spec(
        "job",
        [
            worker("s1", rec, TRANSIENT, significant=True),
            worker("s2", rec, TEMPORARY, significant=True),
            worker("helper", rec),
        ],
        auto_shutdown=mode,
        restart="transient",
    )
    async with fa.open_system(tree([job, worker("other", rec)])) as system:
        job_ref = system.ref("job")
        await crash(system, "job/s1", "crash")  # a crash is not the end of a transient child
        assert state(job_ref) is fa.ActorState.RUNNING
        await crash(system, "job/s1", "exit")
        if mode == "all_significant":
            assert state(job_ref) is fa.ActorState.RUNNING
            await crash(system, "job/s2", "exit")
        assert state(job_ref) is fa.ActorState.STOPPED
        assert (await job_ref.wait_stopped()).kind is fa.ExitKind.NORMAL
        assert system.ref("other").state is fa.ActorState.RUNNING
    assert rec.count("stop", "helper") == 1


def test_invalid_specs_are_refused_with_clear_errors() -> None:
    rec = Recorder()
    with pytest.raises(fa.ConfigurationError, match="duplicate child id 'a'"):
        fa.Supervisor([worker("a", rec), worker("a", rec)])
    with pytest.raises(fa.ConfigurationError, match="max_restarts must be >= 0, got -1"):
        fa.Supervisor.spec("s", max_restarts=-1)
    with pytest.raises(fa.ConfigurationError, match="within must be a finite number"):
        fa.Supervisor.spec("s", within=-2)
    with pytest.raises(fa.ConfigurationError, match="child 'x': factory must be a callable"):
        fa.ChildSpec("x", "not callable")  # type: ignore[arg-type]
    with pytest.raises(fa.ConfigurationError, match="child 'x': restart must be one of"):
        fa.ChildSpec("x", fa.Actor, restart="sometimes")
    with pytest.raises(fa.ConfigurationError, match="strategy must be one of"):
        fa.Supervisor(strategy="all_for_none")
    with pytest.raises(fa.ConfigurationError, match="permanent child cannot be significant"):
        fa.ChildSpec("x", fa.Actor, significant=True)
    with pytest.raises(fa.ConfigurationError, match="auto_shutdown is 'never'"):
        fa.Supervisor([worker("x", rec, TRANSIENT, significant=True)])
    with pytest.raises(fa.ConfigurationError, match="child id must be"):
        fa.ChildSpec("a/b", fa.Actor)
    with pytest.raises(fa.ConfigurationError, match="mailbox_size must be an int >= 1"):
        fa.ChildSpec("x", fa.Actor, mailbox_size=0)
    with pytest.raises(fa.ConfigurationError, match="shutdown must be seconds"):
        fa.ChildSpec("x", fa.Actor, shutdown=-1)
    with pytest.raises(fa.ConfigurationError, match=r"max_delay \(1\) must be >= min_delay"):
        fa.Backoff(min_delay=2, max_delay=1)
    with pytest.raises(fa.ConfigurationError, match="max_children=1"):
        fa.Supervisor([worker("a", rec), worker("b", rec)], max_children=1)
    with pytest.raises(fa.ConfigurationError, match="the root must be a ChildSpec"):
        fa.ActorSystem("app")  # type: ignore[arg-type]


async def test_a_factory_that_returns_no_actor_fails_the_start() -> None:
    spec = fa.ChildSpec("x", lambda: "nope")  # type: ignore[arg-type,return-value]
    with pytest.raises(fa.StartError, match="returned 'nope', which is not an Actor"):
        async with fa.open_system(tree([spec])):
            pass  # pragma: no cover


async def test_unexpected_messages_to_a_supervisor_are_logged_not_fatal() -> None:
    async with fa.open_system(tree([])) as system:
        with capture_logs() as logs:
            assert await system.root.ask("what?") is None
        assert system.root.state is fa.ActorState.RUNNING
    assert logs[0]["event"] == "supervisor.unexpected_message"


class Together(fa.Actor[Any]):
    """Waits on a shared event, then crashes: siblings crash in the same turn."""

    def __init__(self, go: anyio.Event, rec: Recorder, name: str) -> None:
        self.go = go
        rec.add("start", name)

    async def receive(self, message: Any) -> None:
        await self.go.wait()
        raise Crash(message)


async def test_an_exit_notice_of_a_child_stopped_by_a_cascade_is_not_counted() -> None:
    rec = Recorder()
    go = anyio.Event()
    delay = fa.Backoff(min_delay=1, random_factor=0)
    children = [
        fa.ChildSpec(n, functools.partial(Together, go, rec, n), backoff=delay) for n in "ab"
    ]
    spec = tree(children, strategy="one_for_all", max_restarts=1)
    async with fa.open_system(spec) as system:
        for name in "ab":
            await system.ref(name).tell("crash")
        await wait_all_tasks_blocked()
        go.set()  # both crash before their supervisor hears of either
        await wait_all_tasks_blocked()
        await anyio.sleep(1.5)  # the restart delay, in virtual time
        # One cascade, one restart: b's own exit notice was flushed with it.
        assert system.root.state is fa.ActorState.RUNNING
    assert rec.count("start", "a") == rec.count("start", "b") == 2


class SlowToCrash(fa.Actor[Any]):
    """Crashes on any message, and finishes crashing only once ``go`` is set."""

    def __init__(self, go: anyio.Event, rec: Recorder, name: str) -> None:
        self.go, self.rec, self.name = go, rec, name

    async def on_start(self) -> None:
        self.rec.add("start", self.name)

    async def receive(self, message: Any) -> None:
        raise Crash(message)

    async def on_crash(self, message: Any, error: Exception) -> None:
        await self.go.wait()


async def test_a_stop_request_to_a_life_that_crashed_meanwhile_does_not_stop_the_next() -> None:
    rec = Recorder()
    go = anyio.Event()
    children = [
        worker("a", rec),
        fa.ChildSpec(
            "b",
            functools.partial(SlowToCrash, go, rec, "b"),
            backoff=fa.Backoff.none(),
            shutdown=None,
        ),
    ]
    async with fa.open_system(tree(children, strategy="rest_for_one")) as system:
        await crash(system, "b")  # b is crashing (its on_crash waits)...
        await crash(system, "a")  # ...when a's crash makes the supervisor stop b
        go.set()  # b's old life ends by its crash, the stop request unread
        await wait_all_tasks_blocked()
        # The group restarted once; the request was for b's old life, not its new one.
        assert rec.count("start", "a") == rec.count("start", "b") == 2
        assert state(system.ref("b")) is fa.ActorState.RUNNING


class Unreachable(fa.Actor[Any]):
    """Crashes on "lost" or "bug"; its second start fails (a broker that refuses)."""

    starts: ClassVar[int] = 0

    async def on_start(self) -> None:
        Unreachable.starts += 1
        if Unreachable.starts == 2:
            raise fa.BackendError("cannot connect to the broker: connection refused")

    async def receive(self, message: Any) -> None:
        if message == "lost":
            raise fa.BackendError("lost the connection")
        raise Crash("a bug")


async def test_backend_errors_are_logged_in_one_line_bugs_with_their_traceback() -> None:
    Unreachable.starts = 0
    spec = fa.ChildSpec("broker", Unreachable, backoff=fa.Backoff.none())
    with capture_logs() as logs:
        async with fa.open_system(tree([worker("a", Recorder()), spec])) as system:
            await crash(system, "broker", "lost")
            await crash(system, "broker", "bug")
    failures = [
        (e["event"], e["error"].split(":")[0], e.get("exc_info") is not None)
        for e in logs
        if e["event"] in ("actor.start_failed", "actor.crashed")
    ]
    assert failures == [
        ("actor.crashed", "BackendError", False),  # the message says it all
        ("actor.start_failed", "BackendError", False),
        ("actor.crashed", "Crash", True),  # may be a bug: with its traceback
    ]


class Stubborn(fa.Actor[Any]):
    """Ignores its stop: hangs in a handler or in ``on_stop`` until it is cancelled."""

    def __init__(self, hangs_in: str) -> None:
        self.hangs_in = hangs_in

    async def on_start(self) -> None:
        if self.hangs_in == "receive":
            self.ref.tell_nowait("hang")

    async def receive(self, message: Any) -> None:
        await anyio.sleep_forever()

    async def on_stop(self, exit: fa.Exit) -> None:
        if self.hangs_in == "on_stop":
            await anyio.sleep_forever()


class Notices(fa.Actor[Any]):
    """Watches the refs it is sent; records how each watched actor ended."""

    def __init__(self, notices: dict[str, fa.ExitKind]) -> None:
        self.notices = notices

    async def receive(self, message: Any) -> None:
        if isinstance(message, fa.ActorRef):
            self.watch(message)
        elif isinstance(message, fa.Terminated):
            self.notices[message.ref.name] = message.exit.kind


KILLED, SHUTDOWN = fa.ExitKind.KILLED, fa.ExitKind.SHUTDOWN


@pytest.mark.parametrize("hangs_in", ["receive", "on_stop"])
async def test_a_child_cancelled_after_its_shutdown_timeout_ends_killed(hangs_in: str) -> None:
    notices: dict[str, fa.ExitKind] = {}
    children = [
        fa.ChildSpec("notices", lambda: Notices(notices)),  # stopped last: hears both
        worker("prompt", Recorder()),
        fa.ChildSpec("stubborn", functools.partial(Stubborn, hangs_in), shutdown=1),
    ]
    with capture_logs() as logs:
        async with fa.open_system(tree(children)) as system:
            stubborn, prompt = system.ref("stubborn"), system.ref("prompt")
            await system.ref("notices").tell(stubborn)
            await system.ref("notices").tell(prompt)
            await wait_all_tasks_blocked()
    assert (await stubborn.wait_stopped()).kind is KILLED
    assert (await prompt.wait_stopped()).kind is SHUTDOWN
    assert notices == {"stubborn": KILLED, "prompt": SHUTDOWN}
    killed = [e for e in logs if e["event"] == "actor.killed"]
    assert [(e["actor"], e["reason"]) for e in killed] == [
        ("/app/stubborn", "did not stop within its shutdown timeout")
    ]


@pytest.mark.parametrize("hangs_in", ["receive", "on_stop"])
async def test_stop_child_reports_a_child_cancelled_after_its_timeout_as_killed(
    hangs_in: str,
) -> None:
    notices: dict[str, fa.ExitKind] = {}
    async with fa.open_system(tree([fa.ChildSpec("notices", lambda: Notices(notices))])) as system:
        spec = fa.ChildSpec("stubborn", functools.partial(Stubborn, hangs_in), shutdown=1)
        stubborn = await fa.start_child(system.root, spec)
        prompt = await fa.start_child(system.root, worker("prompt", Recorder()))
        await system.ref("notices").tell(stubborn)
        await system.ref("notices").tell(prompt)
        await wait_all_tasks_blocked()
        began = anyio.current_time()
        await fa.stop_child(system.root, "stubborn")
        assert 1 <= anyio.current_time() - began < 2  # its timeout, then cancelled
        await fa.stop_child(system.root, "prompt")
        assert (await stubborn.wait_stopped()).kind is KILLED
        assert (await prompt.wait_stopped()).kind is SHUTDOWN
        await wait_all_tasks_blocked()
        assert notices == {"stubborn": KILLED, "prompt": SHUTDOWN}


@pytest.mark.parametrize("hangs_in", ["receive", "on_stop"])
async def test_a_temporary_sibling_cancelled_in_a_cascade_ends_killed(hangs_in: str) -> None:
    children = [
        worker("a", Recorder()),
        fa.ChildSpec(
            "stubborn", functools.partial(Stubborn, hangs_in), restart=TEMPORARY, shutdown=1
        ),
        worker("prompt", Recorder(), TEMPORARY),
    ]
    async with fa.open_system(tree(children, strategy="one_for_all")) as system:
        stubborn, prompt = system.ref("stubborn"), system.ref("prompt")
        await crash(system, "a")  # the group stops; temporary siblings end for good
        assert (await stubborn.wait_stopped()).kind is KILLED
        assert (await prompt.wait_stopped()).kind is SHUTDOWN


def _worker_spec(name: str, **options: Any) -> fa.ChildSpec:
    return worker(name, Recorder(), **options)


@pytest.mark.parametrize(
    ("build", "says"),
    [
        pytest.param(
            lambda: fa.Supervisor.spec("pool", strategy="all_for_none"),
            "supervisor 'pool': strategy must be one of 'one_for_one', 'one_for_all', "
            "'rest_for_one'",
            id="strategy",
        ),
        pytest.param(
            lambda: fa.Supervisor.spec("pool", max_restarts=-1),
            "supervisor 'pool': max_restarts must be >= 0, got -1; use 0 to allow no restart",
            id="negative-max-restarts",
        ),
        pytest.param(
            lambda: fa.Supervisor.spec("pool", max_restarts=2.5),  # type: ignore[arg-type]
            "supervisor 'pool': max_restarts must be an int >= 0",
            id="max-restarts-not-int",
        ),
        pytest.param(
            lambda: fa.Supervisor.spec("pool", within=-2),
            "supervisor 'pool': within must be a finite number >= 0, got -2",
            id="within",
        ),
        pytest.param(
            lambda: fa.Supervisor.spec("pool", auto_shutdown="sometimes"),
            "supervisor 'pool': auto_shutdown must be one of 'never', 'any_significant'",
            id="auto-shutdown",
        ),
        pytest.param(
            lambda: fa.Supervisor.spec("pool", ["worker"]),  # type: ignore[list-item]
            "supervisor 'pool': children must be ChildSpec instances, got 'worker'; build "
            "each with ChildSpec(id, factory) or Supervisor.spec(id, [...])",
            id="not-a-child-spec",
        ),
        pytest.param(
            lambda: fa.Supervisor.spec("pool", [_worker_spec("a"), _worker_spec("a")]),
            "supervisor 'pool': duplicate child id 'a': ids must be unique among siblings",
            id="duplicate-id",
        ),
        pytest.param(
            lambda: fa.Supervisor.spec(
                "pool", [_worker_spec("x", restart=TRANSIENT, significant=True)]
            ),
            "supervisor 'pool': child 'x' is significant but auto_shutdown is 'never'; set "
            "auto_shutdown='any_significant' or 'all_significant', or drop the flag",
            id="significant-under-never",
        ),
        pytest.param(
            lambda: fa.Supervisor.spec("pool", max_children=0),
            "supervisor 'pool': max_children must be an int >= 1 or None, got 0",
            id="max-children",
        ),
        pytest.param(
            lambda: fa.Supervisor.spec(
                "pool", [_worker_spec("a"), _worker_spec("b")], max_children=1
            ),
            "supervisor 'pool': 2 static children exceed max_children=1; raise max_children "
            "to at least 2",
            id="too-many-children",
        ),
        pytest.param(
            lambda: fa.Supervisor.spec("pool", shutdown=-1),
            "child 'pool': shutdown must be seconds >= 0 or None (wait for ever), got -1",
            id="supervisor-shutdown",
        ),
        pytest.param(
            lambda: fa.Supervisor.spec("pool", restart="sometimes"),
            "child 'pool': restart must be one of 'permanent', 'transient', 'temporary'",
            id="supervisor-restart",
        ),
        pytest.param(
            lambda: fa.Supervisor.spec("pool", mailbox_size=0),
            "child 'pool': mailbox_size must be an int >= 1, got 0",
            id="supervisor-mailbox-size",
        ),
        pytest.param(
            lambda: fa.Supervisor.spec("pool", significant=True),
            "child 'pool': a permanent child cannot be significant (it is always restarted); "
            "make it transient or temporary",
            id="supervisor-significant",
        ),
        pytest.param(
            lambda: fa.Supervisor.spec("pool", backoff=0.5),  # type: ignore[arg-type]
            "child 'pool': backoff must be a Backoff, such as Backoff(min_delay=0.5) or "
            "Backoff.none(), got 0.5",
            id="supervisor-backoff",
        ),
        pytest.param(
            lambda: fa.Supervisor.spec("a/b"),
            "child id must be a non-empty string without '/' or surrounding spaces, got 'a/b'",
            id="supervisor-id",
        ),
        pytest.param(
            lambda: fa.ChildSpec("x", "not callable"),  # type: ignore[arg-type]
            "child 'x': factory must be a callable returning an Actor (for example the Actor "
            "subclass itself, or functools.partial(MyActor, arg)), got 'not callable'",
            id="factory",
        ),
    ],
)
def test_configuration_errors_name_the_supervisor_or_child_and_the_fix(
    build: Any, says: str
) -> None:
    with pytest.raises(fa.ConfigurationError) as refused:
        build()
    assert says in str(refused.value)


async def test_start_child_refusals_name_the_supervisor_and_the_fix() -> None:
    async with fa.open_system(tree([_worker_spec("a")])) as system:
        with pytest.raises(fa.ConfigurationError) as refused:
            await fa.start_child(system.root, "a spec")  # type: ignore[arg-type]
        assert str(refused.value) == (
            "/app: start_child needs a ChildSpec, got 'a spec'; build one with "
            "ChildSpec(id, factory) or Supervisor.spec(id, [...])"
        )
        significant = _worker_spec("s", restart=TRANSIENT, significant=True)
        with pytest.raises(fa.ConfigurationError) as refused:
            await fa.start_child(system.root, significant)
        assert str(refused.value) == (
            "child 's' is significant but /app has auto_shutdown 'never'; give /app "
            "auto_shutdown='any_significant' or 'all_significant', or drop the flag"
        )
        with pytest.raises(fa.ConfigurationError) as refused:
            await fa.start_child(system.root, _worker_spec("a"))
        assert str(refused.value) == "/app already has a child 'a'; pick another id"
        assert system.root.state is fa.ActorState.RUNNING


class Maintainer(fa.Supervisor):
    """A supervisor subclass using the hooks for subclasses: child_refs, recycle_child."""

    async def receive(self, message: Any) -> Any:
        if message == "children":
            return [ref.path for ref in self.child_refs()]
        if isinstance(message, tuple):
            try:
                return await self.recycle_child(message[1])
            except fa.SupervisionError as exc:
                return str(exc)
        return await super().receive(message)


async def test_a_subclass_lists_its_children_and_recycles_one() -> None:
    rec = Recorder()
    gate = anyio.Event()
    seen: list[Any] = []
    children = [worker("a", rec), fa.ChildSpec("g", lambda: Gate(lambda: gate, seen))]
    # No restart allowed at all: recycling is not a restart for the intensity.
    spec = fa.ChildSpec("app", lambda: Maintainer(children, max_restarts=0))
    async with fa.open_system(spec) as system:
        a = system.ref("a")
        assert await system.root.ask("children") == ["/app/a", "/app/g"]
        await a.tell("queued")  # the old instance handles it before it goes
        assert await system.root.ask(("recycle", "a")) is True
        assert await system.root.ask(("recycle", "a")) is True
        assert system.ref("a") is a
        assert rec.events == [
            ("start", "a"),
            ("got", "a", "queued"),
            ("stop", "a", "shutdown"),
            ("start", "a"),
            ("stop", "a", "shutdown"),
            ("start", "a"),
        ]
        snapshot = system.snapshot()
        assert [(s.path, s.restarts) for s in snapshot.children] == [("/app/a", 2), ("/app/g", 0)]
        assert snapshot.state is fa.ActorState.RUNNING
        assert await system.root.ask(("recycle", "nobody")) == "/app has no child 'nobody'"
        await system.ref("g").tell("held")  # in hand until the gate opens
        await wait_all_tasks_blocked()
        recycling = anyio.Event()

        async def recycle_g() -> None:
            await system.root.ask(("recycle", "g"))
            recycling.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(recycle_g)
            await wait_all_tasks_blocked()
            assert not recycling.is_set()  # waits for what the child holds
            gate.set()
        assert seen == ["held"]


class StartsOnce(fa.Actor[Any]):
    """Starts the first time, fails the second, starts again after."""

    starts = 0

    async def on_start(self) -> None:
        StartsOnce.starts += 1
        if StartsOnce.starts == 2:
            raise Crash("second start")

    async def receive(self, message: Any) -> Any:
        return message


async def test_a_recycled_child_that_fails_to_start_is_restarted_as_after_a_crash() -> None:
    StartsOnce.starts = 0
    child = fa.ChildSpec("w", StartsOnce, backoff=fa.Backoff.none())
    spec = fa.ChildSpec("app", lambda: Maintainer([child], max_restarts=1))
    with capture_logs() as logs:
        async with fa.open_system(spec) as system:
            assert await system.root.ask(("recycle", "w")) is False
            assert await system.ref("w").ask("back") == "back"
            assert StartsOnce.starts == 3
    events = [e["event"] for e in logs]
    assert events.count("actor.start_failed") == 1
    assert events.count("actor.restarting") == 1
