"""Running a tree: inside a service (`open_system`) or as a script (`run`)."""

from __future__ import annotations

import gc
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc

from ._actor import ActorRef
from ._cell import Cell
from ._errors import ConfigurationError, StartError
from ._gc import freeze_gc
from ._lifecycle import KILLED_EXIT, SHUTDOWN_EXIT, Exit, ExitKind
from ._logging import logger as _logger
from ._snapshot import ActorSnapshot, statistics_of, take_snapshot
from ._spec import ChildSpec

CANCEL_GRACE = 5.0
"""Seconds the ordered shutdown may take when the block around a system is cancelled
(or the root's own ``shutdown``, if shorter); then the tree is killed."""


class ActorSystem:
    """A running tree: its root, lookup by path, snapshots and shutdown.

    Get one from `open_system` (or inside `run`); do not construct it directly.
    """

    def __init__(self, root: ChildSpec) -> None:
        if not isinstance(root, ChildSpec):
            raise ConfigurationError(
                f"the root must be a ChildSpec (e.g. Supervisor.spec('app', [...])), got {root!r}"
            )
        self._root = Cell(root, None)
        self._cancel: anyio.CancelScope | None = None
        self.failure: BaseException | None = None

    @property
    def root(self) -> ActorRef[Any]:
        """The root actor's reference."""
        return self._root.ref

    def ref(self, path: str) -> ActorRef[Any]:
        """Return the reference of the actor at ``path``.

        ``path`` is absolute (``/app/pool/worker-3``) or relative to the root
        (``pool/worker-3``).

        Raises:
            ActorNotFound: No actor lives there now.
        """
        return self._root.resolve(path).ref

    def snapshot(self) -> ActorSnapshot:
        """Return a snapshot of the whole tree (paths, states, restarts, mailboxes)."""
        return take_snapshot(self._root)

    def statistics(self, path: str) -> object | None:
        """Return what the actor at ``path`` reports of itself, now, without an ask.

        That is its `Actor.statistics`: a `SupervisorStatistics` for a supervisor,
        a `PoolStatistics`, `BreakerStatistics` or `RateLimitStatistics` for those
        pipeline actors, None for actors that report nothing and while the actor
        is not running (e.g. waiting for a restart). ``path`` is as for `ref`; its
        mailbox is ``system.ref(path).statistics()``.

        Raises:
            ActorNotFound: No actor lives there now.
        """
        return statistics_of(self._root.resolve(path))

    def stop(self) -> None:
        """Begin a graceful shutdown: the root stops its children in reverse order."""
        if self._root.live:
            self._root.request_stop(drain=True, exit=SHUTDOWN_EXIT)

    async def wait_stopped(self) -> Exit:
        """Wait until the root has stopped for good; return how it ended."""
        return await self._root.wait_stopped()

    async def _stop(self, *, cancelled: bool) -> None:
        """Leave the block: shut down gracefully, or as killed if cancelled (even then)."""
        if not cancelled:
            try:
                await self._shutdown()
                return
            except BaseException:  # cancelled from outside while it stopped gracefully
                with anyio.CancelScope(shield=True):
                    await self._stop_cancelled()
                raise
        with anyio.CancelScope(shield=True):
            await self._stop_cancelled()

    async def _shutdown(self) -> None:
        root = self._root
        await root.stop_life(drain=True, exit=SHUTDOWN_EXIT, timeout=root.spec.shutdown)

    async def _stop_cancelled(self) -> None:
        """Stop the tree as killed: hooks run, nothing drains, `CANCEL_GRACE` at most."""
        root = self._root
        timeout = (
            CANCEL_GRACE if root.spec.shutdown is None else min(root.spec.shutdown, CANCEL_GRACE)
        )
        await root.stop_life(drain=False, exit=KILLED_EXIT, timeout=timeout)

    def kill(self) -> None:
        """Cancel the whole tree now, as a process that dies: no drain, no ``on_stop``.

        What the tree held is left as a crash leaves it (unsettled deliveries go
        back when their broker notices); leave the block or cancel it afterwards.
        """
        self._root.kill()

    def _root_exited(self, cell: Cell, exit: Exit) -> None:
        # Only a crash is a failure. A kill means the root was cancelled: after its
        # shutdown timeout (logged as actor.killed), or with the block around it.
        if exit.kind is ExitKind.CRASHED:
            self.failure = exit.error
            _logger.error("system.failed", root=cell.path, exit=str(exit))
            if self._cancel is not None:
                self._cancel.cancel()
        cell.finalize(exit)


@asynccontextmanager
async def open_system(root: ChildSpec) -> AsyncIterator[ActorSystem]:
    """Start the tree under ``root`` and yield its `ActorSystem`; stop it on exit.

    "Started" means every actor's start hook has completed. Leaving the block shuts
    the tree down gracefully (reverse order, each within its shutdown timeout). If
    the root fails (e.g. its supervisor gave up), the block is cancelled and the
    root's error is raised.

    Cancelling the block from outside (a timeout, a cancelled task group) stops the
    tree as killed, in the same order but without draining: each actor's ``on_stop``
    still runs (given ``KILLED``), so sources give their deliveries back and
    connections close. The actors do not see that cancel itself; the stop may take
    `CANCEL_GRACE` seconds (or the root's ``shutdown``, if shorter), then what is
    left is cancelled. Then the cancel goes on.

    Raises:
        StartError: The tree failed to start (the message names the child).
        RestartIntensityExceeded: The root supervisor gave up while running.
    """
    system = ActorSystem(root)
    body_error: Exception | None = None
    start_error: Exception | None = None
    cancelled = False
    try:
        async with anyio.create_task_group() as tasks:
            system._cancel = tasks.cancel_scope
            start_error = await tasks.start(_host, system)
            if start_error is None:
                try:
                    yield system
                except Exception as exc:  # re-raised below, outside the task group
                    body_error = exc
                except BaseException:  # cancelled from outside (or the root failed)
                    cancelled = True
                    raise
                finally:
                    await system._stop(cancelled=cancelled)
    finally:
        cause = start_error or system.failure
        system._root.finalize(Exit(ExitKind.CRASHED, cause) if cause else SHUTDOWN_EXIT)
    if start_error is not None:
        if isinstance(start_error, StartError):
            raise start_error
        raise StartError(
            f"{system._root.path} failed to start: {type(start_error).__name__}: {start_error}"
        ) from start_error
    if body_error is not None:
        raise body_error
    if system.failure is not None:
        raise system.failure


async def _host(
    system: ActorSystem, *, task_status: anyio.abc.TaskStatus[Exception | None]
) -> None:
    """Run the tree where a cancel from outside does not reach it (see `open_system`)."""
    with anyio.CancelScope(shield=True):
        async with anyio.create_task_group() as actors:
            task_status.started(await system._root.start(actors, system._root_exited))


def run(
    root: ChildSpec,
    *,
    backend: str = "asyncio",
    backend_options: dict[str, Any] | None = None,
) -> Exit:
    """Run the tree under ``root`` until it stops, or until SIGINT/SIGTERM.

    The first signal starts a graceful, ordered shutdown; a second one cancels
    whatever is still stopping. Call from the main thread of a script: it owns the
    process, so once the tree has started it freezes the start-up objects out of the
    garbage collector's sight (`freeze_gc`, unless something is frozen already), and
    unfreezes them when the tree has stopped.

    Returns:
        How the root ended.

    Raises:
        StartError: The tree failed to start.
        RestartIntensityExceeded: The root supervisor gave up.
    """
    return anyio.run(_serve, root, backend=backend, backend_options=backend_options)


async def _serve(root: ChildSpec) -> Exit:
    with anyio.CancelScope() as force:
        # Listen before starting, so a signal during the start is not fatal: it is
        # handled (as a graceful stop) as soon as the tree is up.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            # A child of `foxactors run --processes` starts with SIGTERM blocked (a stop
            # during its start waits for this): pending, it comes now, to the receiver.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
            async with open_system(root) as system, anyio.create_task_group() as tasks:
                froze = not gc.get_freeze_count() and freeze_gc() > 0

                async def on_signals() -> None:
                    stopping = False
                    async for signum in signals:
                        name = signal.Signals(signum).name
                        if stopping:
                            _logger.warning("system.signal", signal=name, action="cancel")
                            system.kill()
                            force.cancel()
                        else:
                            _logger.info("system.signal", signal=name, action="shutdown")
                            stopping = True
                            system.stop()

                tasks.start_soon(on_signals)
                try:
                    exit = await system.wait_stopped()
                finally:
                    if froze:  # what it froze may be collected again once it has ended
                        gc.unfreeze()
                tasks.cancel_scope.cancel()
            return exit
    return Exit(ExitKind.KILLED)
