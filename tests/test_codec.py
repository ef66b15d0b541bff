"""The JSON codec refuses what it cannot encode with an error that says what would work."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import uuid
from typing import Any

import attrs
import pytest

import foxactors as fa
from foxactors._message import priority_value


@attrs.frozen
class Point:
    x: int


@dataclasses.dataclass
class Size:
    w: int


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        (datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC), "value.isoformat()"),
        (datetime.date(2026, 1, 2), "value.isoformat()"),
        (frozenset({1}), "list(value)"),
        (b"raw", "base64-encode it"),
        (decimal.Decimal("1.5"), "str(value)"),
        (uuid.UUID(int=1), "str(value)"),
        (Point(1), "attrs.asdict(value)"),
        (Size(1), "dataclasses.asdict(value)"),
        (object(), "convert it to plain data"),
    ],
)
def test_an_unserialisable_value_is_named_with_what_would_work(value: Any, hint: str) -> None:
    with pytest.raises(fa.EncodeError) as info:
        fa.JsonCodec().encode({"items": [1, {"value": value}]})
    message = str(info.value)
    assert f"a value of type {type(value).__name__} " in message
    assert hint in message
    assert "codec=" in message
    assert isinstance(info.value.__cause__, TypeError)


def test_what_has_no_single_culprit_still_gets_an_encode_error() -> None:
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(fa.EncodeError, match="Circular reference detected; publish plain data"):
        fa.JsonCodec().encode(circular)
    with pytest.raises(fa.EncodeError, match="not tuple; publish plain data \\(dict with str keys"):
        fa.JsonCodec().encode({(1, 2): "x"})


def test_encode_and_decode_errors_share_a_branch() -> None:
    assert issubclass(fa.EncodeError, fa.CodecError)
    assert issubclass(fa.DecodeError, fa.CodecError)
    assert issubclass(fa.EncodeError, ValueError)  # as the ConfigurationError it replaced
    assert not issubclass(fa.EncodeError, fa.ConfigurationError)


@pytest.mark.parametrize(
    ("given", "value"),
    [(fa.Priority.HIGH, 6), ("critical", 9), ("Low", 0), (0, 0), (7, 7), (9, 9)],
)
def test_priority_value_accepts_levels_names_and_ints(given: object, value: int) -> None:
    assert priority_value(given) == value


@pytest.mark.parametrize("given", [-1, 10, True, 2.0, "urgent", None])
def test_priority_value_refuses_anything_else_naming_it(given: object) -> None:
    with pytest.raises(fa.ConfigurationError, match="priority must be an int from 0 to 9") as err:
        priority_value(given)
    assert repr(given) in str(err.value)
