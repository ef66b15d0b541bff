"""Codecs turn payloads into bytes and back. JSON by default; never pickle."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import uuid
from typing import Any, NoReturn, Protocol

import attrs

from ._errors import DecodeError, EncodeError
from ._validate import require_int

_decode = json.JSONDecoder().decode
_raw_decode = json.JSONDecoder().raw_decode

compact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
"""Compact JSON text; one encoder made once (`json.dumps` with options makes one a call)."""


class Codec(Protocol):
    """Encodes payloads for publishing and decodes received bodies."""

    @property
    def content_type(self) -> str:
        """The MIME type of encoded bodies."""

    def encode(self, payload: Any) -> bytes:
        """Return the bytes for ``payload``, or raise `EncodeError` saying what would work."""

    def decode(self, body: bytes) -> Any:
        """Return the payload of ``body``, or raise `DecodeError` (never anything else)."""


@attrs.frozen
class JsonCodec:
    """UTF-8 JSON with a size limit (default 1 MiB), in both directions.

    Attributes:
        max_size: Largest body in bytes; larger ones are refused with a reason.
    """

    max_size: int = 1024 * 1024
    content_type: str = "application/json"

    def __attrs_post_init__(self) -> None:
        require_int("max_size", self.max_size, 1)

    def encode(self, payload: Any) -> bytes:
        """Encode ``payload`` as compact JSON.

        Raises:
            EncodeError: The payload is not JSON-serialisable or too large; the
                message says what would work.
        """
        try:
            body = compact_json(payload).encode()
        except (TypeError, ValueError) as exc:
            raise EncodeError(_unserialisable(payload, exc)) from exc
        if len(body) > self.max_size:
            raise EncodeError(
                f"payload is {len(body)} bytes, over the codec's max_size of {self.max_size}: "
                "store large data elsewhere and send a reference to it (a key, a URL), or "
                "raise max_size (JsonCodec(max_size=...)) for producers and consumers alike"
            )
        return body

    def decode(self, body: bytes) -> Any:
        """Decode a JSON body.

        Raises:
            DecodeError: Too large, not UTF-8, or not JSON.
        """
        if len(body) > self.max_size:
            raise DecodeError(f"body is {len(body)} bytes, over max_size {self.max_size}")
        try:  # the common case: UTF-8 (RFC 8259), no whitespace around, no sniffing
            text = body.decode()
            value, end = _raw_decode(text)
            if end == len(text):
                return value
        except ValueError:  # UnicodeDecodeError is one
            pass
        try:  # the full decoder: whitespace around, and its own error messages
            return _decode(body.decode())
        except ValueError as exc:
            raise DecodeError(f"body is not valid JSON: {exc}") from None


class _Culprit(Exception):
    def __init__(self, value: object) -> None:
        self.value = value


def _culprit(value: object) -> NoReturn:
    raise _Culprit(value)


def _unserialisable(payload: Any, exc: Exception) -> str:
    """Why ``payload`` is not JSON, naming the value that is not and what would work."""
    try:  # encode again, this time catching the first value JSON has no type for
        json.dumps(payload, default=_culprit)
    except _Culprit as found:
        value = found.value
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return (
            f"cannot encode the payload as JSON: a value of type {type(value).__name__} "
            f"({shown}) is not JSON-serialisable; {_hint(value)}, or give the backend a "
            "codec that encodes it (codec=...)"
        )
    except (TypeError, ValueError):
        pass
    return (
        f"cannot encode the payload as JSON: {exc}; publish plain data (dict with str keys, "
        "list, str, int, float, bool, None), or give the backend a codec that encodes it "
        "(codec=...)"
    )


_HINTS: tuple[tuple[tuple[type, ...], str], ...] = (
    ((datetime.date, datetime.time), "convert it to an ISO 8601 string with value.isoformat()"),
    ((set, frozenset), "convert it to a list with list(value) (sorted(value) for a stable order)"),
    ((bytes, bytearray, memoryview), "decode it to str, or base64-encode it"),
    ((decimal.Decimal, uuid.UUID), "convert it to a string with str(value)"),
)


def _hint(value: object) -> str:
    for kinds, hint in _HINTS:  # a datetime is a date
        if isinstance(value, kinds):
            return hint
    if attrs.has(type(value)):
        return "convert it to a dict with attrs.asdict(value)"
    if dataclasses.is_dataclass(value):
        return "convert it to a dict with dataclasses.asdict(value)"
    return "convert it to plain data (dict, list, str, int, float, bool, None)"
