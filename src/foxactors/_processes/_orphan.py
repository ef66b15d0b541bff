"""A child of ``foxactors run --processes`` ends with its parent, even a killed one.

The parent names itself in the child's environment (`PARENT_PID`); the child asks
the kernel for a signal when the parent dies (Linux's parent-death signal) and then
stops as if the parent had told it to: one SIGTERM to itself, so it drains.

Two things make the plain way (the kernel sending SIGTERM itself) fail:

- The signal can come more than once. It is sent when the *thread* that started the
  child ends, and the child then belongs to another thread of the same parent: a
  parent with threads (the endpoints' requests, the event loop's executor) that is
  killed sends one per thread as they end. A second SIGTERM means "cancel the
  drain" to ``foxactors run``: the child dropped what it held, Redis entries stayed
  pending until their lease ran out.
- The child's output is a pipe nobody reads any more: every line then fails
  (EPIPE), each failure is reported on stderr, the same dead pipe, and the
  interpreter's last flush fails too.

So the kernel sends SIGHUP (the child has no terminal: nothing else sends it), and
its handler, once the parent is really gone (the child's parent is another process
now: a thread of a living parent that ends sends the signal too), points stdout and
stderr at /dev/null, then sends the one SIGTERM; later SIGHUPs are ignored.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
from types import FrameType

#: The environment variable the parent sets to its pid in every child.
PARENT_PID = "FOXACTORS_PARENT_PID"
#: The signal the kernel sends the child when its parent dies.
PARENT_DIED = signal.SIGHUP
_PR_SET_PDEATHSIG = 1


def follow_parent() -> None:
    """In a child: drain (SIGTERM, once) when the parent in `PARENT_PID` dies.

    Nothing outside Linux, or when not started by a parent.
    """
    parent = os.environ.get(PARENT_PID)
    if not parent or not sys.platform.startswith("linux"):
        return
    signal.signal(PARENT_DIED, functools.partial(_on_parent_death, int(parent)))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(PARENT_DIED), 0, 0, 0) != 0:
        return  # not allowed here (a sandbox): the parent's own stop still works
    if os.getppid() != int(parent):  # it died before we asked: no signal would come
        os.kill(os.getpid(), PARENT_DIED)


def _on_parent_death(parent: int, signum: int, frame: FrameType | None) -> None:
    if os.getppid() == parent:  # one of its threads ended, the parent lives
        return
    signal.signal(PARENT_DIED, signal.SIG_IGN)  # the first is enough
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):  # the parent's pipe: nobody reads it now
        os.dup2(devnull, fd)
    os.close(devnull)
    os.kill(os.getpid(), signal.SIGTERM)
