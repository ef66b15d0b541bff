"""`SourceKeeper`: an actor beside the consumer that runs one job on its source.

A backend's `intake_actors` are made of these: settling a broker source's decisions,
renewing Redis leases, reclaiming, scheduling. Each owns its job's task: when the
job fails, or the consumer is rebuilt, the rest_for_one intake restarts it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from foxactors._actor import Actor
from foxactors._errors import BackendError

from ._messages import GetSource

S = TypeVar("S")  # the kind of source the job works on


class SourceKeeper(Actor[Any], Generic[S]):
    """Asks its sibling ``consumer`` for the source (`GetSource`) and runs ``job`` on it.

    Args:
        job: What to run on the source, until it returns or the actor stops.
        kind: The class the source must be (another answer fails the start).
    """

    def __init__(self, job: Callable[[S], Awaitable[object]], kind: type[S]) -> None:
        self._job = job
        self._kind = kind

    async def on_start(self) -> None:
        """Find the consumer's source and run the job on it."""
        source = await self.find("../consumer").ask(GetSource(), timeout=30)
        if not isinstance(source, self._kind):
            raise BackendError(f"the consumer answered {source!r}, not a {self._kind.__name__}")
        self.start_task(functools.partial(self._job, source))

    async def receive(self, message: Any) -> Any:
        """Nothing to answer: the job runs in the background."""
        return None


def keeper(job: Callable[[S], Awaitable[object]], kind: type[S]) -> Callable[[], Actor[Any]]:
    """A factory of a `SourceKeeper` running ``job`` on a source of ``kind``."""
    return functools.partial(SourceKeeper, job, kind)
