"""The form of a job record in Redis: a hash, one field per record field, each JSON.

Python writes each value's JSON text and reads it back with `json.loads`, so results,
times and errors round-trip exactly; the Lua scripts never decode a value, they move
the text and compare a few control fields. See docs/jobs-redis-store.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring
from typing import Any

import attrs

from foxactors._codec import compact_json

from ._errors import JobRecordError
from ._record import FORMAT, JobRecord, JobState, require_format

encode = compact_json
"""A value's JSON text, as `JobRecord.to_json` writes it."""

_NAMES = tuple(field.name for field in attrs.fields(JobRecord))


def text(value: bytes | str) -> str:
    """A reply's string (bytes unless the client decodes replies)."""
    return value.decode() if isinstance(value, bytes) else value


def scalar(value: Any) -> str:
    """``encode(value)``, the same text, with a fast way for the usual scalars."""
    kind = type(value)
    if kind is str:
        return encode_basestring(value)  # what JSONEncoder.encode does with a str
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    return encode(value)


def fields_of(record: JobRecord) -> list[str]:
    """The record's hash: each field of `JobRecord.to_dict` that is not None, as JSON.

    Written out here rather than through ``to_dict`` (2.5x faster); the suite holds
    the two to the same fields and values.
    """
    flat: list[str] = []
    for name in _NAMES:
        value = getattr(record, name)
        if value is None:
            continue
        if name == "state":
            value_json = encode_basestring(value.value)
        elif name == "error":
            value_json = encode(attrs.asdict(value))
        elif name == "args":
            value_json = encode(dict(value))
        else:
            value_json = scalar(value)
        flat += (name, value_json)
    flat += ("v", scalar(FORMAT))
    return flat


_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
"""The C scanner under `json.loads`: one value from a position, and where it ended."""


def _loads(raw: bytes | str) -> Any:
    """``json.loads(raw)``, by the C scanner alone for a value with nothing around it.

    `json.loads` costs more in its checks (encoding, whitespace) than in the scan of
    a field this short; anything the scanner does not take whole goes to it.
    """
    try:
        value_text = raw.decode() if isinstance(raw, bytes) else raw
        value, end = _scan(value_text, 0)
        if end == len(value_text):
            return value
    except (StopIteration, ValueError):  # not a value at 0, or not UTF-8: json.loads says
        pass
    return json.loads(raw)


def record_of(fields: Mapping[Any, Any] | list[Any]) -> JobRecord:
    """Read a record's hash (a mapping, or a flat field/value list).

    Raises:
        JobRecordError: A field that is not JSON, or not a record this version reads.
    """
    items = (
        fields.items()
        if isinstance(fields, Mapping)
        else zip(fields[::2], fields[1::2], strict=True)
    )
    pairs = {text(name): raw for name, raw in items}
    pairs.pop(PUSH, None)  # the store's, not the record's
    ident = text(pairs.get("id", b'"?"'))
    return JobRecord.from_dict({name: _field(ident, name, raw) for name, raw in pairs.items()})


def record_of_reply(
    names: bytes | str, values: bytes | str, job_id: str | None = None
) -> JobRecord:
    """Read a record as a script replies with it: its field names, and their values.

    ``lua/common.lua`` joins the names with commas and puts the stored JSON texts
    together into one JSON array as they are, so a record costs one `json.loads`
    (two thirds of the time of `record_of`'s one per field). A field that is not
    one JSON value spoils the array, or makes it longer than the names.

    Raises:
        JobRecordError: A field that is not one JSON value (the record's `get` names
            which), or not a record this version reads.
    """
    try:
        fields = text(names).split(",")
        parsed = _loads(values)
        if type(parsed) is not list or len(parsed) != len(fields):
            raise ValueError(f"{len(fields)} fields, not as many values")
    except ValueError as exc:
        which = f"job record {job_id!r}" if job_id is not None else "a job record"
        raise JobRecordError(
            f"{which} cannot be read: a field is not JSON ({exc}); read the job's status "
            "to learn which"
        ) from None
    return JobRecord.from_dict(dict(zip(fields, parsed, strict=True)))


def _field(ident: str, name: str, raw: bytes | str) -> Any:
    """A field's value (``ident``: the record's id as JSON, for the error).

    Raises:
        JobRecordError: The field is not JSON.
    """
    try:
        return _loads(raw)
    except ValueError:
        raise JobRecordError(
            f"job record {ident} cannot be read: its field {name!r} is not JSON"
        ) from None


PUSH = "push"
"""The hash field naming the channel a job's end is pushed to (`RedisJobStore`'s
``push_results``): the store's, not a field of `JobRecord`."""
ENDING = ("state", "task", "result", "tenant", "v", PUSH)
"""The fields `ending_of` reads: what the end of a job says, whose it is, its format,
and where its end is pushed."""


def ending_of(
    job_id: str, values: list[Any]
) -> tuple[JobState, str, Any, str | None, str | None] | None:
    """Read the `ENDING` fields of a record (HMGET's reply).

    State, task, result, tenant, and the channel its end is pushed to (if any); None
    if there is no record.

    Raises:
        JobRecordError: A field that is not JSON, or not a record this version reads.
    """
    if all(value is None for value in values):
        return None
    ident = encode(job_id)
    data: dict[str, Any] = {
        name: None if raw is None else _field(ident, name, raw)
        for name, raw in zip(ENDING, values, strict=True)
    }
    require_format(job_id, data["v"])
    try:
        state = JobState(data["state"])
    except ValueError:
        raise JobRecordError(
            f"job record {job_id!r} cannot be read: state {data['state']!r} is not one"
        ) from None
    return state, data["task"], data["result"], data["tenant"], data[PUSH]


def slot_of(tenant: str | None, key: str) -> str:
    """The name of a key's slot in the keys hash (as ``lua/common.lua`` names it)."""
    tenant = tenant or ""
    return f"{len(tenant.encode())}:{tenant}{key}"
