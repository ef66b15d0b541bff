"""Applications for the CLI tests (run in subprocesses by ``foxactors run``)."""

from __future__ import annotations

import functools
from typing import Any

import structlog

import foxactors as fa

log = structlog.get_logger("apps")


class Service(fa.Actor[Any]):
    """Runs until stopped; says when it starts and stops."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def on_start(self) -> None:
        log.info("service.started", name=self.name)

    async def receive(self, message: Any) -> None:
        pass

    async def on_stop(self, exit: fa.Exit) -> None:
        log.info("service.stopped", name=self.name, exit=exit.kind.value)


class Ready(fa.Actor[Any]):
    async def on_start(self) -> None:
        log.info("app.ready")

    async def receive(self, message: Any) -> None:
        pass


def forever() -> fa.ChildSpec:
    """A tree that runs until a signal stops it."""
    return fa.Supervisor.spec(
        "svc",
        [fa.ChildSpec(n, functools.partial(Service, n)) for n in ("db", "api", "web")]
        + [fa.ChildSpec("ready", Ready)],
    )


not_a_tree = 42


async def _ignore(message: fa.Message) -> None:
    pass


#: A WorkerApp bound to a backend: ``foxactors run`` builds and runs it.
bound_app = fa.WorkerApp("svc").add_worker(_ignore).with_backend(fa.MemoryBackend(), "q")
