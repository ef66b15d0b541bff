"""Dead-letter sinks: where the record of each given-up message is written."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import IO, Any, Protocol

import attrs

from foxactors._actor import Actor
from foxactors._lifecycle import Exit
from foxactors._message import MessageProperties
from foxactors.backends._base import Backend, DeadLetter


class DeadLetterSink(Protocol):
    """Receives a record of every dead letter of a pipeline."""

    def write(self, letter: DeadLetter) -> None:
        """Record ``letter``; raising is logged and does not lose the message."""


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

    Each line is flushed and synced as written. Read the file back with
    `read_dead_letters`, replay it with `replay_dead_letters`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    def write(self, letter: DeadLetter) -> None:
        """Append ``letter`` as one line."""
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(_encode(letter) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file (it is reopened on the next write)."""
        if self._file is not None:
            self._file.close()
            self._file = None


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
                sink.write(message)
            except Exception as exc:
                self.log.error("dead_letter_sink.failed", sink=type(sink).__name__, error=str(exc))

    async def on_stop(self, exit: Exit) -> None:
        """Close the sinks that can be closed."""
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if callable(close):
                close()
