"""freeze_gc: the start-up objects out of the collector's sight, garbage collected first."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

import foxactors as fa

from .helpers import ending_with
from .test_system import Finisher


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    """Each test starts and ends with nothing frozen (the suite's own objects stay seen)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.me: Any = self  # a cycle: only the collector frees it


def test_freeze_gc_collects_garbage_then_hides_what_lives_from_collections() -> None:
    dropped = Node()
    gone = weakref.ref(dropped)
    del dropped
    kept = Node()
    frozen = fa.freeze_gc()
    assert gone() is None  # collected before the freeze: never kept for good
    assert frozen == gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())  # no collection walks it now
    gc.unfreeze()
    assert any(o is kept for o in gc.get_objects())


class Watcher(fa.Actor[Any]):
    """Notes the frozen count at start and at stop; holds garbage-to-be in a cycle.

    It stops once it sees the freeze, so its stop comes while the tree is frozen.
    """

    seen: ClassVar[dict[str, int]] = {}
    kept: ClassVar[list[weakref.ref[Node]]] = []

    async def on_start(self) -> None:
        self.seen["start"] = gc.get_freeze_count()
        self.node = Node()
        self.kept.append(weakref.ref(self.node))
        self.ref.tell_nowait("done")

    async def receive(self, message: Any) -> None:
        if not gc.get_freeze_count():  # `run` freezes right after the start: once more
            self.ref.tell_nowait("done")
            return
        self.stop()

    async def on_stop(self, exit: fa.Exit) -> None:
        self.seen["stop"] = gc.get_freeze_count()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_freezes_once_the_tree_has_started_and_thaws_when_it_ends(backend: str) -> None:
    spec = ending_with("watcher", Watcher)
    Watcher.seen.clear()
    Watcher.kept.clear()
    assert fa.run(spec, backend=backend) == fa.Exit(fa.ExitKind.NORMAL)
    assert Watcher.seen["start"] == 0 < Watcher.seen["stop"]  # frozen once started
    assert gc.get_freeze_count() == 0  # and thawed: the tree's cycles are collectable
    gc.collect()
    assert Watcher.kept[0]() is None


def test_run_leaves_a_freeze_of_the_application_alone() -> None:
    spec = ending_with("finisher", Finisher)
    assert fa.freeze_gc() > 0
    assert fa.run(spec) == fa.Exit(fa.ExitKind.NORMAL)
    assert gc.get_freeze_count() > 0  # not thawed by `run`, which did not freeze it
