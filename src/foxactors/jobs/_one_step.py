"""`OneStep`: an enqueue whose record and delivery one Redis script writes together.

When the job store is a `RedisJobStore` on the Redis server and database that the
`RedisBackend` publishes to, the script that creates a job's record adds its stream
entry too (``lua/create.lua``): one round trip instead of three (create, XADD,
commit), and never a record without its delivery or a delivery without its record,
so there is nothing to commit or discard after. Deliveries that take more than one
XADD (delayed ones, a fair queue's) go the usual way.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from foxactors._codec import JsonCodec
from foxactors._message import MessageProperties
from foxactors.backends import Backend

from ._record import JobRecord
from ._store import JobStore


class OneStep:
    """Creates jobs due now with their stream entries, in one script call.

    Made by `of`, for a backend and store that allow it.
    """

    def __init__(self, backend: Any, store: Any) -> None:
        self._backend = backend  # a RedisBackend (duck-typed: no redis import here)
        self._store = store  # a RedisJobStore that adds_entries_of(backend)

    @staticmethod
    def of(backend: Backend, store: JobStore) -> OneStep | None:
        """A `OneStep` if ``store`` can write ``backend``'s deliveries, else None.

        Only with the JSON codec, whose bodies are always UTF-8 text (the script's
        arguments are JSON).
        """
        adds = getattr(store, "adds_entries_of", None)
        codec = getattr(backend, "codec", None)
        if adds is None or type(codec) is not JsonCodec or not adds(backend):
            return None
        return OneStep(backend, store)

    def takes(self, queue: str) -> bool:
        """Whether a delivery to ``queue`` is one XADD (not a fair queue's script)."""
        return self._backend.fair_shares(queue) is None

    async def create(
        self, records: list[JobRecord], properties: list[MessageProperties]
    ) -> list[tuple[JobRecord, bool] | Exception]:
        """Create ``records`` (due now, to queues it `takes`) with their deliveries.

        Per record what `JobStore.create` answers (the record is written committed),
        or the error of a delivery Redis refused (nothing of that job is left). A
        delivery's span (tracing on) ends when the script has answered.

        Raises:
            EncodeError: A payload the codec cannot encode; nothing was written.
            ConfigurationError: A bad priority, queue name or header; nothing written.
        """
        backend = self._backend
        commands: list[list[str]] = []
        spans: list[AbstractContextManager[Any] | None] = []
        try:
            for record, given in zip(records, properties, strict=True):
                command, span = backend.entry_command(record.queue, dict(record.args), given)
                commands.append(command)
                spans.append(span)
            committed = [record.changed(committed=True) for record in records]
            answers: list[tuple[JobRecord, bool] | Exception] = list(
                await self._store.create_published(committed, commands)
            )
        except BaseException as exc:
            for span in spans:
                if span is not None:
                    span.__exit__(type(exc), exc, exc.__traceback__)
            raise
        for span, answer in zip(spans, answers, strict=True):
            if span is not None:  # a refused entry's publish failed: its span says so
                error = answer if isinstance(answer, Exception) else None
                span.__exit__(type(error) if error else None, error, None)
        return answers
