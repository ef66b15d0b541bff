"""freeze_gc: the start-up objects out of the collector's sight, garbage collected first."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import foxactors as fa

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


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_freezes_once_the_tree_has_started(backend: str) -> None:
    spec = fa.Supervisor.spec(
        "job",
        [fa.ChildSpec("finisher", Finisher, restart="transient", significant=True)],
        auto_shutdown="any_significant",
    )
    assert gc.get_freeze_count() == 0
    assert fa.run(spec, backend=backend) == fa.Exit(fa.ExitKind.NORMAL)
    assert gc.get_freeze_count() > 0
