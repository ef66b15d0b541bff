"""Applications for ``foxactors run --processes`` (run in subprocesses by the tests).

``FOXACTORS_TEST_REDIS_URL`` and ``FOXACTORS_TEST_QUEUE`` say where `redis_app`
consumes.
"""

from __future__ import annotations

import os
from typing import Any

import foxactors as fa
from foxactors import backends


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


class FailsToStart(fa.Actor[Any]):
    """Fails its start, every time: its process exits with status 1."""

    async def on_start(self) -> None:
        raise RuntimeError("the database is unreachable")

    async def receive(self, message: Any) -> None:
        pass


#: A tree that cannot start.
broken = fa.Supervisor.spec("broken", [fa.ChildSpec("db", FailsToStart)])
