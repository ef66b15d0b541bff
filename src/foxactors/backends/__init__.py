"""Message backends: the embedded memory backend, RabbitMQ and Redis Streams.

Backends are imported lazily by name, so an application pays only for the one it
uses, and a missing extra says what to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import Backend as Backend
from ._base import BrokerUnreachable as BrokerUnreachable
from ._base import ConnectionStatistics as ConnectionStatistics
from ._base import DeadLetter as DeadLetter
from ._base import Source as Source
from ._memory import MemoryBackend as MemoryBackend
from ._memory import QueueStatistics as QueueStatistics

if TYPE_CHECKING:
    from .rabbitmq import RabbitMQBackend as RabbitMQBackend
    from .rabbitmq import RabbitMQSource as RabbitMQSource
    from .rabbitmq import RabbitMQStatistics as RabbitMQStatistics
    from .rabbitmq import Topology as Topology
    from .redis import Leases as Leases
    from .redis import RedisBackend as RedisBackend
    from .redis import RedisSource as RedisSource
    from .redis import RedisStatistics as RedisStatistics

_LAZY = {
    "RabbitMQBackend": "rabbitmq",
    "RabbitMQSource": "rabbitmq",
    "RabbitMQStatistics": "rabbitmq",
    "Topology": "rabbitmq",
    "Leases": "redis",
    "RedisBackend": "redis",
    "RedisSource": "redis",
    "RedisStatistics": "redis",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        import importlib  # noqa: PLC0415

        return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
