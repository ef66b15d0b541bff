"""Fault schedules for `simulate`: frozen, readable values, and a strategy of them.

A fault is timed (``at``: virtual seconds after the run began) or counted (``nth``:
the nth call of the app's handler, from 1, retries and redeliveries included; of a
batch handler, the nth batch, and the fault strikes the whole batch; for jobs, the
nth call of a task's function). Each
is a frozen attrs class whose repr is the code that builds it, so a schedule that
hypothesis shrank pastes back into a test as it printed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

from foxactors._errors import ConfigurationError

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy


def _time(name: str) -> Any:
    def check(instance: object, attribute: object, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ConfigurationError(f"{name} takes seconds >= 0, got {value!r}")

    return attrs.field(converter=float, validator=check)


def _nth(instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"nth counts handler calls from 1, got {attribute.name}={value!r}")


@attrs.frozen
class CrashActor:
    """Crash the actor at ``path`` (relative to the root, or absolute) at time ``at``.

    It crashes as if one of its tasks raised; its supervisor decides what follows.
    """

    path: str
    at: float = _time("CrashActor.at")


@attrs.frozen
class CrashBeforeSettle:
    """The nth handler call returns, and its settlement is lost with the consumer.

    The window that makes duplicates: the handler's side effects happened, the
    broker never heard of it, and delivers the message again to a new consumer.
    For a batch handler, the acks of the whole batch are lost (but for the
    messages it returned as failed: they are not acked).
    """

    nth: int = attrs.field(validator=_nth)


@attrs.frozen
class RaiseInHandler:
    """The nth handler call raises `SimulatedFault` instead of running the handler.

    For a batch handler, the whole batch fails; each message is retried on its own.
    """

    nth: int = attrs.field(validator=_nth)


@attrs.frozen
class SlowHandler:
    """The nth handler call first waits ``seconds`` (of virtual time).

    For a batch handler, the whole batch waits. The wait counts towards the
    handler's timeout.
    """

    nth: int = attrs.field(validator=_nth)
    seconds: float = _time("SlowHandler.seconds")


@attrs.frozen
class HangHandler:
    """The nth handler call never returns: past its timeout, or until the stop.

    For a batch handler, the whole batch hangs.
    """

    nth: int = attrs.field(validator=_nth)


@attrs.frozen
class Redeliver:
    """The broker delivers the nth handled message again (its ack becomes a requeue).

    For a batch handler, every message of the nth batch (but those it returned as
    failed) comes back.
    """

    nth: int = attrs.field(validator=_nth)


@attrs.frozen
class LoseConnection:
    """The consumer loses its connection at time ``at``: unsettled deliveries go back."""

    at: float = _time("LoseConnection.at")


def _job(instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"CancelJob.job counts enqueued jobs from 0, got {attribute.name}={value!r}"
        )


@attrs.frozen
class CancelJob:
    """Cancel job number ``job`` (0: the first the workload enqueued) at time ``at``.

    Only `simulate_jobs` runs it: the cancel goes through `JobQueue.cancel`, as an
    operator's would, whatever state the job is in then.
    """

    job: int = attrs.field(validator=_job)
    at: float = _time("CancelJob.at")


@attrs.frozen
class StopSystem:
    """Stop the system gracefully at time ``at``; faults after it are not applied."""

    at: float = _time("StopSystem.at")


Fault: TypeAlias = (
    CrashActor
    | CrashBeforeSettle
    | RaiseInHandler
    | SlowHandler
    | HangHandler
    | Redeliver
    | LoseConnection
    | StopSystem
    | CancelJob
)
TimedFault: TypeAlias = CrashActor | LoseConnection | StopSystem | CancelJob
TIMED = (CrashActor, LoseConnection, StopSystem, CancelJob)
COUNTED = (CrashBeforeSettle, RaiseInHandler, SlowHandler, HangHandler, Redeliver)


def _faults(faults: Iterable[Fault]) -> tuple[Fault, ...]:
    out = tuple(faults)
    for fault in out:
        if not isinstance(fault, TIMED + COUNTED):
            raise ConfigurationError(
                f"a fault schedule holds faults (CrashActor, CrashBeforeSettle, ...), got {fault!r}"
            )
    return out


def _key(fault: Fault) -> tuple[int, float]:
    return (0, fault.at) if isinstance(fault, TIMED) else (1, float(fault.nth))


@attrs.frozen(repr=False)
class FaultSchedule:
    """The faults of one simulated run, as a frozen value.

    Its repr is the code that builds it (``FaultSchedule([CrashBeforeSettle(nth=2)])``);
    `timeline` is the same, one fault a line, in the order they strike.

    Attributes:
        faults: The faults, as given.
    """

    faults: tuple[Fault, ...] = attrs.field(converter=_faults, default=())

    def __repr__(self) -> str:
        return f"FaultSchedule([{', '.join(map(repr, self.faults))}])"

    def timeline(self) -> str:
        """The faults in the order they strike: timed first by time, then by call."""
        lines = []
        for fault in sorted(self.faults, key=_key):
            when = f"t={fault.at:g}s" if isinstance(fault, TIMED) else f"call #{fault.nth}"
            lines.append(f"  {when:>10}  {fault!r}")
        return "\n".join(lines) if lines else "  (no faults)"

    def timed(self) -> list[TimedFault]:
        """The timed faults, in order of time."""
        timed = [f for f in self.faults if isinstance(f, TIMED)]
        return sorted(timed, key=lambda fault: fault.at)


DEFAULT_KINDS = (CrashActor, CrashBeforeSettle, RaiseInHandler, StopSystem)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an int >= 1, got {value!r}")
    return value


def fault_schedules(
    *,
    messages: int | None = None,
    jobs: int | None = None,
    paths: Sequence[str] = (),
    max_faults: int = 4,
    horizon: float = 30.0,
    kinds: Sequence[type[Any]] | None = None,
) -> SearchStrategy[FaultSchedule]:
    """A hypothesis strategy of `FaultSchedule` values; they shrink to fewer, earlier faults.

    Give ``messages`` for `simulate`, ``jobs`` for `simulate_jobs`.

    Args:
        messages: Messages the run publishes: counted faults strike calls 1 to this.
        jobs: Jobs the workload enqueues: `CancelJob` names one of them, and counted
            faults strike calls 1 to this (or to ``messages``, if given too).
        paths: Actor paths `CrashActor` may name (none: no `CrashActor`).
        max_faults: Most faults in one schedule.
        horizon: Timed faults strike within this many virtual seconds (in tenths).
        kinds: The fault classes to draw from (default: `CrashActor`,
            `CrashBeforeSettle`, `RaiseInHandler`, `StopSystem`, and with ``jobs``,
            `CancelJob`).
    """
    from hypothesis import strategies as st  # noqa: PLC0415 - the testing extra

    if messages is None and jobs is None:
        raise ConfigurationError(
            "fault_schedules needs messages=n (for simulate) or jobs=n (for simulate_jobs)"
        )
    calls = _count("messages", messages) if messages is not None else 0
    if jobs is not None:
        calls = calls or _count("jobs", jobs)
    if kinds is None:
        kinds = DEFAULT_KINDS + ((CancelJob,) if jobs is not None else ())
    unknown = [k for k in kinds if k not in TIMED + COUNTED]
    if unknown:
        raise ConfigurationError(f"kinds must be fault classes, got {unknown!r}")
    if CancelJob in kinds and jobs is None:
        raise ConfigurationError("CancelJob needs jobs=n: the number of jobs the workload enqueues")
    at = st.integers(0, int(horizon * 10)).map(lambda tenths: tenths / 10)
    nth = st.integers(1, calls)
    builders: dict[type[Any], SearchStrategy[Any]] = {
        CrashBeforeSettle: st.builds(CrashBeforeSettle, nth),
        RaiseInHandler: st.builds(RaiseInHandler, nth),
        SlowHandler: st.builds(SlowHandler, nth, st.integers(1, 10).map(float)),
        HangHandler: st.builds(HangHandler, nth),
        Redeliver: st.builds(Redeliver, nth),
        LoseConnection: st.builds(LoseConnection, at),
        StopSystem: st.builds(StopSystem, at),
    }
    if jobs is not None:
        builders[CancelJob] = st.builds(CancelJob, st.integers(0, jobs - 1), at)
    if paths:
        builders[CrashActor] = st.builds(CrashActor, st.sampled_from(list(paths)), at)
    chosen = [builders[k] for k in kinds if k in builders]
    if not chosen:
        raise ConfigurationError(
            "no fault kind can be drawn: CrashActor needs paths=[...] of the app's actors"
        )
    return st.lists(st.one_of(chosen), max_size=max_faults).map(FaultSchedule)
