"""The message a task is handling, for log lines: one ContextVar, set per message.

Binding three keys with ``structlog.contextvars`` costs several microseconds per
message; setting one ContextVar costs a fraction of one. `merge_message_context`
is the structlog processor that adds ``message_id``, ``attempt`` and
``correlation_id`` to every event logged while a message is handled.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._message import Message

#: The message being handled, if any.
current_message: ContextVar[Message | None] = ContextVar("foxactors_current_message", default=None)


def merge_message_context(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Structlog processor: add the handled message's id, attempt and correlation id.

    `configure_logging` installs it. An application that configures structlog itself
    adds ``foxactors.merge_message_context`` to its processors.
    """
    message = current_message.get()
    if message is not None:
        event.setdefault("message_id", message.id)
        event.setdefault("attempt", message.attempt)
        correlation_id = message.properties.correlation_id
        if correlation_id is not None:
            event.setdefault("correlation_id", correlation_id)
    return event
