"""Property tests: random trees and crash schedules against a model of OTP semantics.

Each example runs a real tree in virtual time (on asyncio and on trio) and compares
what happened with what a small, obviously-correct model of the rules predicts.
"""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest
from anyio import wait_all_tasks_blocked
from hypothesis import event, given
from hypothesis import strategies as st

import foxactors as fa
from foxactors.testing import anyio_backend_options

from .helpers import Crash, Recorder, tree, worker

RESTARTS = [fa.Restart.PERMANENT, fa.Restart.TRANSIENT, fa.Restart.TEMPORARY]
# Gaps are multiples of 10 s and the window is 95 s, so every restart is at least 5 s
# from the window's edge. (On asyncio, anyio's wait_all_tasks_blocked() polls with
# sleep(0.1), which moves the virtual clock a little on every event.)
WITHIN = 95.0


def run_on(backend: str, func: Any, *args: Any) -> Any:
    name, options = anyio_backend_options(backend)
    return anyio.run(func, *args, backend=name, backend_options=options)


@attrs.define
class Model:
    """OTP semantics for one flat supervisor, with immediate restarts."""

    strategy: fa.Strategy
    max_restarts: int
    kinds: dict[str, fa.Restart]
    alive: list[str]
    starts: dict[str, int]
    history: list[float] = attrs.Factory(list)
    escalated: bool = False

    def exit(self, name: str, crashed: bool, now: float) -> None:
        kind = self.kinds[name]
        if kind is fa.Restart.TEMPORARY or (kind is fa.Restart.TRANSIENT and not crashed):
            self.alive.remove(name)
            return
        self.history = [t for t in self.history if t >= now - WITHIN] + [now]
        if len(self.history) > self.max_restarts:
            self.escalated = True
            return
        index = self.alive.index(name)
        group = {
            fa.Strategy.ONE_FOR_ONE: [name],
            fa.Strategy.ONE_FOR_ALL: list(self.alive),
            fa.Strategy.REST_FOR_ONE: self.alive[index:],
        }[self.strategy]
        for other in group:
            if other != name and self.kinds[other] is fa.Restart.TEMPORARY:
                self.alive.remove(other)
            else:
                self.starts[other] += 1


schedules = st.lists(
    st.tuples(
        st.integers(0, 4),  # which live child
        st.booleans(),  # crash (True) or normal exit (False)
        st.sampled_from([0, 0, 10, 30, 60, 110]),  # virtual seconds before the event
    ),
    max_size=12,
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@given(
    kinds=st.lists(st.sampled_from(RESTARTS), min_size=1, max_size=5),
    strategy=st.sampled_from(list(fa.Strategy)),
    max_restarts=st.integers(0, 4),
    schedule=schedules,
)
def test_restarts_and_escalation_follow_the_strategy(
    backend: str,
    kinds: list[fa.Restart],
    strategy: fa.Strategy,
    max_restarts: int,
    schedule: list[tuple[int, bool, int]],
) -> None:
    names = [f"c{i}" for i in range(len(kinds))]
    model = Model(
        strategy,
        max_restarts,
        dict(zip(names, kinds, strict=True)),
        list(names),
        dict.fromkeys(names, 1),
    )
    rec = Recorder()
    spec = tree(
        [worker(n, rec, k) for n, k in zip(names, kinds, strict=True)],
        strategy=strategy,
        max_restarts=max_restarts,
        within=WITHIN,
    )

    async def scenario() -> tuple[bool, list[str], int]:
        tasks_before = len(anyio.get_running_tasks())
        alive: list[str] = []
        escalated = False
        try:
            async with fa.open_system(spec) as system:
                now = 0.0
                for index, crashed, gap in schedule:
                    if not model.alive:
                        break
                    await anyio.sleep(gap)
                    now += gap
                    name = model.alive[index % len(model.alive)]
                    model.exit(name, crashed, now)
                    await system.ref(name).tell("crash" if crashed else "exit")
                    await wait_all_tasks_blocked()
                    assert not model.escalated, "the tree should have escalated"
                alive = [s.path.rsplit("/", 1)[1] for s in system.snapshot().children]
        except fa.RestartIntensityExceeded:
            escalated = True
        return escalated, alive, len(anyio.get_running_tasks()) - tasks_before

    escalated, alive, leftover_tasks = run_on(backend, scenario)
    event(f"escalated={escalated}")
    event(f"restarts={min(sum(model.starts.values()) - len(names), 5)}")
    assert escalated == model.escalated
    if not escalated:
        assert alive == model.alive
    assert {n: rec.count("start", n) for n in names} == model.starts
    assert leftover_tasks == 0


class Fragile(fa.Actor[int]):
    def __init__(self, seen: list[int], failed: list[int]) -> None:
        self.seen = seen
        self.failed = failed

    async def receive(self, message: int) -> None:
        if message < 0:
            raise Crash(message)
        self.seen.append(message)

    async def on_crash(self, message: Any, error: Exception) -> None:
        self.failed.append(message)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@given(
    batches=st.lists(st.lists(st.integers(-3, 20), max_size=15), max_size=6),
    strategy=st.sampled_from(list(fa.Strategy)),
)
def test_no_queued_message_is_lost_across_restarts(
    backend: str, batches: list[list[int]], strategy: fa.Strategy
) -> None:
    seen: list[int] = []
    failed: list[int] = []
    rec = Recorder()
    children = [
        worker("before", rec),
        fa.ChildSpec("f", lambda: Fragile(seen, failed), backoff=fa.Backoff.none()),
        worker("after", rec),
    ]

    async def scenario() -> None:
        async with fa.open_system(tree(children, strategy=strategy, max_restarts=1000)) as system:
            ref = system.ref("f")
            for batch in batches:
                for message in batch:
                    await ref.tell(message)
                await wait_all_tasks_blocked()

    run_on(backend, scenario)
    everything = [m for batch in batches for m in batch]
    assert seen == [m for m in everything if m >= 0]
    assert failed == [m for m in everything if m < 0]


@st.composite
def nested_trees(draw: st.DrawFn, depth: int = 0) -> list[Any]:
    """A tree shape: a list whose items are leaves (None) or subtrees (lists)."""
    width = draw(st.integers(0 if depth else 1, 3))
    if depth >= 2:
        return [None] * width
    return [draw(st.one_of(st.none(), nested_trees(depth + 1))) for _ in range(width)]


def build(shape: list[Any], rec: Recorder, prefix: str = "n") -> list[fa.ChildSpec]:
    specs = []
    for i, item in enumerate(shape):
        name = f"{prefix}{i}"
        if item is None:
            specs.append(worker(name, rec))
        else:
            specs.append(fa.Supervisor.spec(name, build(item, rec, f"{name}_")))
    return specs


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@given(shape=nested_trees(), crash_first=st.booleans())
def test_shutdown_is_the_reverse_of_start_and_leaves_no_task(
    backend: str, shape: list[Any], crash_first: bool
) -> None:
    rec = Recorder()
    order: list[str] = []

    async def scenario() -> int:
        tasks_before = len(anyio.get_running_tasks())
        async with fa.open_system(tree(build(shape, rec))) as system:
            leaves = [s.path for s in system.snapshot().walk() if s.kind == "actor"]
            if crash_first and leaves:
                await system.ref(leaves[0]).tell("crash")
                await wait_all_tasks_blocked()
            order.extend(p.rsplit("/", 1)[1] for p in leaves)
            if not crash_first:
                assert rec.of("start") == order  # started depth first, in spec order
            rec.events.clear()
        return len(anyio.get_running_tasks()) - tasks_before

    assert run_on(backend, scenario) == 0
    assert rec.of("stop") == list(reversed(order))
