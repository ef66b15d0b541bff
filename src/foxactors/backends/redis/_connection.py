"""`RedisConnection`: the actor that owns the client of a pipeline's consumers."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import anyio

from foxactors._actor import Actor
from foxactors._errors import BackendError
from foxactors._lifecycle import Exit
from foxactors.backends._base import CONNECTION

from ._client import ERRORS, TIMEOUT

if TYPE_CHECKING:
    from ._backend import RedisBackend


class RedisConnection(Actor[Any]):
    """Owns the client of the consumers under the same supervisor, and checks it.

    Answers `CONNECTION` with the client. A failed health check (PING) crashes this
    actor, so its rest_for_one supervisor rebuilds it and then everything after it.
    """

    def __init__(self, backend: RedisBackend) -> None:
        self._backend = backend

    async def on_start(self) -> None:
        """Connect (a wrong URL or password fails the start, with a clear error)."""
        self.client = await self._backend.connect()
        self.start_task(self._watch)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._backend.health_interval)
            try:
                with anyio.fail_after(TIMEOUT):
                    await self.client.ping()
            except (*ERRORS, TimeoutError) as exc:
                raise BackendError(f"lost the Redis connection: {exc}") from None

    async def receive(self, message: Any) -> Any:
        """Answer `CONNECTION` with the client."""
        return self.client if message == CONNECTION else None

    async def on_stop(self, exit: Exit) -> None:
        """Close the client."""
        with contextlib.suppress(Exception):
            await self.client.aclose()
