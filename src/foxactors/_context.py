"""The message a task is handling, for log lines: one ContextVar, set per message.

Binding three keys with ``structlog.contextvars`` costs several microseconds per
message; setting one ContextVar costs a fraction of one. `merge_message_context`
is the structlog processor that adds ``message_id``, ``attempt`` and
``correlation_id`` to every event logged while a message is handled.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

#: (message_id, attempt, correlation_id) of the message being handled, if any.
current_message: ContextVar[tuple[str, int, str | None] | None] = ContextVar(
    "foxactors_current_message", default=None
)


def merge_message_context(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Structlog processor: add the handled message's id, attempt and correlation id.

    `configure_logging` installs it. An application that configures structlog itself
    adds ``foxactors.merge_message_context`` to its processors.
    """
    context = current_message.get()
    if context is not None:
        message_id, attempt, correlation_id = context
        event.setdefault("message_id", message_id)
        event.setdefault("attempt", attempt)
        if correlation_id is not None:
            event.setdefault("correlation_id", correlation_id)
    return event
