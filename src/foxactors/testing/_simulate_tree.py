"""`simulate_tree`: run any supervision tree under timed faults, then check it.

For trees that are not a `WorkerApp`: your own actors and supervisors. There is
no queue and no handler, so only timed faults apply (`CrashActor`, `StopSystem`);
a workload of yours drives the tree (tells, asks) while they strike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
import attrs

from foxactors._errors import ConfigurationError
from foxactors._snapshot import ActorSnapshot
from foxactors._spec import ChildSpec
from foxactors._system import ActorSystem, open_system

from ._faults import CrashActor, Fault, FaultSchedule, StopSystem
from ._simulate import (
    SimulationFailed,
    _BadSchedule,
    _check_paths,
    _Run,
    _task_count,
    as_schedule,
    check_invariants,
    check_tasks,
    run_in_virtual_time,
)


@attrs.frozen
class TreeSimulationResult:
    """What a simulated tree did; user invariants get one.

    Attributes:
        schedule: The faults applied.
        snapshot: The tree as it was after the workload and the faults, before the stop
            (a `StopSystem`'s, or the graceful one at the end).
        events: What happened, one line each, with its virtual time.
        elapsed: Virtual seconds the run took.
    """

    schedule: FaultSchedule
    snapshot: ActorSnapshot | None
    events: tuple[str, ...]
    elapsed: float


TreeInvariant = Callable[[TreeSimulationResult], object]


async def _nothing(system: ActorSystem) -> None:
    """The default workload: none (the tree runs on its own)."""


def simulate_tree(
    spec_factory: Callable[[], ChildSpec],
    schedule: FaultSchedule | Iterable[Fault] = (),
    *,
    workload: Callable[[ActorSystem], Awaitable[object]] = _nothing,
    invariants: Iterable[TreeInvariant] = (),
    loop: str = "asyncio",
    seed: int = 0,
    horizon: float = 600.0,
) -> TreeSimulationResult:
    """Run the tree ``spec_factory()`` makes under ``schedule``; check it.

    The system starts, then ``await workload(system)`` runs while the timed faults
    strike at their virtual seconds. Once both are done (or a `StopSystem`, or
    ``horizon``), the tree's snapshot is taken and the system stops gracefully.
    Then the built-in invariants are checked (the system did not fail, the
    workload did not raise, no task outlived the system), then each of
    ``invariants``, called with the `TreeSimulationResult`.

    Args:
        spec_factory: Makes the tree's root `ChildSpec` (a new one each run).
        schedule: Timed faults only: `CrashActor`, `StopSystem`.
        workload: Drives the tree (tells and asks to ``system.ref(...)``).
        invariants: The user's checks; raising (an assert) fails the run.
        loop: ``"asyncio"`` or ``"trio"``.
        seed: Seeds ``random`` for the run (backoff jitter): same seed, same run.
        horizon: Virtual seconds after which the run stops regardless.

    Raises:
        SimulationFailed: An invariant broke; the message holds the schedule as
            code that replays the run, and what happened.
        ConfigurationError: A fault other than `CrashActor` and `StopSystem`, a
            `CrashActor` naming no actor (the error lists the tree's), or the
            factory made no `ChildSpec`.
    """
    schedule = _timed_only(as_schedule(schedule))
    spec = spec_factory()
    if not isinstance(spec, ChildSpec):
        raise ConfigurationError(f"spec_factory must return a ChildSpec, got {spec!r}")
    run = _Run(schedule, 0, None)
    outcome: dict[str, Any] = {"snapshot": None}

    async def drive(system: ActorSystem) -> bool:
        """Run the workload and the faults; True if a `StopSystem` stopped the system."""
        stopped = False
        with anyio.move_on_after(horizon) as cap:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_work, system)
                for fault in schedule.timed():
                    await anyio.sleep_until(run.start + fault.at)
                    if isinstance(fault, StopSystem):  # the tree as the stop finds it
                        outcome["snapshot"] = system.snapshot()
                    if await run.strike(fault, system):
                        stopped = True
                        tasks.cancel_scope.cancel()  # the workload ends with the system
                        break
        if stopped:  # outside the cancelled scope, so the wait is not cancelled too
            await system.wait_stopped()
            return True
        if cap.cancelled_caught:
            run.note(f"the horizon of {horizon:g}s passed: the system stops")
        return False

    async def _work(system: ActorSystem) -> None:
        try:
            await workload(system)
        except Exception as exc:
            run.violations.append(f"the workload raised {type(exc).__name__}: {exc}")

    async def main() -> None:
        before = _task_count()
        run.start = anyio.current_time()
        try:
            async with open_system(spec) as system:
                _check_paths(system, schedule)
                if not await drive(system):
                    outcome["snapshot"] = system.snapshot()
        except _BadSchedule:
            raise
        except Exception as exc:  # the system failed: a finding, reported with the schedule
            run.violations.append(f"the system failed: {type(exc).__name__}: {exc}")
        outcome["elapsed"] = anyio.current_time() - run.start
        await check_tasks(run, before)

    run_in_virtual_time(main, loop, seed)
    if run.violations:
        raise SimulationFailed("; ".join(dict.fromkeys(run.violations)), schedule, run.events)
    result = TreeSimulationResult(
        schedule, outcome["snapshot"], tuple(run.events), outcome["elapsed"]
    )
    check_invariants(run, result, invariants)
    return result


def _timed_only(schedule: FaultSchedule) -> FaultSchedule:
    """``schedule``, once it is known to hold only the faults a tree takes."""
    for fault in schedule.faults:
        if not isinstance(fault, CrashActor | StopSystem):
            raise ConfigurationError(
                f"{fault!r} needs messages or jobs: simulate_tree applies CrashActor and "
                "StopSystem (simulate and simulate_jobs apply the rest)"
            )
    return schedule
