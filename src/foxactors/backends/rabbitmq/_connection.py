"""`RabbitMQConnection`: the actor that owns the connection of a pipeline's consumers."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from foxactors._actor import Actor
from foxactors._errors import BackendError
from foxactors._lifecycle import Exit
from foxactors.backends._base import CONNECTION

from ._client import why

if TYPE_CHECKING:
    from ._backend import RabbitMQBackend


class RabbitMQConnection(Actor[Any]):
    """Owns one connection for the consumers under the same supervisor.

    Answers `CONNECTION` with it; when the broker closes it or the network drops,
    this actor crashes, so its rest_for_one supervisor rebuilds it and then the
    consumers that depended on it: never a connection back while consumers stay gone.
    """

    def __init__(self, backend: RabbitMQBackend) -> None:
        self._backend = backend
        self._stopping = False

    async def on_start(self) -> None:
        """Connect (a wrong URL or password fails the start, with a clear error)."""
        self.connection = await self._backend.connect()
        self._lost = asyncio.Event()
        self._error: BaseException | None = None
        self.connection.close_callbacks.add(self._on_close)
        self.start_task(self._watch)

    def _on_close(self, _sender: Any, exc: BaseException | None) -> None:
        if not self._stopping:
            self._error = exc
            self._lost.set()

    async def _watch(self) -> None:
        await self._lost.wait()
        raise BackendError(f"lost the RabbitMQ connection: {why(self._error, 'closed')}")

    async def receive(self, message: Any) -> Any:
        """Answer `CONNECTION` with the live connection."""
        if message == CONNECTION:
            if self._lost.is_set():
                raise BackendError("the RabbitMQ connection is lost; reconnecting")
            return self.connection
        return None

    async def on_stop(self, exit: Exit) -> None:
        """Close the connection."""
        self._stopping = True
        with contextlib.suppress(Exception):
            await self.connection.close()
