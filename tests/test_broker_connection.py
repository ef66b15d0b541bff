"""The one connection actor of every broker, on a link that is not a broker (both loops)."""

from __future__ import annotations

import functools

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from structlog.testing import capture_logs

import foxactors as fa
from foxactors.backends import CONNECTION, GetConnection
from foxactors.backends._connection import BrokerConnection

from .helpers import tree

pytestmark = pytest.mark.anyio


class Link:
    """Connections numbered from 1; `pull` loses the current one, as a broker would."""

    broker = "Test"

    def __init__(self) -> None:
        self.connects = 0
        self.closed: list[str] = []
        self._lost = anyio.Event()

    async def connect(self) -> str:
        self.connects += 1
        self._lost = anyio.Event()
        return f"connection-{self.connects}"

    async def wait_lost(self, connection: str) -> str:
        await self._lost.wait()
        return "the plug was pulled"

    async def close(self, connection: str) -> None:
        self.closed.append(connection)
        self._lost.set()  # closing one ends its wait too, as aio-pika's callbacks do

    def pull(self) -> None:
        self._lost.set()


def spec(link: Link) -> fa.ChildSpec:
    factory = functools.partial(BrokerConnection, link)
    return tree([fa.ChildSpec("connection", factory, backoff=fa.Backoff.none())])


async def test_it_answers_with_its_connection_and_crashes_when_it_is_lost() -> None:
    link = Link()
    async with fa.open_system(spec(link)) as system:
        connection = system.ref("connection")
        assert await connection.ask(CONNECTION) == "connection-1"
        with capture_logs() as logs:
            link.pull()
            await wait_all_tasks_blocked()
        (crashed,) = [e for e in logs if e["event"] == "actor.crashed"]
        assert "lost the Test connection: the plug was pulled" in crashed["error"]
        assert await connection.ask(GetConnection()) == "connection-2"  # rebuilt
        assert system.snapshot().find("/app/connection").restarts == 1  # type: ignore[union-attr]
        assert await connection.ask("something else") is None
    assert link.closed == ["connection-1", "connection-2"]


async def test_closing_it_on_purpose_is_no_loss() -> None:
    link = Link()
    with capture_logs() as logs:
        async with fa.open_system(spec(link)) as system:
            assert await system.ref("connection").ask(CONNECTION) == "connection-1"
            system.stop()
            exit = await system.wait_stopped()
    assert exit.kind is fa.ExitKind.SHUTDOWN
    assert link.closed == ["connection-1"]
    assert [e for e in logs if e["log_level"] in ("warning", "error")] == []
