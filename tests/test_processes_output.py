"""Worker processes' output: whole lines, however the chunks fall, each marked with its child."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from foxactors._processes._output import Lines, error_of, render

lines = st.lists(st.binary().map(lambda b: b.replace(b"\n", b"")), max_size=20)


@given(lines, st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20))
def test_lines_come_out_whole_however_the_stream_is_cut(
    written: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(line + b"\n" for line in written)
    reader = Lines(limit=1 << 20)
    out: list[bytes] = []
    at = 0
    for size in cuts * (len(stream) // max(1, sum(cuts)) + 1):
        out += reader.feed(stream[at : at + size])
        at += size
    out += reader.feed(stream[at:]) + reader.rest()
    assert out == [line.rstrip(b"\r") for line in written]


def test_a_runaway_line_is_cut_at_the_limit() -> None:
    reader = Lines(limit=4)
    assert reader.feed(b"abcdefghij") == [b"abcd", b"efgh"]
    assert reader.rest() == [b"ij"]


def test_a_json_line_gets_the_child_and_other_output_is_wrapped() -> None:
    marked = json.loads(render('{"event": "job.done", "n": 1}', index=2, pid=99, fmt="json"))
    assert marked == {"event": "job.done", "n": 1, "process": 2, "pid": 99}
    wrapped = json.loads(render("Traceback (most recent call last):", index=1, pid=7, fmt="json"))
    assert wrapped == {
        "event": "process.output",
        "line": "Traceback (most recent call last):",
        "process": 1,
        "pid": 7,
    }
    assert render("12:00:00 [info] x", index=3, pid=5, fmt="console") == "[3:5] 12:00:00 [info] x"


def test_the_error_of_a_child_is_its_last_events_error() -> None:
    line = json.dumps({"event": "system.failed", "error": "StartError: db failed"})
    assert error_of(line) == "system.failed: StartError: db failed"
    assert error_of("ValueError: bad\n") == "ValueError: bad"
