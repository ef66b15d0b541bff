"""Worker processes' output, passed through as whole lines, each saying whose it is.

A child's stdout (its stderr joined to it) arrives in chunks that may end anywhere;
`Lines` cuts them into whole lines, so a line of one child is never broken by a
line of another. `render` marks each line with its child: JSON lines get
``process`` (the child's index) and ``pid`` fields, console lines a ``[index:pid]``
prefix. What a child prints that is not a JSON object (a traceback on stderr) is
wrapped in one in JSON mode, so the parent's output stays one object per line.
"""

from __future__ import annotations

import json

#: A line longer than this is cut: a runaway child cannot make the parent buffer without bound.
MAX_LINE = 64 * 1024


class Lines:
    """Cuts a byte stream into lines (without their newline)."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self._limit = limit
        self._held = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        """The whole lines ``chunk`` completes; the rest is held for the next chunk."""
        self._held += chunk
        lines: list[bytes] = []
        while True:
            end = self._held.find(b"\n")
            if end < 0:
                if len(self._held) >= self._limit:
                    lines.append(bytes(self._held[: self._limit]))
                    del self._held[: self._limit]
                    continue
                return lines
            lines.append(bytes(self._held[:end]).rstrip(b"\r"))
            del self._held[: end + 1]

    def rest(self) -> list[bytes]:
        """What is held at the end of the stream (a last line without its newline)."""
        rest, self._held = bytes(self._held), bytearray()
        return [rest] if rest else []


def render(line: str, *, index: int, pid: int, fmt: str) -> str:
    """``line`` of child ``index`` marked with the child, for the parent's output."""
    if fmt == "json":
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            event = {"event": "process.output", "line": line}
        event["process"] = index
        event["pid"] = pid
        return json.dumps(event)
    return f"[{index}:{pid}] {line}"


def error_of(line: str) -> str:
    """What a child's last line says went wrong: a JSON event's error, or the line."""
    try:
        event = json.loads(line)
    except ValueError:
        return line.strip()
    if isinstance(event, dict):
        error = event.get("error") or event.get("exception")
        name = event.get("event", "")
        if error:
            return f"{name}: {error}" if name else str(error)
        return str(name or line).strip()
    return line.strip()
