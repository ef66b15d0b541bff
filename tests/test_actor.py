from __future__ import annotations

import gc
import warnings
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint
from structlog.testing import capture_logs

import foxactors as fa

from .helpers import Crash, Gate, Recorder, tree, worker

pytestmark = pytest.mark.anyio


class Concurrency(fa.Actor[int]):
    """Yields inside each handler and records how many handlers overlap."""

    def __init__(self, seen: list[int], overlap: list[int]) -> None:
        self.seen = seen
        self.overlap = overlap
        self.active = 0

    async def receive(self, message: int) -> None:
        self.active += 1
        self.overlap.append(self.active)
        await checkpoint()
        self.seen.append(message)
        self.active -= 1


async def test_messages_are_handled_one_at_a_time_in_order() -> None:
    seen: list[int] = []
    overlap: list[int] = []
    spec = fa.ChildSpec("c", lambda: Concurrency(seen, overlap), mailbox_size=8)
    async with fa.open_system(tree([spec])) as system:
        ref = system.ref("c")
        for i in range(200):
            await ref.tell(i)
        await wait_all_tasks_blocked()
    assert seen == list(range(200))
    assert max(overlap) == 1


async def test_tell_waits_when_full_and_tell_nowait_says_so() -> None:
    gate = anyio.Event()
    seen: list[Any] = []
    spec = fa.ChildSpec("g", lambda: Gate(lambda: gate, seen), mailbox_size=2)
    async with fa.open_system(tree([spec])) as system:
        ref = system.ref("g")
        await ref.tell(0)  # taken by the handler, which waits on the gate
        await wait_all_tasks_blocked()
        ref.tell_nowait(1)
        ref.tell_nowait(2)
        with pytest.raises(fa.MailboxFull):
            ref.tell_nowait(3)
        sent = anyio.Event()

        async def blocked_sender() -> None:
            await ref.tell(3)
            sent.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocked_sender)
            await wait_all_tasks_blocked()
            assert not sent.is_set()
            assert ref.statistics().blocked_senders == 1
            gate.set()
        assert sent.is_set()
        await wait_all_tasks_blocked()
    assert seen == [0, 1, 2, 3]


class Replier(fa.Actor[Any]):
    async def receive(self, message: Any) -> Any:
        if message == "boom":
            raise Crash("boom")
        if message == "hang":
            await anyio.sleep_forever()
        return ("reply", message)


async def test_ask_replies_times_out_and_reports_crashes() -> None:
    spec = fa.ChildSpec("r", Replier, backoff=fa.Backoff.none(), shutdown=1)
    async with fa.open_system(tree([spec])) as system:
        ref = system.ref("r")
        assert await ref.ask(1) == ("reply", 1)
        with pytest.raises(fa.ActorCrashed, match="/app/r") as crashed:
            await ref.ask("boom")
        assert isinstance(crashed.value.__cause__, Crash)
        assert await ref.ask(2) == ("reply", 2)  # restarted, same ref
        with pytest.raises(fa.AskTimeout, match=r"/app/r within 0.5 s"):
            await ref.ask("hang", timeout=0.5)


async def test_ask_fails_instead_of_hanging_when_the_actor_stops() -> None:
    gate = anyio.Event()
    seen: list[Any] = []
    spec = fa.ChildSpec("g", lambda: Gate(lambda: gate, seen), shutdown=1)
    errors: list[BaseException] = []
    async with fa.open_system(tree([spec])) as system:
        ref = system.ref("g")

        async def asker(message: str) -> None:
            try:
                await ref.ask(message, timeout=None)
            except fa.ActorStopped as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(asker, "in-handler")
            await wait_all_tasks_blocked()
            tg.start_soon(asker, "queued")
            await wait_all_tasks_blocked()
            # The handler never finishes: shutdown times out, cancels it, and both
            # the request being handled and the queued one fail.
            await fa.stop_child(system.root, "g")
    assert len(errors) == 2
    with pytest.raises(fa.ActorStopped):
        await ref.ask("late")
    with pytest.raises(fa.ActorStopped):
        await ref.tell("late")


class Fragile(fa.Actor[int]):
    """Crashes on negative numbers; records its instance and what it handled."""

    instances = 0

    def __init__(self, seen: list[tuple[int, int]], lost: list[Any]) -> None:
        Fragile.instances += 1
        self.instance = Fragile.instances
        self.seen = seen
        self.lost = lost

    async def receive(self, message: int) -> None:
        if message < 0:
            raise Crash(message)
        self.seen.append((self.instance, message))

    async def on_crash(self, message: Any, error: Exception) -> None:
        self.lost.append(message)


async def test_mailbox_and_ref_survive_a_restart() -> None:
    Fragile.instances = 0
    seen: list[tuple[int, int]] = []
    lost: list[Any] = []
    spec = fa.ChildSpec("f", lambda: Fragile(seen, lost), backoff=fa.Backoff.none())
    async with fa.open_system(tree([spec])) as system:
        ref = system.ref("f")
        for message in (1, -1, 2, 3, -2, 4):
            ref.tell_nowait(message)  # all queued before the actor runs
        await wait_all_tasks_blocked()
        assert system.ref("f") is ref
        assert system.snapshot().find("/app/f").restarts == 2  # type: ignore[union-attr]
    assert seen == [(1, 1), (2, 2), (2, 3), (3, 4)]
    assert lost == [-1, -2]


async def test_paths_and_lookup() -> None:
    rec = Recorder()
    pool = tree([worker("worker-3", rec)], name="pool")
    async with fa.open_system(tree([pool])) as system:
        ref = system.ref("/app/pool/worker-3")
        assert ref.path == "/app/pool/worker-3"
        assert ref.name == "worker-3"
        assert system.ref("pool/worker-3") is ref
        assert system.root.path == "/app"
        with pytest.raises(fa.ActorNotFound, match="has no child 'worker-4'"):
            system.ref("pool/worker-4")
        with pytest.raises(fa.ActorNotFound, match="the root is '/app'"):
            system.ref("/other/pool")


class Watcher(fa.Actor[Any]):
    def __init__(self, notices: list[fa.Terminated], got: anyio.Event) -> None:
        self.notices = notices
        self.got = got

    async def receive(self, message: Any) -> None:
        if isinstance(message, fa.ActorRef):
            self.watch(message)
        elif isinstance(message, fa.Terminated):
            self.notices.append(message)
            self.got.set()


async def test_death_watch_reports_final_stop_not_restarts() -> None:
    rec = Recorder()
    notices: list[fa.Terminated] = []
    got = anyio.Event()
    children = [
        worker("w", rec, restart=fa.Restart.TRANSIENT),
        fa.ChildSpec("watcher", lambda: Watcher(notices, got)),
    ]
    async with fa.open_system(tree(children)) as system:
        target = system.ref("w")
        await system.ref("watcher").tell(target)
        await target.tell("crash")  # restarted: no notice
        await wait_all_tasks_blocked()
        assert notices == []
        await target.tell("exit")  # transient + normal exit: stopped for good
        await got.wait()
        assert await target.wait_stopped() == fa.Exit(fa.ExitKind.NORMAL)
        # Watching an actor that is already dead answers at once.
        await system.ref("watcher").tell(target)
        await wait_all_tasks_blocked()
    assert [n.ref for n in notices] == [target, target]
    assert notices[0].exit.kind is fa.ExitKind.NORMAL
    assert rec.count("start", "w") == 2


async def test_graceful_stop_drains_the_mailbox() -> None:
    rec = Recorder()
    async with fa.open_system(tree([worker("w", rec)])) as system:
        ref = system.ref("w")
        for i in range(5):
            ref.tell_nowait(i)
    assert rec.of("got") == ["w"] * 5
    assert rec.events[-1] == ("stop", "w", "shutdown")
    assert ref.state is fa.ActorState.STOPPED


class Keeper(fa.Actor[Any]):
    def __init__(self, undelivered: list[Any]) -> None:
        self.undelivered = undelivered

    async def receive(self, message: Any) -> None:
        await anyio.sleep_forever()

    def on_undelivered(self, message: Any) -> None:
        self.undelivered.append(message)


async def test_stop_rejects_what_it_could_not_drain_explicitly() -> None:
    undelivered: list[Any] = []
    spec = fa.ChildSpec("k", lambda: Keeper(undelivered), shutdown=2)
    with capture_logs() as logs:
        async with fa.open_system(tree([spec])) as system:
            ref = system.ref("k")
            for i in range(4):
                ref.tell_nowait(i)
            await wait_all_tasks_blocked()
            started = anyio.current_time()
        stopped = anyio.current_time()
    assert undelivered == [1, 2, 3]  # 0 was being handled when it was killed
    assert 2 <= stopped - started < 3  # the shutdown timeout, then cancelled
    events = {e["event"]: e for e in logs}
    assert events["actor.killed"]["actor"] == "/app/k"
    assert events["actor.killed"]["reason"] == "did not stop within its shutdown timeout"
    assert events["actor.undelivered"]["count"] == 3


class Background(fa.Actor[Any]):
    def __init__(self, rec: Recorder, fail: anyio.Event) -> None:
        self.rec = rec
        self.fail = fail

    async def on_start(self) -> None:
        self.start_task(self.ticker)

    async def ticker(self) -> None:
        self.rec.add("task", "running")
        await self.fail.wait()
        raise Crash("task")

    async def receive(self, message: Any) -> None:
        pass

    async def on_crash(self, message: Any, error: Exception) -> None:
        self.rec.add("crash", str(error), str(message))


async def test_a_failing_background_task_crashes_its_actor() -> None:
    rec = Recorder()
    fail = anyio.Event()
    spec = fa.ChildSpec("b", lambda: Background(rec, fail), backoff=fa.Backoff.none())
    async with fa.open_system(tree([spec])) as system:
        await wait_all_tasks_blocked()
        assert rec.of("task") == ["running"]
        fail.set()
        fail = anyio.Event()
        await wait_all_tasks_blocked()
        assert rec.of("crash") == ["task"]
        assert rec.of("task") == ["running", "running"]  # restarted with its task
        assert system.ref("b").state is fa.ActorState.RUNNING


class BadStop(fa.Actor[Any]):
    async def receive(self, message: Any) -> None:
        pass

    async def on_stop(self, exit: fa.Exit) -> None:
        raise Crash("stop hook")


async def test_a_failing_stop_hook_is_logged_and_shutdown_goes_on() -> None:
    rec = Recorder()
    children = [worker("first", rec), fa.ChildSpec("bad", BadStop), worker("last", rec)]
    with capture_logs() as logs:
        async with fa.open_system(tree(children)):
            pass
    assert rec.of("stop") == ["last", "first"]
    failed = [e for e in logs if e["event"] == "actor.on_stop_failed"]
    assert [e["actor"] for e in failed] == ["/app/bad"]


async def test_start_task_outside_a_running_actor_is_an_error() -> None:
    actor = Background(Recorder(), anyio.Event())
    with pytest.raises(AttributeError):
        actor.start_task(actor.ticker)
    async with fa.open_system(tree([worker("w", Recorder())])) as system:
        ref = system.ref("w")
    instance = ref._cell.instance  # type: ignore[attr-defined]  # the Cell behind the Host
    assert instance is not None
    with pytest.raises(fa.ActorError, match="needs a running actor"):
        instance.start_task(checkpoint)


async def test_receive_must_be_overridden() -> None:
    spec = fa.ChildSpec("plain", fa.Actor, backoff=fa.Backoff.none())
    async with fa.open_system(tree([spec])) as system:
        with pytest.raises(fa.ActorCrashed, match="must override receive"):
            await system.ref("plain").ask("hello")


class FailsWhileStopping(fa.Actor[Any]):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.fail = anyio.Event()

    async def on_start(self) -> None:
        self.start_task(self.task)

    async def task(self) -> None:
        await self.fail.wait()
        raise Crash("late")

    async def receive(self, message: Any) -> None:
        pass

    async def on_stop(self, exit: fa.Exit) -> None:
        self.rec.add("stop", exit.kind.value)
        self.fail.set()
        await anyio.sleep(1)  # the task fails meanwhile and cancels this wait


async def test_a_task_failing_during_on_stop_does_not_run_the_hooks_twice() -> None:
    rec = Recorder()
    with capture_logs() as logs:
        async with fa.open_system(tree([fa.ChildSpec("f", lambda: FailsWhileStopping(rec))])):
            pass
    assert rec.events == [("stop", "shutdown")]
    failed = [e for e in logs if e["event"] == "actor.task_failed"]
    assert [e["error"] for e in failed] == ["Crash: late"]


class TaskFailsMidMessage(fa.Actor[Any]):
    """Its background task fails on demand: while a handler awaits, or while idle.

    "hold" makes the task fail while this handler is still awaiting; "idle" makes
    it fail once the handler has returned. Other messages are recorded.
    """

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.fail = anyio.Event()

    async def on_start(self) -> None:
        self.start_task(self.task)

    async def task(self) -> None:
        await self.fail.wait()
        raise Crash("task")

    async def receive(self, message: Any) -> Any:
        self.rec.add("got", str(message))
        if message in ("hold", "idle"):
            self.fail.set()
        if message == "hold":
            await anyio.sleep_forever()
        return message

    async def on_crash(self, message: Any, error: Exception) -> None:
        self.rec.add("crash", repr(message), str(error))

    def on_undelivered(self, message: Any) -> None:
        self.rec.add("undelivered", str(message))  # pragma: no cover - must not happen


def task_fails_mid_message(rec: Recorder) -> fa.ChildSpec:
    return fa.ChildSpec("t", lambda: TaskFailsMidMessage(rec), backoff=fa.Backoff.none())


async def test_a_task_crash_hands_the_message_in_hand_to_on_crash() -> None:
    rec = Recorder()
    with capture_logs() as logs:
        async with fa.open_system(tree([task_fails_mid_message(rec)])) as system:
            ref = system.ref("t")
            ref.tell_nowait("hold")
            ref.tell_nowait("after")  # queued behind: handled by the next life
            await wait_all_tasks_blocked()
            assert ref.state is fa.ActorState.RUNNING
    assert rec.events == [
        ("got", "hold"),
        ("crash", "'hold'", "task"),
        ("got", "after"),
    ]
    crashed = [e for e in logs if e["event"] == "actor.crashed"]
    assert [(e["error"], e["message_type"]) for e in crashed] == [("Crash: task", "str")]


async def test_a_task_crash_while_idle_has_no_message_for_on_crash() -> None:
    rec = Recorder()
    async with fa.open_system(tree([task_fails_mid_message(rec)])) as system:
        ref = system.ref("t")
        await ref.tell("idle")  # the handler returns; the task fails afterwards
        await wait_all_tasks_blocked()
        await ref.tell("after")
        await wait_all_tasks_blocked()
    assert rec.events == [("got", "idle"), ("crash", "None", "task"), ("got", "after")]


async def test_a_task_crash_fails_the_ask_in_hand_as_a_crash() -> None:
    rec = Recorder()
    async with fa.open_system(tree([task_fails_mid_message(rec)])) as system:
        ref = system.ref("t")
        with pytest.raises(fa.ActorCrashed, match="/app/t crashed") as crashed:
            await ref.ask("hold", timeout=None)  # no timeout: a hang would never end
        assert isinstance(crashed.value.__cause__, Crash)
        assert await ref.ask("after") == "after"  # restarted, same ref
    assert rec.events == [
        ("got", "hold"),
        ("crash", "'hold'", "task"),
        ("got", "after"),
    ]


class Depth(fa.Actor[Any]):
    """Reports how many messages wait behind the one it handles."""

    def __init__(self, gate: anyio.Event, depths: list[int]) -> None:
        self.gate = gate
        self.depths = depths

    async def receive(self, message: Any) -> None:
        await self.gate.wait()
        self.depths.append(self.mailbox_depth)


async def test_an_actor_sees_how_many_messages_wait_in_its_mailbox() -> None:
    gate = anyio.Event()
    depths: list[int] = []
    async with fa.open_system(tree([fa.ChildSpec("d", lambda: Depth(gate, depths))])) as system:
        ref = system.ref("d")
        for n in range(3):
            await ref.tell(n)
        await wait_all_tasks_blocked()
        gate.set()
        await wait_all_tasks_blocked()
    assert depths == [2, 1, 0]  # the one in hand is not counted


async def test_a_sender_retracts_a_message_the_actor_has_not_started() -> None:
    gate = anyio.Event()
    seen: list[Any] = []
    spec = fa.ChildSpec("g", lambda: Gate(lambda: gate, seen), mailbox_size=2)
    async with fa.open_system(tree([spec])) as system:
        ref = system.ref("g")
        first, second, third, late = ["first"], ["second"], ["third"], ["late"]
        await ref.tell(first)  # in hand: waits on the gate
        await wait_all_tasks_blocked()
        await ref.tell(second)
        await ref.tell(third)  # the mailbox is full now
        async with anyio.create_task_group() as tg:
            tg.start_soon(ref.tell, late)  # blocked: no room
            await wait_all_tasks_blocked()
            assert ref.retract(first) is False  # started: too late to take it back
            assert ref.retract(["third"]) is False  # an equal message is not the one sent
            assert ref.retract(third) is True
            await wait_all_tasks_blocked()  # the freed slot went to the blocked sender
            assert ref.statistics().blocked_senders == 0
            assert ref.retract(third) is False  # once only
            gate.set()
        await wait_all_tasks_blocked()
    assert seen == [first, second, late]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_task_refused_by_a_closed_task_group_is_an_error_and_leaves_nothing_behind(
    anyio_backend: str,
) -> None:
    # the instant after an actor's life ended, before its cell forgets the life's task
    # group, trio refuses new tasks; the refused one is closed, not left to warn
    # "coroutine ... was never awaited" (the suite makes that warning an error)
    async with fa.open_system(tree([worker("w", Recorder())])) as system:
        cell: Any = system.ref("w")._cell  # the Cell behind the Host
    async with anyio.create_task_group() as ended:
        pass
    # anyio still takes it for active in that instant; only trio's nursery refuses
    ended._active = True  # type: ignore[attr-defined]
    cell.tasks = ended  # as it is in that instant
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(fa.ActorError, match="start_task\\(\\) while it stops"):
            cell.start_task(checkpoint, ())
        gc.collect()
    cell.tasks = None
    assert [str(w.message) for w in caught] == []
