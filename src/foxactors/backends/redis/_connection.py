"""`RedisLink`: what the shared connection actor needs to know of Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from ._client import ERRORS, TIMEOUT

if TYPE_CHECKING:
    from ._backend import RedisBackend


class RedisLink:
    """Connects with the backend's URL; a client is lost when a health check (PING) fails.

    redis-py pools connections and reconnects silently; the health check, every
    ``health_interval``, is what notices a server gone or a network cut.
    """

    broker = "Redis"

    def __init__(self, backend: RedisBackend) -> None:
        self._backend = backend

    async def connect(self) -> Any:
        """Open a client and check it (see `RedisBackend.connect`)."""
        return await self._backend.connect()

    async def wait_lost(self, connection: Any) -> str:
        """PING every ``health_interval``; return the error of the first that fails."""
        while True:
            await anyio.sleep(self._backend.health_interval)
            try:
                with anyio.fail_after(TIMEOUT):
                    await connection.ping()
            except (*ERRORS, TimeoutError) as exc:
                return str(exc)

    async def close(self, connection: Any) -> None:
        """Close the client."""
        await connection.aclose()
