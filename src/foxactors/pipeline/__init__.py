"""The message-processing pipeline: consumer, stages, pool and workers, all actors."""

from __future__ import annotations

from ._app import WorkerApp as WorkerApp
from ._breaker import BREAKER_STATE as BREAKER_STATE
from ._breaker import Breaker as Breaker
from ._breaker import BreakerState as BreakerState
from ._breaker import CircuitBreakerStage as CircuitBreakerStage
from ._consumer import Consumer as Consumer
from ._deadletters import DeadLetterActor as DeadLetterActor
from ._deadletters import DeadLetterSink as DeadLetterSink
from ._deadletters import JsonLinesSink as JsonLinesSink
from ._deadletters import MemorySink as MemorySink
from ._deadletters import read_dead_letters as read_dead_letters
from ._deadletters import replay_dead_letters as replay_dead_letters
from ._options import PipelineOptions as PipelineOptions
from ._pipeline import Pipeline as Pipeline
from ._pool import Pool as Pool
from ._pool import PoolStrategy as PoolStrategy
from ._ratelimit import RateLimitStage as RateLimitStage
from ._ratelimit import TokenBucket as TokenBucket
from ._retry import RetryPolicy as RetryPolicy
from ._retry import RetryStage as RetryStage
from ._stage import Stage as Stage
from ._worker import FunctionWorker as FunctionWorker
from ._worker import Worker as Worker
from ._worker import WorkerActor as WorkerActor
