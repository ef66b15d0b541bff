"""The one check every backend makes of a new delivery before handing it out.

A content type its codec does not read, a message that expired waiting, a body the
codec refuses (undecodable or over its size limit): each goes to the dead-letter
queue with its reason, settled by the source itself. It never reaches a worker,
never crashes a consumer, and is never retried.
"""

from __future__ import annotations

from typing import Any

from foxactors._ack import AckHandle
from foxactors._codec import Codec
from foxactors._errors import DecodeError
from foxactors._logging import get_logger
from foxactors._message import DEFAULT_PROPERTIES, MessageProperties

_logger = get_logger("foxactors")  # stdlib logging unless structlog is configured


class Inadmissible(Exception):
    """A delivery that cannot be handed out; its text is the dead-letter reason.

    Attributes:
        undecodable: The codec refused the body (logged as ``message.undecodable``).
    """

    def __init__(self, reason: str, *, undecodable: bool = False) -> None:
        super().__init__(reason)
        self.undecodable = undecodable

    def settle(self, handle: AckHandle, *, queue: str, message_id: object) -> None:
        """Dead-letter ``handle``'s delivery with this reason (logged if undecodable)."""
        if self.undecodable:
            _logger.warning(
                "message.undecodable", queue=queue, message_id=str(message_id), error=str(self)
            )
        handle.dead_letter(str(self))


class Admission:
    """Checks a new delivery against a codec, and decodes it.

    Attributes:
        content_type: The content type the codec reads.
    """

    __slots__ = ("_decode", "content_type")

    def __init__(self, codec: Codec) -> None:
        self.content_type = codec.content_type
        self._decode = codec.decode

    def __call__(
        self,
        body: bytes,
        content_type: str | None,
        expiration: float | None = None,
        age: float | None = None,
    ) -> Any:
        """Return the payload of ``body``, or raise `Inadmissible` saying why not.

        Args:
            body: The message body.
            content_type: Its content type; None or empty: unspecified, taken as the
                codec's.
            expiration: Seconds it may wait to be delivered (None: for ever).
            age: Seconds it has waited, if the backend expires messages itself (None:
                the broker does).
        """
        if content_type and content_type != self.content_type:
            raise Inadmissible(
                f"unknown content type {content_type!r}: this consumer decodes "
                f"{self.content_type!r}"
            )
        if expiration is not None and age is not None and age > expiration:
            raise Inadmissible(f"expired: not delivered within {expiration:g} s")
        try:
            return self._decode(body)
        except DecodeError as exc:
            raise Inadmissible(f"undecodable: {exc}", undecodable=True) from None


def default_properties(codec: Codec) -> MessageProperties:
    """The properties of a message published without any: the codec's content type."""
    if codec.content_type == DEFAULT_PROPERTIES.content_type:
        return DEFAULT_PROPERTIES
    return MessageProperties(content_type=codec.content_type)
