"""`ProcessSupervisor`: the parent, a supervisor whose children are worker processes.

OTP's rules, one level up. A child that dies (a non-zero status, a signal) is
restarted after an exponential delay (`Backoff`, capped, reset once a child stayed
up for its stable period); every restart of every child counts against one
`RestartIntensity`: more than ``max_restarts`` within ``within`` seconds and the
parent stops all its children and exits non-zero, naming the reason and the last
error of the child that died. A child that exits with status 0 by itself is done
and is not restarted.

The first SIGTERM or SIGINT sends SIGTERM to every child (each drains, as
``foxactors run`` does) and the parent waits for them; a second signal kills them
(SIGKILL) and the parent exits at once. A child still running ``stop_timeout``
seconds after its SIGTERM (it ignores the signal, or its drain hangs) is killed
(SIGKILL), said in the log, and the parent exits non-zero.
"""

from __future__ import annotations

import random
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence

import anyio
import attrs

from foxactors._logging import get_logger
from foxactors._policy import Backoff, RestartIntensity

from ._child import WorkerProcess
from ._output import render

log = get_logger("foxactors.processes")

#: The delay before a restart: 0.1 s, doubling, at most 5 s; reset after 10 s up.
RESTART_BACKOFF = Backoff(min_delay=0.1, max_delay=5.0, reset_after=10.0)


@attrs.frozen
class ProcessPlan:
    """What the parent runs.

    Attributes:
        argv: The command of one child, without its HTTP options.
        processes: How many children.
        log_format: ``console`` or ``json``: how the children's lines are marked.
        http: The parent's (host, port) for the merged endpoints, or None.
        backoff: The delay before each restart.
        intensity: The restarts tolerated in a window, for all children together.
        reload: Restart the children when a .py file under the current directory changes.
        stop_timeout: Seconds a child has to exit after SIGTERM before it is killed.
    """

    argv: tuple[str, ...]
    processes: int
    log_format: str = "console"
    http: tuple[str, int] | None = None
    backoff: Backoff = attrs.field(factory=lambda: RESTART_BACKOFF)
    intensity: RestartIntensity = attrs.field(factory=RestartIntensity)
    reload: bool = False
    stop_timeout: float = 60.0


class ProcessSupervisor:
    """Runs a `ProcessPlan` until its children end, it gives up, or a signal stops it."""

    def __init__(self, plan: ProcessPlan, write: Callable[[str], None] | None = None) -> None:
        self.plan = plan
        self.workers = [WorkerProcess(index) for index in range(1, plan.processes + 1)]
        self._write = write or _write_stdout
        self._history: tuple[float, ...] = ()
        self._stop = anyio.Event()
        self.failure: str | None = None
        self.killed = False
        self.overdue: list[str] = []  # children killed after the stop timeout
        self._tasks: anyio.abc.TaskGroup | None = None

    @property
    def stopping(self) -> bool:
        """Whether the children are being stopped (a signal, or the parent gave up)."""
        return self._stop.is_set()

    def _line(self, line: str, index: int, pid: int) -> None:
        self._write(render(line, index=index, pid=pid, fmt=self.plan.log_format))

    def argv_of(self, worker: WorkerProcess) -> list[str]:
        """The command of ``worker``: the plan's, serving on its own loopback port."""
        argv = list(self.plan.argv)
        if worker.port is not None:
            argv += ["--http-host", "127.0.0.1", "--http-port", str(worker.port)]
        return argv

    async def run(self) -> int:
        """Run the children; the parent's exit status (0 after a clean stop)."""
        from ._http import free_port, make_app, serve  # noqa: PLC0415 - only with --http-port

        if self.plan.http is not None:
            for worker in self.workers:
                worker.port = free_port()
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                tasks.start_soon(self._on_signals, signals, tasks.cancel_scope)
                if self.plan.http is not None:
                    url = await tasks.start(
                        serve, make_app(self.workers, lambda: self.stopping), *self.plan.http
                    )
                    log.info("processes.http.serving", url=url)
                if self.plan.reload:
                    from ._reload import watch  # noqa: PLC0415 - the reload extra

                    tasks.start_soon(watch, self._reload, self._stop)
                log.info("processes.starting", processes=self.plan.processes)
                async with anyio.create_task_group() as keepers:
                    for worker in self.workers:
                        keepers.start_soon(self._keep, worker)
                tasks.cancel_scope.cancel()
        if self.killed:
            log.warning("processes.killed")
            return 1
        if self.failure is None and self.overdue:
            timeout = f"{self.plan.stop_timeout:g}s"
            self.failure = f"killed after --stop-timeout {timeout}: {', '.join(self.overdue)}"
        if self.failure is not None:
            log.error("processes.failed", reason=self.failure)
            return 1
        log.info("processes.stopped")
        return 0

    async def _keep(self, worker: WorkerProcess) -> None:
        """Run ``worker``'s lives until it is done, stopped, or the parent gives up."""
        attempt = -1
        while not self._stop.is_set():
            started = anyio.current_time()
            status = await worker.run(self.argv_of(worker), self._line)
            uptime = anyio.current_time() - started
            if self._stop.is_set():
                log.info("process.stopped", process=worker.index, pid=worker.pid, status=status)
                return
            if worker.reloading:
                worker.reloading = False
                continue
            if status == 0:
                log.info("process.done", process=worker.index, pid=worker.pid)
                return
            log.warning(
                "process.died",
                process=worker.index,
                pid=worker.pid,
                status=_status(status),
                error=worker.last_error,
            )
            admitted, self._history = self.plan.intensity.admit(self._history, anyio.current_time())
            if not admitted:
                intensity = self.plan.intensity
                self.give_up(
                    f"more than {intensity.max_restarts} restarts within {intensity.within:g}s; "
                    f"process {worker.index} {_status(status)}: {worker.last_error}"
                )
                return
            attempt = self.plan.backoff.next_attempt(attempt, uptime)
            delay = self.plan.backoff.delay(attempt, random.random())
            worker.restarts += 1
            log.info("process.restarting", process=worker.index, delay=round(delay, 3))
            with anyio.move_on_after(delay):
                await self._stop.wait()

    def give_up(self, reason: str) -> None:
        """Stop every child and exit non-zero with ``reason``."""
        if self.failure is None:
            self.failure = reason
        self.stop()

    def stop(self) -> None:
        """Tell every child to drain (SIGTERM); each is not restarted."""
        self._stop.set()
        for worker in self.workers:
            self._terminate(worker)

    def _terminate(self, worker: WorkerProcess) -> None:
        """SIGTERM ``worker``, and SIGKILL it if it still runs after the stop timeout."""
        if not worker.running:
            return
        worker.signal(signal.SIGTERM)
        if self._tasks is not None:
            self._tasks.start_soon(self._kill_when_overdue, worker, worker.pid)

    async def _kill_when_overdue(self, worker: WorkerProcess, pid: int | None) -> None:
        await anyio.sleep(self.plan.stop_timeout)
        if worker.running and worker.pid == pid:  # the same life, still there
            log.warning(
                "process.stop_timeout",
                process=worker.index,
                pid=pid,
                timeout=self.plan.stop_timeout,
                action="kill",
            )
            if not worker.reloading:
                self.overdue.append(f"process {worker.index} (pid {pid})")
            worker.signal(signal.SIGKILL)

    def kill(self) -> None:
        """Kill every child (SIGKILL)."""
        self.killed = True
        self._stop.set()
        for worker in self.workers:
            worker.signal(signal.SIGKILL)

    def _reload(self, changes: Sequence[str]) -> None:
        log.info("processes.reloading", changed=sorted(changes)[:5])
        for worker in self.workers:
            if worker.running:
                worker.reloading = True
                self._terminate(worker)

    async def _on_signals(self, signals: AsyncIterator[int], scope: anyio.CancelScope) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if self.stopping:
                log.warning("processes.signal", signal=name, action="kill")
                self.kill()
            else:
                log.info("processes.signal", signal=name, action="drain")
                self.stop()


def _status(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exited with status {status}"


def _write_stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
