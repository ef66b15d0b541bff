"""`WorkerApp` records its options in one frozen value, `PipelineOptions`.

Each option method checks its arguments where it is called (the errors are pinned
in test_builder_checks.py and test_pipeline.py) and records a new options value;
`build()` reads nothing else.
"""

from __future__ import annotations

import functools

import attrs
import pytest

import foxactors as fa
from foxactors.pipeline import PipelineOptions
from foxactors.pipeline._options import BatchOption, HandlerOption, MiddlewareOption


async def handle(message: fa.Message) -> None:
    pass


async def handle_many(messages: list[fa.Message]) -> None:
    pass


class Passing(fa.Stage):
    pass


class Sink:
    def write(self, letter: fa.DeadLetter) -> None:
        pass


def test_the_defaults_are_those_of_a_new_app() -> None:
    options = fa.WorkerApp().options
    assert options == PipelineOptions()
    assert (options.name, options.concurrency, options.prefetch) == ("app", 8, 100)
    assert options.retry == fa.RetryPolicy()
    assert options.strategy is fa.PoolStrategy.ROUND_ROBIN
    assert options.drain_timeout == 30.0
    assert (options.handler, options.routes, options.middleware) == (None, (), ())


def test_each_option_method_records_its_option() -> None:
    sink = Sink()
    stage = functools.partial(Passing)
    app = (
        fa.WorkerApp("emails")
        .add_worker(handle, timeout=3)
        .register("a", handle, manual_ack=True)
        .with_concurrency_limit(3)
        .with_strategy("least_loaded")
        .with_prefetch(7)
        .with_retry(max_retries=5)
        .with_timeout(9)
        .with_middleware(stage, name="passing")
        .with_middleware(Passing)
        .with_circuit_breaker(2, 5)
        .with_rate_limit(10, burst=2)
        .with_dead_letter_sink(sink)
        .with_worker_recycling(100)
        .with_drain_timeout(4)
        .with_reconnect(min_delay=1, max_delay=2, give_up_after=3)
    )
    backend = fa.MemoryBackend()
    app.with_backend(backend, "q")
    assert app.options == PipelineOptions(
        name="emails",
        handler=HandlerOption(handle, timeout=3),
        routes=(("a", HandlerOption(handle, manual_ack=True)),),
        concurrency=3,
        strategy=fa.PoolStrategy.LEAST_LOADED,
        prefetch=7,
        retry=fa.RetryPolicy(max_retries=5),
        timeout=9,
        middleware=(MiddlewareOption("passing", stage), MiddlewareOption("stage-2", Passing)),
        breaker=fa.Breaker(2, 5),
        rate_limit=fa.TokenBucket(10, 2),
        dead_letter_sinks=(sink,),
        max_messages=100,
        drain_timeout=4,
        reconnect=fa.Backoff(min_delay=1, max_delay=2),
        give_up_after=3,
        backend=backend,
        queue="q",
    )
    assert fa.WorkerApp().without_retry().options.retry is None


def test_a_batch_worker_records_its_batch_and_raises_the_prefetch() -> None:
    options = fa.WorkerApp().add_batch_worker(handle_many, size=150, interval=2).options
    assert options.batch == BatchOption(handle_many, None, 150, 2)
    assert options.prefetch == 150


def test_registering_a_type_again_replaces_its_handler_in_place() -> None:
    async def other(message: fa.Message) -> None:
        pass

    app = fa.WorkerApp().register("a", handle).register("b", handle).register("a", other)
    assert app.options.routes == (("a", HandlerOption(other)), ("b", HandlerOption(handle)))


def test_the_options_are_frozen_and_each_call_makes_a_new_value() -> None:
    app = fa.WorkerApp().with_prefetch(7)
    before = app.options
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        before.prefetch = 9  # type: ignore[misc]
    with pytest.raises(AttributeError):
        app.options = PipelineOptions()  # type: ignore[misc]
    app.with_prefetch(9)
    assert (before.prefetch, app.options.prefetch) == (7, 9)
    assert app.options == attrs.evolve(before, prefetch=9)


def test_a_refused_option_leaves_the_options_as_they_were() -> None:
    app = fa.WorkerApp().with_prefetch(7).with_middleware(Passing, name="p")
    before = app.options
    with pytest.raises(fa.ConfigurationError):
        app.with_prefetch(0)
    with pytest.raises(fa.ConfigurationError):
        app.with_middleware(Passing, name="p")
    with pytest.raises(fa.ConfigurationError):
        app.with_worker_recycling(max_memory_mb=-1)
    assert app.options is before
