"""foxactors: an actor runtime for long-lived message-processing services.

Actors with bounded mailboxes live in supervision trees with Erlang/OTP semantics.
Everything public is re-exported here; the modules behind it are private.
"""

from __future__ import annotations

import typing as _typing

from ._ack import AckHandle as AckHandle
from ._ack import Decision as Decision
from ._actor import Actor as Actor
from ._actor import ActorRef as ActorRef
from ._actor import Request as Request
from ._actor import Terminated as Terminated
from ._codec import Codec as Codec
from ._codec import JsonCodec as JsonCodec
from ._errors import ActorCrashed as ActorCrashed
from ._errors import ActorError as ActorError
from ._errors import ActorNotFound as ActorNotFound
from ._errors import ActorStopped as ActorStopped
from ._errors import AskTimeout as AskTimeout
from ._errors import BackendError as BackendError
from ._errors import CodecError as CodecError
from ._errors import ConfigurationError as ConfigurationError
from ._errors import DecodeError as DecodeError
from ._errors import EncodeError as EncodeError
from ._errors import FoxactorsError as FoxactorsError
from ._errors import MailboxFull as MailboxFull
from ._errors import RestartIntensityExceeded as RestartIntensityExceeded
from ._errors import SettlementError as SettlementError
from ._errors import StartError as StartError
from ._errors import SupervisionError as SupervisionError
from ._gc import freeze_gc as freeze_gc
from ._lifecycle import ActorState as ActorState
from ._lifecycle import Exit as Exit
from ._lifecycle import ExitKind as ExitKind
from ._logging import configure_logging as configure_logging
from ._logging import merge_message_context as merge_message_context
from ._mailbox import MailboxStatistics as MailboxStatistics
from ._message import Delivery as Delivery
from ._message import Message as Message
from ._message import MessageProperties as MessageProperties
from ._message import Outcome as Outcome
from ._message import OutcomeKind as OutcomeKind
from ._message import Priority as Priority
from ._policy import Backoff as Backoff
from ._policy import RestartIntensity as RestartIntensity
from ._snapshot import ActorSnapshot as ActorSnapshot
from ._spec import AutoShutdown as AutoShutdown
from ._spec import ChildSpec as ChildSpec
from ._spec import Restart as Restart
from ._spec import Strategy as Strategy
from ._supervisor import StartChild as StartChild
from ._supervisor import StopChild as StopChild
from ._supervisor import Supervisor as Supervisor
from ._supervisor import SupervisorStatistics as SupervisorStatistics
from ._supervisor import start_child as start_child
from ._supervisor import stop_child as stop_child
from ._system import ActorSystem as ActorSystem
from ._system import open_system as open_system
from ._system import run as run
from ._tracing import disable_tracing as disable_tracing
from ._tracing import enable_tracing as enable_tracing
from ._tracing import tracing_enabled as tracing_enabled
from .backends import DeadLetter as DeadLetter
from .backends import MemoryBackend as MemoryBackend
from .pipeline import Breaker as Breaker
from .pipeline import BreakerState as BreakerState
from .pipeline import BreakerStatistics as BreakerStatistics
from .pipeline import DeadLetterSink as DeadLetterSink
from .pipeline import JsonLinesSink as JsonLinesSink
from .pipeline import MemorySink as MemorySink
from .pipeline import PoolStatistics as PoolStatistics
from .pipeline import PoolStrategy as PoolStrategy
from .pipeline import RateLimitStatistics as RateLimitStatistics
from .pipeline import RetryPolicy as RetryPolicy
from .pipeline import Stage as Stage
from .pipeline import TokenBucket as TokenBucket
from .pipeline import Worker as Worker
from .pipeline import WorkerApp as WorkerApp
from .pipeline import read_dead_letters as read_dead_letters
from .pipeline import replay_dead_letters as replay_dead_letters

__version__ = "0.1.0"

if _typing.TYPE_CHECKING:  # as a module attribute: type checkers see through it
    from ._settings import Settings as Settings
    from .pipeline import CurrentBreaker

    BREAKER_STATE: CurrentBreaker  # deprecated; looked up through __getattr__
else:

    def __getattr__(name: str) -> object:
        if name == "Settings":  # the settings extra: imported when first asked for
            from ._settings import Settings  # noqa: PLC0415

            return Settings
        if name == "BREAKER_STATE":
            from .pipeline import deprecated_breaker_state  # noqa: PLC0415

            return deprecated_breaker_state(__name__)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
