"""`simulate`: run a user's own `WorkerApp` under a fault schedule, then check it.

The app runs on a memory backend in virtual time (asyncio or trio) with its
handlers wrapped (functions, `Worker` classes and instances, batch handlers), so
that counted faults strike the nth call, and its consumers'
sources wrapped, so that settlements are seen (and lost, or turned into
redeliveries). Timed faults strike at their virtual second. Randomness (retry
jitter, the pool's random strategy) is seeded, so a schedule replays the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import anyio
import attrs

from foxactors._ack import AckHandle, Decision
from foxactors._errors import ActorError, ConfigurationError
from foxactors._lifecycle import ActorState
from foxactors._message import Delivery, Message
from foxactors._spec import ChildSpec
from foxactors._system import ActorSystem, open_system
from foxactors.backends import DeadLetter, MemoryBackend
from foxactors.pipeline import WorkerApp

from ._clock import anyio_backend_options
from ._faults import (
    CancelJob,
    CrashActor,
    CrashBeforeSettle,
    Fault,
    FaultSchedule,
    HangHandler,
    LoseConnection,
    RaiseInHandler,
    Redeliver,
    SlowHandler,
    StopSystem,
    TimedFault,
)

_ACK, _DEAD = Decision.ACK, Decision.DEAD_LETTER


class SimulatedFault(Exception):
    """Raised on purpose by a fault (`RaiseInHandler`, `CrashActor`): not a bug."""


class SimulationFailed(AssertionError):
    """A simulated run broke an invariant (built-in, or one of the user's).

    The message says which, then the schedule (as code that builds it: paste it
    back as ``@example(schedule=...)`` or pass it to `simulate` to replay the run),
    then what happened, in virtual time.

    Attributes:
        schedule: The schedule of the failing run.
    """

    def __init__(self, problem: str, schedule: FaultSchedule, events: Sequence[str]) -> None:
        self.schedule = schedule
        happened = "\n".join(f"  {e}" for e in events) or "  (nothing)"
        super().__init__(
            f"{problem}\n"
            f"schedule (replays this run): {schedule!r}\n"
            f"faults:\n{schedule.timeline()}\n"
            f"what happened:\n{happened}"
        )


@attrs.frozen
class SimulationResult:
    """What became of a simulated run's messages; user invariants get one.

    Attributes:
        schedule: The faults applied.
        published: The message ids, in the order their payloads were given.
        acked: Ids of the messages acked, in order (once each, if all went well).
        dead_letters: The queue's dead letters, oldest first.
        remaining: Messages still queued (ready or delayed) at the end.
        calls: Handler calls per message id (a batch's call counts for each of its
            messages).
        events: What happened, one line each, with its virtual time.
        elapsed: Virtual seconds the run took.
    """

    schedule: FaultSchedule
    published: tuple[str, ...]
    acked: tuple[str, ...]
    dead_letters: tuple[DeadLetter, ...]
    remaining: int
    calls: Mapping[str, int]
    events: tuple[str, ...]
    elapsed: float


Invariant = Callable[[SimulationResult], object]


class _Run:
    """The bookkeeping of one simulated run, shared by its wrappers."""

    def __init__(self, schedule: FaultSchedule, prefetch: int, max_attempts: int | None) -> None:
        self.schedule = schedule
        self.prefetch = prefetch
        self.max_attempts = max_attempts
        self.by_call: dict[int, list[Fault]] = {}
        for fault in schedule.faults:
            nth = getattr(fault, "nth", None)
            if nth is not None:
                self.by_call.setdefault(nth, []).append(fault)
        self.calls = 0
        self.handled: Counter[str] = Counter()
        self.doomed: dict[str, Fault] = {}  # message id -> what becomes of its next ack
        self.applied: list[tuple[str, Decision]] = []
        self.sources: list[_Consumer] = []
        self.violations: list[str] = []
        self.events: list[str] = []
        self.start = 0.0
        self.numbers: dict[str, int] = {}  # message id -> its place in the payloads

    def name(self, message_id: str) -> str:
        """``message #n`` (n: its payload's index): the same in every replay."""
        number = self.numbers.get(message_id)
        return message_id if number is None else f"message #{number}"

    def note(self, text: str) -> None:
        self.events.append(f"t={anyio.current_time() - self.start:.1f}s  {text}")

    def names(self, message_ids: Sequence[str]) -> str:
        """The names of ``message_ids`` (those of a batch), joined."""
        return ", ".join(map(self.name, message_ids))

    def wrap(self, option: Any) -> Any:
        """The handler option with the handler replaced by one that applies faults.

        A function is wrapped; a `Worker` instance is wrapped in a `Worker` that
        applies the faults around its ``process``; a `Worker` class is subclassed,
        so each worker actor still gets a fresh instance of it, faults applied.
        """
        handler, manual = option.handler, option.manual_ack
        if isinstance(handler, type):
            return attrs.evolve(option, handler=self.worker_class(handler))
        if hasattr(handler, "process"):
            return attrs.evolve(option, handler=_FaultyWorker(handler, self))

        async def faulty(arg: Any) -> Any:
            message: Message = arg.message if manual else arg
            return await self.call(handler, arg, message)

        return attrs.evolve(option, handler=faulty)

    def worker_class(self, cls: type[Any]) -> type[Any]:
        """A subclass of the `Worker` class ``cls`` whose ``process`` applies the faults."""
        run = self

        class Faulty(cls):  # type: ignore[misc] # a user's class, checked by add_worker
            async def process(self, message: Message) -> Any:
                return await run.call(super().process, message, message)

        Faulty.__name__, Faulty.__qualname__ = cls.__name__, cls.__qualname__
        Faulty.__module__ = cls.__module__
        return Faulty

    def wrap_batch(self, option: Any) -> Any:
        """The batch option with its handler replaced by one that applies faults.

        A counted fault strikes the nth call of the batch handler: the whole batch.
        Every message of the batch counts a call (`SimulationResult.calls`), and
        is checked against the attempts allowed.
        """
        handler = option.handler

        async def faulty(messages: list[Message]) -> Any:
            ids = [message.id for message in messages]
            for message in messages:
                self.check_attempt(message)
            nth = await self.before(ids)
            failed = await handler(messages)
            # the messages it reported failed are not acked: no ack of theirs to doom
            self.doom(nth, [i for i in ids if not failed or i not in failed])
            return failed

        return attrs.evolve(option, handler=faulty)

    def check_attempt(self, message: Message) -> None:
        """A violation if ``message`` is handled beyond the attempts allowed."""
        if self.max_attempts is not None and message.attempt > self.max_attempts:
            self.violations.append(
                f"{self.name(message.id)} handled at attempt {message.attempt}, "
                f"above the {self.max_attempts} allowed (max_retries + 1)"
            )

    async def call(self, handler: Callable[[Any], Any], arg: Any, message: Message) -> Any:
        self.check_attempt(message)
        return await self.faulty(message.id, lambda: handler(arg))

    async def faulty(self, message_id: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Count a handler call of ``message_id``, apply its counted faults, and run it."""
        nth = await self.before([message_id])
        result = await call()
        self.doom(nth, [message_id])
        return result

    async def before(self, message_ids: Sequence[str]) -> int:
        """Count a handler call of ``message_ids`` and apply its faults; return its number.

        The faults that strike before the handler runs do so here (raise, wait, hang);
        those that strike its settlement are for `doom`, once it returned.
        """
        self.calls += 1
        nth = self.calls
        self.handled.update(message_ids)
        for fault in self.by_call.get(nth, ()):
            if isinstance(fault, RaiseInHandler):
                self.note(f"call #{nth} ({self.names(message_ids)}) raises: {fault!r}")
                raise SimulatedFault(repr(fault))
            if isinstance(fault, SlowHandler):
                self.note(
                    f"call #{nth} ({self.names(message_ids)}) waits {fault.seconds:g}s: {fault!r}"
                )
                await anyio.sleep(fault.seconds)
            elif isinstance(fault, HangHandler):
                self.note(f"call #{nth} ({self.names(message_ids)}) hangs: {fault!r}")
                await anyio.sleep_forever()
        return nth

    def doom(self, nth: int, message_ids: Sequence[str]) -> None:
        """Call ``nth`` returned: its faults on settlements strike the acks of ``message_ids``."""
        for fault in self.by_call.get(nth, ()):
            if isinstance(fault, CrashBeforeSettle | Redeliver):
                self.doomed.update(dict.fromkeys(message_ids, fault))

    async def strike(self, fault: TimedFault, system: ActorSystem) -> bool:
        """Apply a timed fault; True if the run ends here (a `StopSystem`)."""
        if isinstance(fault, StopSystem):
            self.note(f"the system stops: {fault!r}")
            system.stop()
            return True
        if isinstance(fault, LoseConnection):
            live = [s for s in self.sources if s.live]
            lost = f"the consumer loses its connection: {fault!r}"
            self.note(lost if live else f"{fault!r}: none")
            for source in live:
                source.lose(f"simulated: {fault!r}")
            return False
        if isinstance(fault, CrashActor):
            cell = system._root.resolve(fault.path)
            try:
                if cell.state is not ActorState.RUNNING:  # a stopping trio nursery would
                    raise ActorError(cell.path)  # refuse the task, its coroutine made
                cell.start_task(_raise, (fault,))
            except ActorError:
                state = cell.state.value
                self.note(f"{fault.path} is not running ({state}): {fault!r} strikes nothing")
            else:
                self.note(f"{fault.path} crashes: {fault!r}")
            return False
        raise AssertionError(f"simulate_jobs applies {fault!r}")  # simulate refused it


class _Consumer:
    """A memory consumer, wrapped: it reports its settlements and loses the doomed ones.

    Its ``receive`` and ``settle`` are replaced on the instance, so the pipeline
    uses the memory backend's own consumer, with the run watching it.
    """

    def __init__(self, source: Any, run: _Run) -> None:  # a memory backend's source
        self.source = source
        self.run = run
        self.ids: dict[Any, str] = {}  # the tag of each delivery out -> its message id
        self._receive = source.receive
        self._settle = source.settle
        source.receive = self.receive
        source.settle = self.settle

    @property
    def live(self) -> bool:
        return bool(self.source.live)

    async def receive(self, max_count: int, min_credit: int = 1) -> list[Delivery]:
        got: list[Delivery] = await self._receive(max_count, min_credit)
        source = self.source
        for delivery in got:
            self.ids[delivery.handle.tag] = delivery.message.id
            # a new delivery: the fault meant for the settlement of an earlier one (its
            # ack never came: it failed, or its consumer was lost) strikes nothing more
            self.run.doomed.pop(delivery.message.id, None)
        if source.unsettled > source.prefetch:
            self.run.violations.append(
                f"{source.unsettled} deliveries unsettled, above the prefetch of {source.prefetch}"
            )
        return got

    def settle(self, handle: AckHandle, decision: Decision, delay: float, reason: str) -> bool:
        message_id = self.ids.get(handle.tag, "?")
        run = self.run
        fault = run.doomed.pop(message_id, None) if decision is _ACK else None
        if isinstance(fault, CrashBeforeSettle):
            run.note(f"the ack of {run.name(message_id)} is lost with its consumer: {fault!r}")
            self.lose(f"simulated crash before the settlement: {fault!r}")
            return False
        if isinstance(fault, Redeliver):
            run.note(f"the broker delivers {run.name(message_id)} again: {fault!r}")
            decision = Decision.REQUEUE
        applied: bool = self._settle(handle, decision, delay, reason)
        if applied:
            self.ids.pop(handle.tag, None)
            if decision in (_ACK, _DEAD):
                run.applied.append((message_id, decision))
        return applied

    def lose(self, why: str) -> None:
        """The connection is gone: ``receive`` raises, settlements are stale no-ops.

        The consumer actor crashes on the raise and closes the source as it stops,
        which puts its unsettled deliveries back in the queue, as a broker does.
        """
        self.source.lose_connection(why)


class _FaultyBackend(MemoryBackend):
    """A memory backend whose consumers report to the run."""

    def __init__(self, run: _Run) -> None:
        super().__init__()
        self._run = run

    async def open_source(self, queue: str, *, prefetch: int) -> Any:
        """Open a consumer that reports to the run."""
        source = await super().open_source(queue, prefetch=prefetch)
        self._run.sources.append(_Consumer(source, self._run))
        return source


def _app_under_faults(app: WorkerApp, run: _Run) -> WorkerApp:
    options = app.options
    app = copy.copy(app)
    changes: dict[str, Any] = {
        "routes": tuple((kind, run.wrap(option)) for kind, option in options.routes)
    }
    if options.handler is not None:
        changes["handler"] = run.wrap(options.handler)
    if options.batch is not None:
        changes["batch"] = run.wrap_batch(options.batch)
    app._options = attrs.evolve(options, **changes)
    return app


class _FaultyWorker:
    """A `Worker` instance, wrapped: faults strike its ``process`` calls."""

    def __init__(self, worker: Any, run: _Run) -> None:
        self.worker = worker
        self.run = run

    @property
    def id(self) -> str:
        """The wrapped worker's."""
        return str(self.worker.id)

    @property
    def timeout(self) -> float | None:
        """The wrapped worker's."""
        timeout: float | None = self.worker.timeout
        return timeout

    async def process(self, message: Message) -> Any:
        """Count the call, apply its faults, and run the worker's ``process``."""
        return await self.run.call(self.worker.process, message, message)

    def __repr__(self) -> str:
        return repr(self.worker)


def _check_paths(system: ActorSystem, schedule: FaultSchedule) -> None:
    for fault in schedule.faults:
        if isinstance(fault, CrashActor):
            try:
                system.ref(fault.path)
            except ActorError:
                paths = [s.path for s in system.snapshot().walk()]
                raise _BadSchedule(
                    f"{fault!r} names no actor of the app; its actors are: {', '.join(paths)}"
                ) from None


class _BadSchedule(ConfigurationError):
    pass


async def _raise(fault: Fault) -> None:
    raise SimulatedFault(repr(fault))


def _task_count() -> int:
    import sniffio  # noqa: PLC0415

    if sniffio.current_async_library() == "trio":
        import trio  # noqa: PLC0415 - trio is optional

        def walk(task: Any) -> int:
            return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

        return walk(trio.lowlevel.current_root_task())
    return len(asyncio.all_tasks())


@contextlib.contextmanager
def _seeded(seed: int, loop: str) -> Iterator[None]:
    """Seed ``random`` and, on trio, its scheduler's shuffle; restore both after."""
    sources: list[Any] = [random]
    if loop == "trio":
        import trio  # noqa: PLC0415 - trio is optional

        # trio shuffles the tasks ready at once with a Random of its own: seeded, the
        # same schedule runs the same interleaving (hypothesis seeds it the same way)
        scheduler = getattr(trio._core._run, "_r", None)
        if isinstance(scheduler, random.Random):
            sources.append(scheduler)
    states = [source.getstate() for source in sources]
    for source in sources:
        source.seed(seed)
    try:
        yield
    finally:
        for source, state in zip(sources, states, strict=True):
            source.setstate(state)


async def run_system(
    run: _Run, backend: MemoryBackend, spec: ChildSpec, queue: str, horizon: float
) -> float:
    """Run the system of ``spec`` under the run's timed faults, until ``queue`` is idle.

    Returns the virtual seconds it ran; a failure of the system is a violation.
    """
    run.start = anyio.current_time()
    try:
        async with open_system(spec) as system:
            _check_paths(system, run.schedule)
            with anyio.move_on_after(horizon) as cap:
                for fault in run.schedule.timed():
                    await anyio.sleep_until(run.start + fault.at)
                    if await run.strike(fault, system):
                        await system.wait_stopped()
                        break
                else:
                    await backend.join(queue)
            if cap.cancelled_caught:
                run.note(f"the horizon of {horizon:g}s passed: the system stops")
    except _BadSchedule:
        raise
    except Exception as exc:  # the system failed: a finding, reported with the schedule
        run.violations.append(f"the system failed: {type(exc).__name__}: {exc}")
    return anyio.current_time() - run.start


def run_in_virtual_time(main: Callable[[], Awaitable[None]], loop: str, seed: int) -> None:
    """``anyio.run(main)`` on ``loop`` in virtual time, seeded."""
    name, options = anyio_backend_options(loop)
    with _seeded(seed, loop):
        anyio.run(main, backend=name, backend_options=options)


def simulate(
    app_factory: Callable[[], WorkerApp],
    messages: Sequence[Any] | int,
    schedule: FaultSchedule | Iterable[Fault] = (),
    *,
    invariants: Iterable[Invariant] = (),
    loop: str = "asyncio",
    seed: int = 0,
    horizon: float = 600.0,
    queue: str = "simulated",
) -> SimulationResult:
    """Run the app ``app_factory()`` makes on ``messages`` under ``schedule``; check it.

    The app runs on a fresh memory backend in virtual time until its queue is idle
    and every timed fault struck (or a `StopSystem`, or ``horizon`` virtual
    seconds), then stops gracefully. Then the built-in invariants are checked:
    every message acked once, dead-lettered (with a reason) once, or still queued,
    never two of these; no delivery left in flight; handler calls within
    ``max_retries + 1`` attempts; never more unsettled than the prefetch; the
    system did not fail; no task outlived it. Then each of ``invariants``, called
    with the `SimulationResult`.

    Args:
        app_factory: Makes the app (a new one each run).
        messages: The payloads to publish, or a count (payloads 0 to n - 1).
        schedule: The faults (see `fault_schedules`).
        invariants: The user's checks; raising (an assert) fails the run.
        loop: ``"asyncio"`` or ``"trio"``.
        seed: Seeds ``random`` for the run (retry jitter): same seed, same run.
        horizon: Virtual seconds after which the run stops regardless.
        queue: The queue name.

    Raises:
        SimulationFailed: An invariant broke; the message holds the schedule as
            code that replays the run, and what happened.
        ConfigurationError: A `CrashActor` names no actor (the error lists the
            app's actors), the app has no handler, or the schedule holds a
            `CancelJob` (that is `simulate_jobs`'s).
    """
    schedule = as_schedule(schedule)
    for fault in schedule.faults:
        if isinstance(fault, CancelJob):
            raise ConfigurationError(f"{fault!r} cancels a job: run it with simulate_jobs")
    payloads = list(range(messages)) if isinstance(messages, int) else list(messages)
    app = app_factory()
    if not isinstance(app, WorkerApp):
        raise ConfigurationError(f"app_factory must return a WorkerApp, got {app!r}")
    retry = app.options.retry
    run = _Run(schedule, app.options.prefetch, None if retry is None else retry.max_retries + 1)
    app = _app_under_faults(app, run)
    outcome: dict[str, Any] = {}

    async def main() -> None:
        before = _task_count()
        backend = outcome["backend"] = _FaultyBackend(run)
        outcome["ids"] = [await backend.publish(queue, payload) for payload in payloads]
        run.numbers = {message_id: n for n, message_id in enumerate(outcome["ids"])}
        spec = app.build(backend, queue)
        outcome["elapsed"] = await run_system(run, backend, spec, queue, horizon)
        await check_tasks(run, before)

    run_in_virtual_time(main, loop, seed)
    backend: MemoryBackend = outcome["backend"]
    ids: list[str] = outcome["ids"]
    problems, remaining = check_deliveries(run, backend, queue, len(ids))
    if problems:
        raise SimulationFailed("; ".join(dict.fromkeys(problems)), run.schedule, run.events)
    result = SimulationResult(
        run.schedule,
        tuple(ids),
        tuple(i for i, d in run.applied if d is _ACK),
        tuple(backend.dead_letters(queue)),
        remaining,
        dict(run.handled),
        tuple(run.events),
        outcome["elapsed"],
    )
    check_invariants(run, result, invariants)
    return result


def as_schedule(schedule: FaultSchedule | Iterable[Fault]) -> FaultSchedule:
    """The schedule, as a `FaultSchedule`."""
    return schedule if isinstance(schedule, FaultSchedule) else FaultSchedule(schedule)


async def check_tasks(run: _Run, before: int) -> None:
    """A violation if tasks outlived the system (more run now than ``before`` it)."""
    await anyio.lowlevel.checkpoint()
    leftover = _task_count() - before
    if leftover > 0:
        run.violations.append(f"{leftover} task(s) outlived the system")


def check_deliveries(
    run: _Run, backend: MemoryBackend, queue: str, published: int
) -> tuple[list[str], int]:
    """The broken delivery invariants (and the run's violations), and how many remain."""
    stats = backend.queue_statistics(queue)
    letters = backend.dead_letters(queue)
    acked = Counter(i for i, d in run.applied if d is _ACK)
    dead = Counter(i for i, d in run.applied if d is _DEAD)
    problems = list(run.violations)
    if stats.in_flight:
        problems.append(f"{stats.in_flight} deliveries still in flight after the stop")
    name = run.name
    problems += [f"{name(i)} acked {n} times" for i, n in acked.items() if n > 1]
    problems += [f"{name(i)} dead-lettered {n} times" for i, n in dead.items() if n > 1]
    problems += [f"{name(i)} both acked and dead-lettered" for i in set(acked) & set(dead)]
    problems += [f"the dead letter of {name(d.id)} has no reason" for d in letters if not d.reason]
    remaining = stats.ready + stats.delayed
    if len(acked) + len(dead) + remaining != published:
        problems.append(
            f"{published} published, but {len(acked)} acked + {len(dead)} dead-lettered "
            f"+ {remaining} still queued"
        )
    return problems, remaining


def check_invariants(run: _Run, result: Any, invariants: Iterable[Callable[[Any], object]]) -> None:
    """Call each of the user's invariants with ``result``; the first to raise fails the run."""
    for invariant in invariants:
        try:
            invariant(result)
        except Exception as exc:
            called = getattr(invariant, "__name__", repr(invariant))
            raise SimulationFailed(
                f"invariant {called} failed: {type(exc).__name__}: {exc}", run.schedule, run.events
            ) from exc
