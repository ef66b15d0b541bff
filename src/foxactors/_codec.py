"""Codecs turn payloads into bytes and back. JSON by default; never pickle."""

from __future__ import annotations

import json
from typing import Any, Protocol

import attrs

from ._errors import ConfigurationError, DecodeError, require_int

_decode = json.JSONDecoder().decode
_raw_decode = json.JSONDecoder().raw_decode


class Codec(Protocol):
    """Encodes payloads for publishing and decodes received bodies."""

    @property
    def content_type(self) -> str:
        """The MIME type of encoded bodies."""

    def encode(self, payload: Any) -> bytes:
        """Return the bytes for ``payload``; raise `DecodeError`-free errors on bad input."""

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
            ConfigurationError: The payload is not JSON-serialisable or too large.
        """
        try:
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"payload of type {type(payload).__name__} is not JSON-serialisable: {exc}; "
                "publish plain data (dict, list, str, numbers) or use another codec"
            ) from exc
        if len(body) > self.max_size:
            raise ConfigurationError(
                f"payload is {len(body)} bytes, over the codec's max_size of {self.max_size}"
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
