"""`Supervisor`: an actor that starts, watches and restarts its children (OTP)."""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import anyio
import attrs

from ._actor import Actor, ActorRef
from ._cell import Cell
from ._errors import (
    ConfigurationError,
    FoxactorsError,
    RestartIntensityExceeded,
    StartError,
    SupervisionError,
)
from ._lifecycle import KILLED_EXIT, SHUTDOWN_EXIT, ActorState, Exit, ExitKind
from ._logging import describe, traceback_of
from ._policy import Backoff, RestartIntensity
from ._spec import AutoShutdown, ChildSpec, Restart, Strategy
from ._validate import coerce_enum


def _frozen_counts(value: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(value))


@attrs.frozen
class SupervisorStatistics:
    """A snapshot of one supervisor: its children and how it restarted them.

    Attributes:
        children: The children's ids, in start order.
        restarts: How many times each child was restarted (or recycled), by id.
        restarting: The children waiting for their restart delay, in start order.
        recent_restarts: Restarts counted in the intensity window now (the last
            ``within`` seconds); one more than ``max_restarts`` and it gives up.
        max_restarts: Restarts it tolerates within ``within`` seconds.
        within: Length of the intensity window in seconds.
    """

    children: tuple[str, ...]
    restarts: Mapping[str, int] = attrs.field(converter=_frozen_counts, hash=False)
    restarting: tuple[str, ...]
    recent_restarts: int
    max_restarts: int
    within: float


@attrs.frozen
class StartChild:
    """Request to a supervisor: start a dynamic child; the reply is its `ActorRef`."""

    spec: ChildSpec


@attrs.frozen
class StopChild:
    """Request to a supervisor: stop child ``id`` (draining it) and forget it."""

    id: str


class _Refusal:
    """A reply that fails the ``ask`` without crashing the supervisor."""

    __slots__ = ("error",)

    def __init__(self, error: FoxactorsError) -> None:
        self.error = error


class _Child:
    """A supervisor's record of one child; lives in the supervisor's cell."""

    __slots__ = ("attempt", "cell", "generation", "pending", "spec")

    def __init__(self, spec: ChildSpec, parent: Cell) -> None:
        self.spec = spec
        self.cell = Cell(spec, parent)
        self.attempt = -1  # backoff attempt of the last restart
        self.generation = 0  # bumped per start and per deliberate stop
        self.pending: object | None = None  # token of a scheduled restart


@attrs.frozen
class _ChildExit:
    child: _Child
    generation: int
    exit: Exit


@attrs.frozen
class _RestartDue:
    group: tuple[_Child, ...]
    token: object


class Supervisor(Actor[Any]):
    """Starts its children in order, restarts them by strategy, stops them in reverse.

    Semantics follow Erlang/OTP: restart types (`Restart`), strategies (`Strategy`),
    one restart window per supervisor shared by its children (a one_for_all cascade
    counts as one restart), escalation when the intensity is exceeded, significant
    children and auto-shutdown. Each child also has its own restart delay (`Backoff`).

    Args:
        children: Static children, started in this order.
        strategy: Which children restart when one crashes (default one_for_one).
        max_restarts: Restarts tolerated within ``within`` seconds (default 3).
        within: Length of the restart window in seconds (default 5).
        auto_shutdown: Whether significant children ending shuts this supervisor down.
        max_children: Upper bound on children, static and dynamic (None: no bound).
        rand: Source of jitter in ``[0, 1)``; pass a constant for replayable tests.
    """

    _cell: Cell  # a supervisor keeps its children's bookkeeping in its cell
    _gave_up = False  # supervising from on_stop failed: no more restarts
    _starts_in_life = True
    kind = "supervisor"

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
        auto_shutdown: AutoShutdown | str = AutoShutdown.NEVER,
        max_children: int | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._strategy = coerce_enum(Strategy, strategy, "strategy")
        self._intensity = RestartIntensity(max_restarts, within)
        self._auto_shutdown = coerce_enum(AutoShutdown, auto_shutdown, "auto_shutdown")
        self._specs = tuple(children)
        self._max_children = max_children
        self._rand = rand
        self._history: tuple[float, ...] = ()
        self._validate()

    def _validate(self) -> None:
        seen: set[str] = set()
        for spec in self._specs:
            if not isinstance(spec, ChildSpec):
                raise ConfigurationError(
                    f"children must be ChildSpec instances, got {spec!r}; build each with "
                    "ChildSpec(id, factory) or Supervisor.spec(id, [...])"
                )
            if spec.id in seen:
                raise ConfigurationError(
                    f"duplicate child id {spec.id!r}: ids must be unique among siblings"
                )
            seen.add(spec.id)
            if spec.significant and self._auto_shutdown is AutoShutdown.NEVER:
                raise ConfigurationError(
                    f"child {spec.id!r} is significant but auto_shutdown is 'never'; set "
                    "auto_shutdown='any_significant' or 'all_significant', or drop the flag"
                )
        limit = self._max_children
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ConfigurationError(f"max_children must be an int >= 1 or None, got {limit!r}")
        if limit is not None and len(self._specs) > limit:
            raise ConfigurationError(
                f"{len(self._specs)} static children exceed max_children={limit}; "
                f"raise max_children to at least {len(self._specs)}"
            )

    @classmethod
    def spec(
        cls,
        id: str,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
        auto_shutdown: AutoShutdown | str = AutoShutdown.NEVER,
        max_children: int | None = None,
        restart: Restart | str = Restart.PERMANENT,
        significant: bool = False,
        backoff: Backoff | None = None,
        shutdown: float | None = None,
        mailbox_size: int = 1000,
    ) -> ChildSpec:
        """Return a `ChildSpec` that runs a supervisor (validated now, not at start).

        The first group of options configures the supervisor, the second how its
        own parent treats it; ``shutdown`` defaults to None (wait for the subtree).

        Raises:
            ConfigurationError: An option is invalid; the message names this
                supervisor (``supervisor 'id': ...``) or the child at fault.
        """
        factory = functools.partial(
            cls,
            tuple(children),
            strategy=strategy,
            max_restarts=max_restarts,
            within=within,
            auto_shutdown=auto_shutdown,
            max_children=max_children,
        )
        spec = ChildSpec(  # first, so that the id is valid before errors quote it
            id,
            factory,
            restart=restart,
            shutdown=shutdown,
            significant=significant,
            backoff=backoff,
            mailbox_size=mailbox_size,
        )
        try:
            factory()  # validate the supervisor's own options eagerly
        except ConfigurationError as exc:
            raise ConfigurationError(f"supervisor {id!r}: {exc}") from None
        return spec

    # -- life ------------------------------------------------------------------------

    @property
    def _children(self) -> dict[str, _Child]:
        return self._cell.children

    async def on_start(self) -> None:
        """Start the children in order; a failure stops the started ones, in reverse."""
        existing: dict[str, _Child] = self._cell.children
        ordered: dict[str, _Child] = {}
        for spec in self._specs:
            kept = existing.pop(spec.id, None)
            ordered[spec.id] = kept if kept is not None else _Child(spec, self._cell)
        ordered.update(existing)  # dynamic children kept across a crash of this supervisor
        self._cell.children = ordered
        started: list[_Child] = []
        for child in ordered.values():
            child.pending = None
        for child in list(ordered.values()):
            if child.pending is not None:  # in the restart group of a failed start
                continue
            error = await self._start(child)
            if error is not None and self.start_failure_is_transient(error):
                try:
                    await self._restart(child, Exit(ExitKind.CRASHED, error))
                except BaseException:  # escalated: the started ones stop, as below
                    for other in reversed(started):
                        await self._terminate(other, drain=False)
                    raise
                continue
            if error is not None:
                for other in reversed(started):
                    await self._terminate(other, drain=False)
                raise StartError(
                    f"child {child.cell.path} failed to start: {type(error).__name__}: {error}"
                ) from error
            started.append(child)

    async def on_stop(self, exit: Exit) -> None:
        """Stop every child in reverse start order, each within its shutdown timeout.

        After a normal stop the children are stopped for good (draining their
        mailboxes). After a crash they are only stopped, so that a restart of this
        supervisor restarts them on the same cells and references. Stopped as killed
        (the system cancelled from outside), it stops them as killed too: their hooks
        run, but nothing drains.
        """
        final = not exit.abnormal
        told = KILLED_EXIT if exit.kind is ExitKind.KILLED else SHUTDOWN_EXIT
        for child in reversed(list(self._children.values())):
            ended = await self._terminate(child, drain=final, exit=told)
            if final or child.spec.restart is Restart.TEMPORARY:
                self._remove(child, ended)
            else:
                child.cell.state = ActorState.RESTARTING

    async def receive(self, message: Any) -> Any:
        """Handle child exits, due restarts and `StartChild`/`StopChild` requests."""
        kind = type(message)
        if kind is _ChildExit:
            await self._child_exited(message)
        elif kind is _RestartDue:
            group = [c for c in message.group if c.pending is message.token]
            await self._start_group(group)
        elif kind is StartChild:
            try:
                return await self.start_child(message.spec)
            except FoxactorsError as exc:
                return _Refusal(exc)
        elif kind is StopChild:
            try:
                await self.stop_child(message.id)
            except FoxactorsError as exc:
                return _Refusal(exc)
        else:
            self.log.warning("supervisor.unexpected_message", message_type=kind.__qualname__)
        return None

    def statistics(self) -> SupervisorStatistics:
        """Return its children, their restarts and the use of the intensity window."""
        children = list(self._children.values())
        threshold = anyio.current_time() - self._intensity.within
        return SupervisorStatistics(
            children=tuple(c.spec.id for c in children),
            restarts={c.spec.id: c.cell.restarts for c in children},
            restarting=tuple(c.spec.id for c in children if c.pending is not None),
            recent_restarts=sum(1 for t in self._history if t >= threshold),
            max_restarts=self._intensity.max_restarts,
            within=self._intensity.within,
        )

    async def supervise_until(
        self, condition: Callable[[], Awaitable[object]], timeout: float
    ) -> bool:
        """From ``on_stop``: keep restarting children until ``condition()`` returns.

        The message loop has ended by the time ``on_stop`` runs, so nobody handles
        child exits and due restarts any more. A subclass that needs its children to
        finish work before they are stopped (a pipeline draining in-flight work)
        calls this to go on supervising meanwhile. Returns False if ``timeout``
        seconds passed first, or if supervision failed (intensity exceeded): then
        `supervision is over: later calls return False at once.

        A child exit or due restart taken from the mailbox is handled to the end,
        even when the condition holds or the time runs out meanwhile (a restart cut
        short would leave that child stopped for good).
        """
        if self._gave_up:
            return False
        mailbox = self._cell.mailbox
        finished = False
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as tasks:

                async def wait_condition() -> None:
                    nonlocal finished
                    await condition()
                    finished = True
                    tasks.cancel_scope.cancel()

                tasks.start_soon(wait_condition)
                while True:
                    await mailbox.wait()
                    message = (
                        mailbox.system.popleft() if mailbox.system else mailbox.items.popleft()
                    )
                    if type(message) in (_ChildExit, _RestartDue):
                        try:
                            with anyio.CancelScope(shield=True):
                                await self.receive(message)
                        except FoxactorsError as exc:
                            self.log.error("supervisor.gave_up_while_stopping", error=str(exc))
                            self._gave_up = True
                            tasks.cancel_scope.cancel()
        return finished

    # -- dynamic children -----------------------------------------------------------

    async def start_child(self, spec: ChildSpec) -> ActorRef[Any]:
        """Start ``spec`` as a new child, after the existing ones; return its reference.

        Raises:
            ConfigurationError: The id is taken, or the spec is invalid here.
            SupervisionError: ``max_children`` is reached.
            StartError: The child failed to start (it is not kept).
        """
        if not isinstance(spec, ChildSpec):
            raise ConfigurationError(
                f"{self.path}: start_child needs a ChildSpec, got {spec!r}; build one with "
                "ChildSpec(id, factory) or Supervisor.spec(id, [...])"
            )
        if spec.id in self._children:
            raise ConfigurationError(
                f"{self.path} already has a child {spec.id!r}; pick another id"
            )
        if spec.significant and self._auto_shutdown is AutoShutdown.NEVER:
            raise ConfigurationError(
                f"child {spec.id!r} is significant but {self.path} has auto_shutdown 'never'; "
                f"give {self.path} auto_shutdown='any_significant' or 'all_significant', "
                "or drop the flag"
            )
        if self._max_children is not None and len(self._children) >= self._max_children:
            raise SupervisionError(
                f"{self.path} already has max_children={self._max_children} children"
            )
        child = _Child(spec, self._cell)
        self._children[spec.id] = child
        error = await self._start(child)
        if error is not None:
            self._remove(child, Exit(ExitKind.CRASHED, error))
            raise StartError(
                f"child {child.cell.path} failed to start: {type(error).__name__}: {error}"
            ) from error
        return child.cell.ref

    async def stop_child(self, id: str) -> None:
        """Stop child ``id`` for good (draining its mailbox) and remove it.

        Raises:
            SupervisionError: There is no such child.
        """
        child = self._children.get(id)
        if child is None:
            raise SupervisionError(f"{self.path} has no child {id!r}")
        self._remove(child, await self._terminate(child, drain=True))

    # -- for subclasses -------------------------------------------------------------

    def child_refs(self) -> tuple[ActorRef[Any], ...]:
        """The references of the current children, in start order.

        For subclasses that send work to their children (a pool to its workers). A
        reference stays valid across restarts of its child.
        """
        return tuple(child.cell.ref for child in self._children.values())

    async def recycle_child(self, id: str) -> bool:
        """Replace child ``id``'s instance with a fresh one now, as planned maintenance.

        For subclasses, from their own handlers (a pool recycling a worker). The
        child is stopped, draining what its mailbox holds, and started again from
        its spec on the same reference and mailbox (messages sent meanwhile are
        refused). Not a crash: it does not count against the restart intensity, but
        it does count in the child's ``restarts``. Returns True if the fresh instance
        started; if it failed to start, that is handled as a crash (logged, then
        the strategy, the intensity and the backoff apply) and the result is False.

        Raises:
            SupervisionError: There is no such child.
            RestartIntensityExceeded: The failed start was one restart too many.
        """
        child = self._children.get(id)
        if child is None:
            raise SupervisionError(f"{self.path} has no child {id!r}")
        await self._terminate(child, drain=True)
        child.cell.restarts += 1
        error = await self._start(child)
        if error is None:
            return True
        await self._restart(child, Exit(ExitKind.CRASHED, error))
        return False

    # -- mechanics ------------------------------------------------------------------

    async def _start(self, child: _Child) -> Exception | None:
        child.generation += 1
        notify = functools.partial(self._notify, child, child.generation)
        tasks = self._cell.tasks
        assert tasks is not None
        error = await child.cell.start(tasks, notify)
        if error is not None:
            log = child.cell.log.debug if self._logged_where_raised(error) else child.cell.log.error
            log("actor.start_failed", error=describe(error), exc_info=traceback_of(error))
        return error

    def start_failure_is_transient(self, error: Exception) -> bool:
        """Whether a child that fails its first start with ``error`` is only crashing.

        By default a failed start fails the start of this supervisor (and of the
        tree). A subclass returns True for errors that will pass by themselves (a
        broker that is not up yet): the child is then restarted with its backoff like
        any crashed child (its strategy's group with it), counting towards the restart
        intensity, and this supervisor starts with the rest of its children.
        """
        return False

    def escalates(self, id: str, exit: Exit) -> bool:
        """Whether the exit of child ``id`` fails this supervisor at once.

        By default a crashed child is restarted (within the intensity). A subclass
        returns True for exits that a restart cannot help, e.g. a child supervisor
        that gave up: this supervisor then fails with the child's error, so that its
        own parent decides.
        """
        return False

    def _logged_where_raised(self, error: BaseException | None) -> bool:
        """Whether ``error`` was logged where it arose, in one line that says it all.

        Then the failed start and the restart it causes are logged at debug level,
        so that a long outage shows one line per attempt. A subclass that knows such
        errors says so (the pipeline's intake: a broker that cannot be reached).
        """
        return False

    def _notify(self, child: _Child, generation: int, _cell: Cell, exit: Exit) -> None:
        self._cell.mailbox.put_system(_ChildExit(child, generation, exit))

    async def _terminate(self, child: _Child, *, drain: bool, exit: Exit = SHUTDOWN_EXIT) -> Exit:
        """Stop the child's current life; return ``exit``, or KILLED if it was cancelled."""
        child.pending = None
        # Any exit notice of this life, sent or still to come, is now expected and
        # ignored (OTP flushes it too), even if the child had already crashed.
        child.generation += 1
        return await child.cell.stop_life(drain=drain, exit=exit, timeout=child.spec.shutdown)

    def _remove(self, child: _Child, exit: Exit) -> None:
        if self._children.get(child.spec.id) is child:
            del self._children[child.spec.id]
        child.pending = None
        child.cell.finalize(exit)

    async def _child_exited(self, notice: _ChildExit) -> None:
        child = notice.child
        if notice.generation != child.generation or self._children.get(child.spec.id) is not child:
            return  # a life we stopped on purpose, or a child already removed
        exit, restart = notice.exit, child.spec.restart
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and not exit.abnormal):
            self._remove(child, exit)
            self._maybe_auto_shutdown(child)
            return
        await self._restart(child, exit)

    async def _restart(self, child: _Child, exit: Exit) -> None:
        if exit.error is not None and self.escalates(child.spec.id, exit):
            raise exit.error
        now = anyio.current_time()
        admitted, self._history = self._intensity.admit(self._history, now)
        if not admitted:
            self.log.error(
                "supervisor.gave_up",
                child=child.cell.path,
                max_restarts=self._intensity.max_restarts,
                within=self._intensity.within,
            )
            raise RestartIntensityExceeded(
                f"{self.path}: more than {self._intensity.max_restarts} restarts within "
                f"{self._intensity.within} s; last: {child.cell.path} {exit}"
            ) from exit.error
        backoff = child.spec.backoff
        # A start that failed ran for no time: the delays go on growing.
        uptime = now - child.cell.started_at if child.cell.started else 0.0
        child.attempt = backoff.next_attempt(child.attempt, uptime)
        delay = backoff.delay(child.attempt, self._rand())
        group = self._group(child)
        ended: dict[str, Exit] = {}
        for other in reversed(group):
            if other is not child:
                ended[other.spec.id] = await self._terminate(other, drain=False)
        for other in group:
            if other is not child and other.spec.restart is Restart.TEMPORARY:
                self._remove(other, ended[other.spec.id])
        group = [c for c in group if self._children.get(c.spec.id) is c]
        log = (
            child.cell.log.debug
            if self._logged_where_raised(exit.error)
            else child.cell.log.warning
        )
        log(
            "actor.restarting",
            attempt=child.attempt,
            delay=round(delay, 3),
            group=[c.spec.id for c in group],
        )
        token = object()
        for other in group:
            other.pending = token
            other.cell.state = ActorState.RESTARTING
        if delay <= 0:
            await self._start_group(group)
        else:
            tasks = self._cell.tasks
            assert tasks is not None
            tasks.start_soon(self._wake_after, delay, _RestartDue(tuple(group), token))

    async def _wake_after(self, delay: float, due: _RestartDue) -> None:
        await anyio.sleep(delay)
        self._cell.mailbox.put_system(due)

    async def _start_group(self, group: list[_Child]) -> None:
        for child in group:
            child.pending = None
            child.cell.restarts += 1
            error = await self._start(child)
            if error is not None:
                # A failed restart is another crash: the strategy picks a new group.
                await self._restart(child, Exit(ExitKind.CRASHED, error))
                return

    def _group(self, child: _Child) -> list[_Child]:
        children = list(self._children.values())
        if self._strategy is Strategy.ONE_FOR_ONE:
            return [child]
        if self._strategy is Strategy.ONE_FOR_ALL:
            return children
        return children[children.index(child) :]

    def _maybe_auto_shutdown(self, child: _Child) -> None:
        if not child.spec.significant or self._auto_shutdown is AutoShutdown.NEVER:
            return
        if self._auto_shutdown is AutoShutdown.ANY_SIGNIFICANT or not any(
            c.spec.significant for c in self._children.values()
        ):
            self.log.info("supervisor.auto_shutdown", child=child.cell.path)
            self.stop()


async def start_child(
    supervisor: ActorRef[Any], spec: ChildSpec, *, timeout: float | None = 5.0
) -> ActorRef[Any]:
    """Ask ``supervisor`` to start a dynamic child; return the child's reference.

    Raises:
        ConfigurationError: The id is taken or the spec is invalid.
        SupervisionError: The supervisor is at ``max_children``.
        StartError: The child failed to start.
    """
    reply = await supervisor.ask(StartChild(spec), timeout=timeout)
    if isinstance(reply, _Refusal):
        raise reply.error
    assert isinstance(reply, ActorRef)
    return reply


async def stop_child(supervisor: ActorRef[Any], id: str, *, timeout: float | None = None) -> None:
    """Ask ``supervisor`` to stop child ``id`` for good.

    Raises:
        SupervisionError: There is no such child.
    """
    reply = await supervisor.ask(StopChild(id), timeout=timeout)
    if isinstance(reply, _Refusal):
        raise reply.error
