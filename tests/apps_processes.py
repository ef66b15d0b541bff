"""Applications for ``foxactors run --processes`` (run in subprocesses by the tests).

``FOXACTORS_TEST_REDIS_URL`` and ``FOXACTORS_TEST_QUEUE`` say where `redis_app`
consumes. `recording_app` consumes ``FOXACTORS_TEST_QUEUE`` on the broker of
``FOXACTORS_TEST_BROKER_URL`` (``amqp://`` or ``redis://``) and writes each handled
number to a file of its process's own (named by its pid) in ``PROCS_RECORD_DIR``;
``PROCS_WORK_SECONDS`` is the work per message. A process that reaches its
``PROCS_STALL_AFTER``-th message hangs from then on, holding unacked deliveries; with
``PROCS_STALL_TOKEN`` (a file path), only the first to get there does (it takes the
token: removes the file): one process of all the children, in all their lives, so
that its restart does not hang again.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import structlog

import foxactors as fa
from foxactors import backends

from .apps import Ready  # says app.ready once its tree runs (and drains on SIGTERM)

log = structlog.get_logger("tests.processes")


async def _handle(message: fa.Message) -> None:
    pass


def redis_app() -> fa.WorkerApp:
    """A worker app on the Redis stream the test names."""
    url = os.environ["FOXACTORS_TEST_REDIS_URL"]
    backend = backends.RedisBackend(url, poll_interval=0.01)
    return (
        fa.WorkerApp("procs")
        .add_worker(_handle)
        .with_backend(backend, os.environ["FOXACTORS_TEST_QUEUE"])
    )


_handled = 0
_stalling = False


def _take_the_stall_token() -> bool:
    token = os.environ.get("PROCS_STALL_TOKEN")
    if not token:
        return True  # every process stalls
    try:
        os.unlink(token)  # only one process can remove it
    except FileNotFoundError:
        return False
    return True


async def _record(message: fa.Message) -> None:
    global _handled, _stalling  # noqa: PLW0603 - one process, one count: the point of the app
    _handled += 1
    if _handled == int(os.environ.get("PROCS_STALL_AFTER", "-1")):
        _stalling = _take_the_stall_token()
    stall = _stalling  # decided when the message starts, not when it is recorded
    line = f"{message.payload['n']}{' stalled' if stall else ''}\n"
    records = Path(os.environ["PROCS_RECORD_DIR"])
    async with await anyio.open_file(records / str(os.getpid()), "a") as out:
        await out.write(line)
    if stall:
        await anyio.sleep_forever()  # held, unacked, until the process is killed
    await anyio.sleep(float(os.environ.get("PROCS_WORK_SECONDS", "0")))


def recording_app() -> fa.WorkerApp:
    """A worker app that records what each process handled (see the module)."""
    url = os.environ["FOXACTORS_TEST_BROKER_URL"]
    backend: backends.Backend
    if url.startswith("redis"):
        leases = backends.Leases(claim_min_idle=1.0)
        backend = backends.RedisBackend(url, poll_interval=0.01, leases=leases)
    else:
        backend = backends.RabbitMQBackend(url)
    return (
        fa.WorkerApp("records")
        .add_worker(_record)
        .with_concurrency_limit(4)
        .with_prefetch(10)
        .with_drain_timeout(10)
        .with_backend(backend, os.environ["FOXACTORS_TEST_QUEUE"])
    )


class FailsToStart(fa.Actor[Any]):
    """Fails its start, every time: its process exits with status 1."""

    async def on_start(self) -> None:
        raise RuntimeError("the database is unreachable")

    async def receive(self, message: Any) -> None:
        pass


#: A tree that cannot start.
broken = fa.Supervisor.spec("broken", [fa.ChildSpec("db", FailsToStart)])


class IgnoresSigterm(fa.Actor[Any]):
    """In the first child only: ignores SIGTERM from its start on (it never drains)."""

    async def on_start(self) -> None:
        stubborn = os.environ.get("FOXACTORS_PROCESS_INDEX") == "1"
        if stubborn:  # after `foxactors run` listens for it: the kernel now drops it
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log.info("app.ready", ignores_sigterm=stubborn)

    async def receive(self, message: Any) -> None:
        pass


#: A tree whose first child ignores SIGTERM; the others stop as usual.
stubborn = fa.Supervisor.spec("stubborn", [fa.ChildSpec("ignores", IgnoresSigterm)])


def slow_second() -> fa.ChildSpec:
    """A tree whose second child is still starting until ``PROCS_GATE`` (a path) exists:
    it has not built its tree, let alone listened for signals."""
    if os.environ.get("FOXACTORS_PROCESS_INDEX") == "2":
        log.info("app.gated")
        gate = Path(os.environ["PROCS_GATE"])
        while not gate.exists():
            time.sleep(0.01)  # a slow import, say: nothing async runs yet
    return fa.Supervisor.spec("slow", [fa.ChildSpec("ready", Ready)])
