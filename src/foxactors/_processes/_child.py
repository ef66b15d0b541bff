"""`WorkerProcess`: one child of the parent, across its restarts.

Each life is ``python -m foxactors run APP ...`` in a session of its own (a Ctrl-C
in the terminal reaches the parent only, which forwards one SIGTERM: a child never
sees the signal twice, which it would take as "cancel the drain"). Its output is
read line by line and handed to the parent whole; the last non-empty line is kept
as the child's error, should it die.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence

import anyio
import attrs

from foxactors._logging import get_logger

from ._orphan import PARENT_PID
from ._output import Lines, error_of

log = get_logger("foxactors.processes")

#: Receives each line a child prints, with the child's index and pid.
LineSink = Callable[[str, int, int], None]


_blocked: list[set[int | signal.Signals]] = []  # the mask before, while children are spawned


@contextlib.contextmanager
def _sigterm_blocked() -> Iterator[None]:
    """SIGTERM blocked in this thread while a child is spawned: the child starts so.

    A child told to stop while it still starts (Python's start, the imports, building
    its tree) would die of the signal's default action, status -15, without draining
    the little it may hold. Started with SIGTERM blocked, it keeps the signal pending
    until `foxactors.run` listens for it and unblocks it (``_system._serve``), then
    drains and exits 0. Spawns overlap (their awaits), so the parent's mask is put
    back once the last one is done; a SIGTERM to the parent meanwhile waits as long.
    """
    if not _blocked:
        _blocked.append(signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}))
    else:
        _blocked.append(set())
    try:
        yield
    finally:
        before = _blocked.pop()
        if not _blocked:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)


@attrs.define
class WorkerProcess:
    """One worker slot: its current process, its restarts, what it last said.

    Attributes:
        index: The slot's number, from 1.
        port: The loopback port its endpoints are served on, if the parent serves any.
        pid: The current (or last) process id, None before the first start.
        restarts: How many times the parent restarted it.
        last_error: The last line it printed before it died (its error, usually).
        reloading: Stopped for a reload: restart at once, without counting a crash.
    """

    index: int
    port: int | None = None
    pid: int | None = None
    restarts: int = 0
    last_error: str = ""
    reloading: bool = False
    running: bool = False
    _process: anyio.abc.Process | None = None

    @property
    def url(self) -> str | None:
        """The base URL of its endpoints, if it serves any."""
        return None if self.port is None else f"http://127.0.0.1:{self.port}"

    async def run(self, argv: Sequence[str], sink: LineSink) -> int:
        """Start one life of the child, pass its lines to ``sink``; its exit status.

        A negative status is the signal that ended it (as `subprocess` reports).
        """
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "FOXACTORS_PROCESS_INDEX": str(self.index),
            PARENT_PID: str(os.getpid()),
        }
        with _sigterm_blocked():  # the child inherits the mask: see `_sigterm_blocked`
            process = await anyio.open_process(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self._process, self.pid, self.running = process, process.pid, True
        log.info("process.started", process=self.index, pid=self.pid, restarts=self.restarts)
        last = ""
        try:
            lines = Lines()
            assert process.stdout is not None
            async for chunk in process.stdout:
                for raw in lines.feed(chunk):
                    last = self._pass(raw, sink) or last
            for raw in lines.rest():
                last = self._pass(raw, sink) or last
            status = await process.wait()
        except BaseException:
            with anyio.CancelScope(shield=True):
                self.signal(signal.SIGKILL)
                await process.wait()
            raise
        finally:
            self.running = False
        self.last_error = error_of(last) if last else f"exited with status {status}"
        return status

    def _pass(self, raw: bytes, sink: LineSink) -> str:
        line = raw.decode("utf-8", "replace")
        sink(line, self.index, self.pid or 0)
        return line if line.strip() else ""

    def signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` to the running process (nothing if it is not running)."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it died meanwhile
                self._process.send_signal(signum)
