"""The runtime behind one actor path: mailbox, lives (incarnations) and final stop.

A `Cell` outlives the actor instances it runs. Its supervisor calls `Cell.run` once
per life: the factory builds a fresh instance, ``on_start`` runs inside the life's
own task group (which also holds the actor's background tasks), then the message
loop pops from the mailbox until the actor stops or crashes. When the actor stops
for good, `Cell.finalize` closes the mailbox and rejects what is left, explicitly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from ._actor import Actor, ActorRef, Ask, Terminated
from ._errors import (
    ActorCrashed,
    ActorError,
    ActorNotFound,
    ActorStopped,
    ConfigurationError,
)
from ._lifecycle import KILLED_EXIT, NORMAL_EXIT, ActorState, Exit, ExitKind
from ._logging import describe, traceback_of
from ._logging import logger as _logger
from ._mailbox import Mailbox

if TYPE_CHECKING:
    from anyio.abc import TaskGroup, TaskStatus

    from ._spec import ChildSpec


#: Messages an actor handles in a row before it yields to the event loop, so that a
#: busy actor never starves the others. Waiting on an empty mailbox yields anyway.
CHECKPOINT_EVERY = 64

Notify = Callable[["Cell", Exit], None]


class Stop:
    """Control message: end the current life, after draining the mailbox or not."""

    __slots__ = ("drain", "exit")

    def __init__(self, drain: bool, exit: Exit) -> None:
        self.drain = drain
        self.exit = exit


class Cell:
    """Everything about one actor path that survives restarts."""

    __slots__ = (
        "_deferred",
        "_done",
        "_in_hand",
        "_stopped",
        "_task_error",
        "_timed_out",
        "_watchers",
        "children",
        "exit",
        "instance",
        "live",
        "log",
        "mailbox",
        "parent",
        "path",
        "ref",
        "restarts",
        "scope",
        "spec",
        "started",
        "started_at",
        "state",
        "tasks",
    )

    def __init__(self, spec: ChildSpec, parent: Cell | None) -> None:
        self.spec = spec
        self.parent = parent
        self.path: str = f"{parent.path}/{spec.id}" if parent is not None else f"/{spec.id}"
        self.mailbox: Mailbox[Any] = Mailbox(spec.mailbox_size, self.path)
        self.ref: ActorRef[Any] = ActorRef(self)
        self.log = _logger.bind(actor=self.path)
        self.state = ActorState.STARTING
        self.restarts = 0
        #: Supervisor bookkeeping (child id -> record), kept across the
        #: supervisor's own restarts so that children keep their cells.
        self.children: dict[str, Any] = {}
        self.instance: Actor[Any] | None = None
        self.live = False
        self.started = False
        self.started_at = 0.0
        self.exit: Exit | None = None
        self.scope: anyio.CancelScope | None = None
        self.tasks: TaskGroup | None = None
        self._deferred: list[tuple[Callable[..., Awaitable[object]], tuple[object, ...]]] | None = (
            None
        )
        self._task_error: Exception | None = None
        #: The message whose handler was cancelled when the life ended (a background
        #: task crashed it, or it was killed), for ``on_crash``.
        self._in_hand: Any = None
        self._timed_out = False
        self._done: anyio.Event | None = None
        self._stopped: anyio.Event | None = None
        self._watchers: list[Cell] | None = None

    # -- one life -------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The last segment of the path: the child id."""
        return self.spec.id

    async def start(self, tasks: TaskGroup, notify: Notify) -> Exception | None:
        """Start a new life of the actor in ``tasks``; return None or the start error.

        The factory and ``on_start`` run in the caller's task, so starting a child
        costs no event-loop round trip; actors that need their own task group while
        starting (supervisors) start inside their life task instead. When the life
        ends, ``notify`` is called with its exit.
        """
        self.state = ActorState.STARTING
        self.started = False
        self._timed_out = False
        if self.exit is None:
            self.mailbox.open = True  # reopen after a drained stop that was not final
        system = self.mailbox.system
        if system:  # a stop request the last life ended (crashed) before reading was for it
            kept = [m for m in system if type(m) is not Stop]
            system.clear()
            system.extend(kept)
        try:
            actor = self.spec.factory()
            if not isinstance(actor, Actor):
                raise ConfigurationError(
                    f"the factory of {self.path} returned {actor!r}, which is not an Actor"
                )
        except Exception as exc:
            return exc
        actor._cell = self
        self.instance = actor
        self._task_error = None
        self._in_hand = None
        self._deferred = []
        self.live = True
        if actor._starts_in_life:
            error: Exception | None = await tasks.start(self._life, actor, notify, True)
            return error
        try:
            await actor.on_start()
        except BaseException as exc:
            self.live = False
            if isinstance(exc, Exception):
                return exc
            raise
        self._mark_started(actor)
        tasks.start_soon(self._life, actor, notify, False)
        return None

    def _mark_started(self, actor: Actor[Any]) -> None:
        self.started = True
        self.started_at = anyio.current_time()
        self.state = ActorState.RUNNING
        self.log.debug("actor.started", actor_class=type(actor).__qualname__)

    async def _life(
        self,
        actor: Actor[Any],
        notify: Notify,
        start_here: bool,
        *,
        task_status: TaskStatus[Exception | None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        exit = KILLED_EXIT
        hooks_ran = False
        try:
            with anyio.CancelScope() as self.scope:
                async with anyio.create_task_group() as tasks:
                    self.tasks = tasks
                    if start_here:
                        try:
                            await actor.on_start()
                        except Exception as exc:
                            tasks.cancel_scope.cancel()
                            task_status.started(exc)
                            return
                        self._mark_started(actor)
                        task_status.started(None)
                    for func, args in self._deferred or ():
                        tasks.start_soon(self._guard, func, args)
                    self._deferred = None
                    exit, message = await self._loop(actor)
                    self.state = ActorState.STOPPING
                    hooks_ran = True
                    await self._after(actor, exit, message)
                    tasks.cancel_scope.cancel()
                self.tasks = None
                error = self._task_error
                if error is not None and hooks_ran:  # failed while the actor was stopping
                    self.log.error(
                        "actor.task_failed", error=describe(error), exc_info=traceback_of(error)
                    )
                elif error is not None:  # a background task failed: a crash
                    exit = Exit(ExitKind.CRASHED, error)
                    if not self.started:
                        task_status.started(error)
                        return
                    self.state = ActorState.STOPPING
                    # The handler it cancelled, if any, had a message: it goes to
                    # on_crash as if the handler had raised (None if it was idle).
                    message = self._in_hand
                    if type(message) is Ask:
                        message = message.message
                    await self._after(actor, exit, message)
        finally:
            self._ended(exit, notify)

    def _ended(self, exit: Exit, notify: Notify) -> None:
        """Close the books of a life that ended with ``exit``; tell the supervisor."""
        self.scope = None
        self.tasks = None
        self._in_hand = None
        self.live = False
        if self._done is not None:
            self._done.set()
            self._done = None
        if self._timed_out:  # cancelled, whether in a handler or in a hook
            exit = KILLED_EXIT
        if self.started:
            if exit is KILLED_EXIT and self._timed_out:
                self.log.warning("actor.killed", reason="did not stop within its shutdown timeout")
            elif exit is KILLED_EXIT:  # the whole subtree is being cancelled: one line each
                self.log.debug("actor.killed", reason="cancelled with its parent")
            notify(self, exit)

    async def _loop(self, actor: Actor[Any]) -> tuple[Exit, Any]:  # noqa: PLR0912 - hot loop, kept inline
        """Handle messages until a stop request; return the exit and failed message."""
        mailbox = self.mailbox
        items = mailbox.items
        system = mailbox.system
        receive = actor.receive
        checkpoint = anyio.lowlevel.checkpoint
        budget = CHECKPOINT_EVERY
        draining: Exit | None = None
        while True:
            if system:
                message = system.popleft()
                if type(message) is Stop:
                    if not message.drain:
                        return message.exit, None
                    draining = message.exit
                    self.state = ActorState.STOPPING
                    continue
            elif items:
                message = items.popleft()
                if mailbox.blocked:
                    mailbox.admit_blocked()
            elif draining is not None:
                return draining, None
            else:
                await mailbox.wait()
                continue
            try:
                if type(message) is Ask:
                    await self._answer(receive, message)
                else:
                    await receive(message)
            except Exception as exc:
                if type(message) is Ask:
                    message = message.message
                return Exit(ExitKind.CRASHED, exc), message
            except BaseException:  # cancelled mid-message: a task crashed the life, or a kill
                self._in_hand = message
                raise
            budget -= 1
            if not budget:
                budget = CHECKPOINT_EVERY
                await checkpoint()

    async def _answer(self, receive: Callable[[Any], Awaitable[Any]], request: Ask) -> None:
        try:
            value = await receive(request.message)
        except Exception as exc:
            crashed = ActorCrashed(f"{self.path} crashed handling the request: {exc!r}")
            crashed.__cause__ = exc
            request.fail(crashed)
            raise
        except BaseException:
            error = self._task_error
            if error is None:
                request.fail(ActorStopped(f"{self.path} was stopped while handling the request"))
            else:  # cancelled because a background task crashed the actor
                crashed = ActorCrashed(
                    f"{self.path} crashed handling the request: a background task raised {error!r}"
                )
                crashed.__cause__ = error
                request.fail(crashed)
            raise
        request.resolve(value)

    async def _after(self, actor: Actor[Any], exit: Exit, message: Any) -> None:
        if exit.kind is ExitKind.CRASHED:
            error = exit.error
            assert isinstance(error, Exception)
            self.log.error(
                "actor.crashed",
                error=describe(error),
                message_type=None if message is None else type(message).__qualname__,
                exc_info=traceback_of(error),
            )
            try:
                await actor.on_crash(message, error)
            except Exception as hook_error:
                self.log.error("actor.on_crash_failed", exc_info=hook_error)
        try:
            await actor.on_stop(exit)
        except Exception as hook_error:
            self.log.error("actor.on_stop_failed", exc_info=hook_error)

    # -- background tasks -----------------------------------------------------------

    def start_task(self, func: Callable[..., Awaitable[object]], args: tuple[object, ...]) -> None:
        """Start a background task in the current life's task group.

        Raises:
            ActorError: The actor is not running (or its life is ending: trio refuses
                new tasks in a task group that is closing).
        """
        if self.tasks is not None:
            guarded = self._guard(func, args)  # made here, so a refused one can be closed
            try:
                self.tasks.start_soon(_given, guarded, name=_name_of(func))
            except RuntimeError as exc:  # trio: "Nursery is closed to new arrivals"
                guarded.close()  # never started: no "coroutine was never awaited" warning
                raise ActorError(f"{self.path}: start_task() while it stops: {exc}") from None
        elif self._deferred is not None:  # called from on_start: begins once it returns
            self._deferred.append((func, args))
        else:
            raise ActorError(f"{self.path}: start_task() needs a running actor")

    async def _guard(
        self, func: Callable[..., Awaitable[object]], args: tuple[object, ...]
    ) -> None:
        try:
            await func(*args)
        except Exception as exc:
            if self._task_error is None:
                self._task_error = exc
            if self.tasks is not None:
                self.tasks.cancel_scope.cancel()

    # -- control from outside ------------------------------------------------------

    def request_self_stop(self) -> None:
        """Stop after the current message, keeping the queue (``Actor.stop``)."""
        self.mailbox.put_system(Stop(drain=False, exit=NORMAL_EXIT))

    def request_stop(self, *, drain: bool, exit: Exit) -> None:
        """Ask the current life to end; with ``drain``, refuse new messages first."""
        if drain:
            self.mailbox.close()
        self.mailbox.put_system(Stop(drain=drain, exit=exit))

    async def stop_life(self, *, drain: bool, exit: Exit, timeout: float | None) -> Exit:
        """Stop the current life within ``timeout`` seconds, then cancel it.

        Returns ``exit``, or a ``KILLED`` exit if the life had to be cancelled.
        """
        if not self.live:
            return exit
        self.request_stop(drain=drain, exit=exit)
        with anyio.move_on_after(timeout):
            await self.wait_done()
        if self.live:
            self.kill()
            await self.wait_done()
        return KILLED_EXIT if self._timed_out else exit

    def kill(self) -> None:
        """Cancel the current life (no ``on_stop``), as after a shutdown timeout."""
        if self.live and self.scope is not None:
            self._timed_out = True
            self.scope.cancel()

    async def wait_done(self) -> None:
        """Wait until the current life (if any) has ended."""
        if not self.live:
            return
        if self._done is None:
            self._done = anyio.Event()
        await self._done.wait()

    # -- stopping for good --------------------------------------------------------

    def finalize(self, exit: Exit) -> None:
        """Stop for good: children first, then reject what is queued, tell watchers."""
        if self.exit is not None:
            return
        for record in reversed(list(self.children.values())):
            record.cell.finalize(exit if exit.abnormal else Exit(ExitKind.SHUTDOWN))
        self.children.clear()
        self.exit = exit
        self.state = ActorState.STOPPED
        mailbox = self.mailbox
        mailbox.close()
        mailbox.system.clear()
        leftovers = mailbox.take_all()
        undelivered = 0
        for message in leftovers:
            if type(message) is Ask:
                message.fail(ActorStopped(f"{self.path} stopped before handling the request"))
            else:
                undelivered += 1
                self._undelivered(message)
        if undelivered:
            self.log.warning("actor.undelivered", count=undelivered)
        for watcher in self._watchers or ():
            if watcher.exit is None:
                watcher.mailbox.put_system(Terminated(self.ref, exit))
        self._watchers = None
        if self._stopped is not None:
            self._stopped.set()
        self.log.debug("actor.stopped", exit=str(exit))

    def _undelivered(self, message: Any) -> None:
        if self.instance is None:
            return
        try:
            self.instance.on_undelivered(message)
        except Exception as hook_error:
            self.log.error("actor.on_undelivered_failed", exc_info=hook_error)

    async def wait_stopped(self) -> Exit:
        """Wait until this actor stops for good; return how it ended."""
        if self.exit is None:
            if self._stopped is None:
                self._stopped = anyio.Event()
            await self._stopped.wait()
        assert self.exit is not None
        return self.exit

    # -- lookup -------------------------------------------------------------------

    def resolve(self, path: str) -> Cell:
        """Return the cell at ``path``: absolute, or relative to this one (``..`` is up).

        Raises:
            ActorNotFound: No actor lives there now.
        """
        parts = [p for p in path.split("/") if p and p != "."]
        cell = self
        if path.startswith("/"):
            while cell.parent is not None:
                cell = cell.parent
            if not parts or parts[0] != cell.spec.id:
                raise ActorNotFound(f"no actor at {path!r}: the root is {cell.path!r}")
            parts = parts[1:]
        for part in parts:
            if part == "..":
                if cell.parent is None:
                    raise ActorNotFound(f"no actor at {path!r}: {cell.path} is the root")
                cell = cell.parent
                continue
            record = cell.children.get(part)
            if record is None:
                raise ActorNotFound(f"no actor at {path!r}: {cell.path} has no child {part!r}")
            cell = record.cell
        return cell

    # -- death watch ---------------------------------------------------------------

    def watch(self, target: Cell) -> None:
        """Deliver `Terminated` to this cell when ``target`` stops for good."""
        if target.exit is not None:
            self.mailbox.put_system(Terminated(target.ref, target.exit))
            return
        if target._watchers is None:
            target._watchers = []
        if self not in target._watchers:
            target._watchers.append(self)

    def unwatch(self, target: Cell) -> None:
        """Undo `watch`."""
        if target._watchers is not None and self in target._watchers:
            target._watchers.remove(self)


def _given(coroutine: Coroutine[Any, Any, None]) -> Coroutine[Any, Any, None]:
    """The task function of `Cell.start_task`: the coroutine it already made."""
    return coroutine


def _name_of(func: Callable[..., object]) -> str:
    """A task's name, as anyio would give it from the function."""
    target = getattr(func, "func", func)  # a functools.partial names its function
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
