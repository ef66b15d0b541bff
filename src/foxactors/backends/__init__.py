"""Message backends: the embedded memory backend now; RabbitMQ and Redis to come.

Backends are imported lazily by name, so an application pays only for the one it
uses, and a missing extra says what to install.
"""

from __future__ import annotations

from ._base import Backend as Backend
from ._base import DeadLetter as DeadLetter
from ._base import Source as Source
from ._memory import MemoryBackend as MemoryBackend
from ._memory import QueueStatistics as QueueStatistics
