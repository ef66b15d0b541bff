"""Message backends: the embedded memory backend, RabbitMQ; Redis to come.

Backends are imported lazily by name, so an application pays only for the one it
uses, and a missing extra says what to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import Backend as Backend
from ._base import DeadLetter as DeadLetter
from ._base import Source as Source
from ._memory import MemoryBackend as MemoryBackend
from ._memory import QueueStatistics as QueueStatistics

if TYPE_CHECKING:
    from ._rabbitmq import RabbitMQBackend as RabbitMQBackend
    from ._rabbitmq import RabbitMQSource as RabbitMQSource
    from ._rabbitmq import Topology as Topology

_LAZY = {"RabbitMQBackend", "RabbitMQSource", "Topology"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import _rabbitmq  # noqa: PLC0415

        return getattr(_rabbitmq, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
