"""Message backends: the embedded memory backend, RabbitMQ and Redis Streams.

The contract (`Backend`, `Source`, `DeadLetterQueue`, the capabilities
`SharedConnection`, `IntakeHelpers`, `FairQueues` and `BatchPublisher`) and the
control messages between a consumer and a backend's actors are declared here once.
The brokers are imported lazily by name, so an application pays only for the one it
uses, and a missing extra says what to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._connection import BrokerUnreachable as BrokerUnreachable
from ._connection import ConnectionStatistics as ConnectionStatistics
from ._contract import Backend as Backend
from ._contract import BatchPublisher as BatchPublisher
from ._contract import DeadLetterQueue as DeadLetterQueue
from ._contract import FairQueues as FairQueues
from ._contract import IntakeHelpers as IntakeHelpers
from ._contract import QueueStatistics as QueueStatistics
from ._contract import SharedConnection as SharedConnection
from ._contract import Source as Source
from ._deadletter import DeadLetter as DeadLetter
from ._fair import TENANT_RULE as TENANT_RULE
from ._fair import FairShares as FairShares
from ._fair import check_tenant as check_tenant
from ._memory import MemoryBackend as MemoryBackend
from ._messages import CONNECTION as CONNECTION
from ._messages import SOURCE as SOURCE
from ._messages import GetConnection as GetConnection
from ._messages import GetSource as GetSource

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
