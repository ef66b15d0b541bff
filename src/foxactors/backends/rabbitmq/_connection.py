"""`RabbitMQLink`: what the shared connection actor needs to know of RabbitMQ."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ._client import why

if TYPE_CHECKING:
    from ._backend import RabbitMQBackend


class RabbitMQLink:
    """Connects with the backend's URL; a connection is lost when aio-pika closes it."""

    broker = "RabbitMQ"

    def __init__(self, backend: RabbitMQBackend) -> None:
        self._backend = backend

    async def connect(self) -> Any:
        """Open a connection (see `RabbitMQBackend.connect`)."""
        return await self._backend.connect()

    async def wait_lost(self, connection: Any) -> str:
        """Return once ``connection`` closes, with the broker's or the network's reason."""
        # aio-pika tells why a connection closed only to its close callbacks: the one
        # callback here hands the error over to this task and wakes it.
        lost = asyncio.Event()
        errors: list[BaseException | None] = []

        def on_close(_sender: Any, exc: BaseException | None) -> None:
            errors.append(exc)
            lost.set()

        connection.close_callbacks.add(on_close)
        try:
            # (and if it closed before: aio-pika clears ``connected`` when it does)
            if connection.connected.is_set() and not connection.is_closed:
                await lost.wait()
        finally:
            connection.close_callbacks.discard(on_close)
        return why(errors[0] if errors else None, "closed")

    async def close(self, connection: Any) -> None:
        """Close ``connection``."""
        await connection.close()
