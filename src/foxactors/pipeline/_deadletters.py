"""Dead-letter sinks: where the record of each given-up message is written."""

from __future__ import annotations

import base64
import inspect
import json
import os
import threading
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

import anyio
import attrs

from foxactors._actor import Actor
from foxactors._lifecycle import Exit
from foxactors._message import MessageProperties
from foxactors.backends import Backend, DeadLetter


class DeadLetterSink(Protocol):
    """Receives a record of every dead letter of a pipeline."""

    def write(self, letter: DeadLetter) -> Awaitable[None] | None:
        """Record ``letter``; raising is logged and does not lose the message.

        It may be a coroutine function (``async def write``): the dead-letter actor
        awaits it. Blocking work (a disk sync, a network call) belongs in a worker
        thread (``anyio.to_thread.run_sync``), never on the event loop.
        """


class MemorySink:
    """Keeps dead letters in a list: inspect them in tests and tools."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def write(self, letter: DeadLetter) -> None:
        """Append ``letter`` to `letters`."""
        self.letters.append(letter)


def _encode(letter: DeadLetter) -> str:
    record = attrs.asdict(letter, recurse=False)
    record["body"] = base64.b64encode(letter.body).decode()
    record["properties"] = {
        **attrs.asdict(letter.properties),
        "headers": dict(letter.properties.headers),
    }
    return json.dumps(record, separators=(",", ":"), default=str)


def _decode(line: str) -> DeadLetter:
    record: dict[str, Any] = json.loads(line)
    record["body"] = base64.b64decode(record["body"])
    record["properties"] = MessageProperties(**record["properties"])
    return DeadLetter(**record)


class JsonLinesSink:
    """Appends one JSON object per dead letter to a file (body base64-encoded).

    Each line is synced as written: when ``await sink.write(letter)`` returns, the
    letter is on disk. The writing and the sync run in a worker thread, so a slow
    disk holds up only the dead-letter actor, never the event loop. The file is
    opened for each letter, so it may be moved away (rotated) at any time. Read it
    back with `read_dead_letters`, replay it with `replay_dead_letters`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()  # one line at a time, whichever loop calls

    async def write(self, letter: DeadLetter) -> None:
        """Append ``letter`` as one line; return once it is synced to disk."""
        await anyio.to_thread.run_sync(self._append, _encode(letter) + "\n")

    def _append(self, line: str) -> None:
        with self._lock, self.path.open("a", encoding="utf-8") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())

    def close(self) -> None:
        """Nothing to release: each write opens and closes the file."""


def read_dead_letters(path: str | os.PathLike[str]) -> list[DeadLetter]:
    """Return the dead letters recorded in a JSON-lines file, oldest first."""
    with Path(path).open(encoding="utf-8") as file:
        return [_decode(line) for line in file if line.strip()]


async def replay_dead_letters(
    path: str | os.PathLike[str], backend: Backend, queue: str | None = None
) -> int:
    """Publish every letter of a JSON-lines file again, with its original properties.

    Letters go back to their own queue unless ``queue`` is given. Letters whose body
    does not decode as JSON (they were dead-lettered for that) are skipped. Returns
    the number published.
    """
    published = 0
    for letter in read_dead_letters(path):
        try:
            payload = json.loads(letter.body)
        except ValueError:
            continue
        await backend.publish(queue or letter.queue, payload, properties=letter.properties)
        published += 1
    return published


class DeadLetterActor(Actor[DeadLetter]):
    """Writes each dead letter it is told about to every sink.

    The backend's dead-letter queue holds the message itself; sinks keep a record
    (a file, a list, your monitoring). A failing sink is logged and skipped.
    """

    def __init__(self, sinks: list[DeadLetterSink]) -> None:
        self.sinks = sinks

    async def receive(self, message: DeadLetter) -> None:
        """Write ``message`` to every sink."""
        for sink in self.sinks:
            try:
                written = sink.write(message)
                if inspect.isawaitable(written):
                    await written
            except Exception as exc:
                self.log.error("dead_letter_sink.failed", sink=type(sink).__name__, error=str(exc))

    async def on_stop(self, exit: Exit) -> None:
        """Close the sinks that can be closed."""
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if callable(close):
                close()
