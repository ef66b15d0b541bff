"""The message-processing pipeline: consumer, stages, pool and workers, all actors."""

from __future__ import annotations

import typing as _typing

from ._app import WorkerApp as WorkerApp
from ._breaker import Breaker as Breaker
from ._breaker import BreakerState as BreakerState
from ._breaker import BreakerStatistics as BreakerStatistics
from ._breaker import CircuitBreakerStage as CircuitBreakerStage
from ._consumer import Consumer as Consumer
from ._deadletters import DeadLetterActor as DeadLetterActor
from ._deadletters import DeadLetterSink as DeadLetterSink
from ._deadletters import JsonLinesSink as JsonLinesSink
from ._deadletters import MemorySink as MemorySink
from ._deadletters import read_dead_letters as read_dead_letters
from ._deadletters import replay_dead_letters as replay_dead_letters

# The deprecated BREAKER_STATE ask, for the package root's alias of it (one release).
from ._messages import CurrentBreaker as CurrentBreaker
from ._messages import deprecated_breaker_state as deprecated_breaker_state
from ._options import PipelineOptions as PipelineOptions
from ._pipeline import Pipeline as Pipeline
from ._pool import Pool as Pool
from ._pool import PoolStatistics as PoolStatistics
from ._pool import PoolStrategy as PoolStrategy
from ._ratelimit import RateLimitStage as RateLimitStage
from ._ratelimit import RateLimitStatistics as RateLimitStatistics
from ._ratelimit import TokenBucket as TokenBucket
from ._retry import RetryPolicy as RetryPolicy
from ._retry import RetryStage as RetryStage
from ._stage import Stage as Stage
from ._tally import DURATION_BUCKETS as DURATION_BUCKETS
from ._tally import ConsumerStatistics as ConsumerStatistics
from ._tally import Durations as Durations
from ._worker import FunctionWorker as FunctionWorker
from ._worker import Worker as Worker
from ._worker import WorkerActor as WorkerActor

if _typing.TYPE_CHECKING:  # as a module attribute: type checkers see through it
    BREAKER_STATE: CurrentBreaker  # deprecated; looked up through __getattr__
else:

    def __getattr__(name: str) -> object:
        if name == "BREAKER_STATE":
            from ._messages import deprecated_breaker_state  # noqa: PLC0415 - only if used

            return deprecated_breaker_state(__name__)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
