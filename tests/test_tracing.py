"""OpenTelemetry traces: a span per publish and per attempt, one trace across handlers.

Spans are captured with the SDK's in-memory exporter. On the memory backend (asyncio
and trio, virtual time), on a real Redis and a real RabbitMQ (asyncio), and with
tracing off (no headers added, correlation ids still copied), and with
opentelemetry not installed at all.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import foxactors as fa
from foxactors.jobs import JobQueue, RedisJobStore
from foxactors.testing.servers import RedisServer

from .brokers import BROKERS, case

pytestmark = pytest.mark.anyio

QUEUE = "orders"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test, its spans kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fa.enable_tracing(provider)
    try:
        yield exporter
    finally:
        fa.disable_tracing()
        provider.shutdown()


def by_kind(spans: Sequence[ReadableSpan], kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in spans if span.kind is kind]


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


class Chain:
    """A handler that publishes one child message per message it gets, ``depth`` deep."""

    def __init__(self, backend: Any, queue: str, depth: int = 2) -> None:
        self.backend, self.queue, self.depth = backend, queue, depth
        self.seen: list[fa.Message] = []
        self.done = anyio.Event()

    async def handle(self, message: fa.Message) -> None:
        self.seen.append(message)
        if len(self.seen) < self.depth:
            await self.backend.publish(self.queue, {"hop": len(self.seen)})
        else:
            self.done.set()


def assert_one_chain(spans: Sequence[ReadableSpan], queue: str, system: str) -> None:
    """producer -> consumer -> producer -> consumer: each the parent of the next."""
    producers = by_kind(spans, SpanKind.PRODUCER)
    consumers = by_kind(spans, SpanKind.CONSUMER)
    assert len(producers) == len(consumers) == 2
    first = next(span for span in producers if span.parent is None)
    chain = [first]
    for _ in range(3):
        (child,) = [span for span in spans if parent_id(span) == span_id(chain[-1])]
        chain.append(child)
    assert [span.kind for span in chain] == [
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
        SpanKind.PRODUCER,
        SpanKind.CONSUMER,
    ]
    assert [span.name for span in chain] == [f"{queue} {op}" for op in ["publish", "process"] * 2]
    assert {trace_id(span) for span in spans} == {trace_id(first)}
    for span in spans:
        assert span.attributes is not None
        assert span.attributes["messaging.system"] == system
        assert span.attributes["messaging.destination.name"] == queue


async def test_a_publish_inside_a_handler_is_a_child_of_its_span(
    spans: InMemorySpanExporter,
) -> None:
    backend = fa.MemoryBackend()
    chain = Chain(backend, QUEUE)
    first = await backend.publish(
        QUEUE, {"hop": 0}, properties=fa.MessageProperties(correlation_id="order-7")
    )
    app = fa.WorkerApp("app").add_worker(chain.handle)
    async with fa.open_system(app.build(backend, QUEUE)):
        await backend.join(QUEUE)
    finished = spans.get_finished_spans()
    assert_one_chain(finished, QUEUE, "memory")
    root, child = chain.seen
    assert child.properties.correlation_id == "order-7"  # copied: the caller gave none
    assert "traceparent" in root.headers
    assert "traceparent" in child.headers
    first_attempt = next(s for s in by_kind(finished, SpanKind.CONSUMER) if s.parent is not None)
    consumers = {
        span.attributes["messaging.message.id"]: span
        for span in by_kind(finished, SpanKind.CONSUMER)
        if span.attributes is not None
    }
    assert set(consumers) == {first, child.id}
    attributes = dict(consumers[first].attributes or {})
    assert attributes == {
        "messaging.system": "memory",
        "messaging.destination.name": QUEUE,
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.message.id": first,
        "messaging.message.conversation_id": "order-7",
        "foxactors.message.attempt": 1,
        "foxactors.outcome": "succeeded",
    }
    assert first_attempt.status.status_code is StatusCode.UNSET


async def test_a_failed_attempt_is_an_error_span_with_its_exception(
    spans: InMemorySpanExporter,
) -> None:
    backend = fa.MemoryBackend()

    async def handle(message: fa.Message) -> None:
        raise ValueError(f"bad order {message.payload}")

    await backend.publish(QUEUE, 7)
    app = fa.WorkerApp("app").add_worker(handle).with_retry(max_retries=1, initial_backoff=1)
    async with fa.open_system(app.build(backend, QUEUE)):
        await backend.join(QUEUE)
    (producer,) = by_kind(spans.get_finished_spans(), SpanKind.PRODUCER)
    attempts = by_kind(spans.get_finished_spans(), SpanKind.CONSUMER)
    assert [a.attributes and a.attributes["foxactors.message.attempt"] for a in attempts] == [1, 2]
    for attempt in attempts:
        assert parent_id(attempt) == span_id(producer)  # each attempt: a child of the publish
        assert attempt.status.status_code is StatusCode.ERROR
        assert attempt.status.description == "ValueError: bad order 7"
        (event,) = attempt.events
        assert event.name == "exception"
        assert event.attributes is not None
        assert event.attributes["exception.type"] == "ValueError"
        assert attempt.attributes is not None
        assert attempt.attributes["foxactors.outcome"] == "failed"


async def test_with_tracing_off_no_header_is_added_and_correlation_ids_still_flow() -> None:
    assert not fa.tracing_enabled()
    backend = fa.MemoryBackend()
    chain = Chain(backend, QUEUE)
    await backend.publish(QUEUE, {"hop": 0}, properties=fa.MessageProperties(correlation_id="c"))
    async with fa.open_system(fa.WorkerApp("app").add_worker(chain.handle).build(backend, QUEUE)):
        await backend.join(QUEUE)
    assert [dict(m.headers) for m in chain.seen] == [{}, {}]
    assert [m.properties.correlation_id for m in chain.seen] == ["c", "c"]


async def test_a_correlation_id_the_caller_gives_is_kept(spans: InMemorySpanExporter) -> None:
    backend = fa.MemoryBackend()
    seen: list[str | None] = []

    async def handle(message: fa.Message) -> None:
        seen.append(message.properties.correlation_id)
        if message.payload == 0:
            own = fa.MessageProperties(correlation_id="own")
            await backend.publish(QUEUE, 1, properties=own)
            await backend.publish(QUEUE, 2)  # none given: the handled message's

    await backend.publish(QUEUE, 0, properties=fa.MessageProperties(correlation_id="parent"))
    async with fa.open_system(fa.WorkerApp("app").add_worker(handle).build(backend, QUEUE)):
        await backend.join(QUEUE)
    assert sorted(map(str, seen)) == ["own", "parent", "parent"]
    assert len(by_kind(spans.get_finished_spans(), SpanKind.PRODUCER)) == 3


async def test_a_job_enqueued_inside_a_handler_continues_its_trace(
    spans: InMemorySpanExporter,
) -> None:
    backend = fa.MemoryBackend()
    jobs = JobQueue(backend, queue="jobs")

    @jobs.task(max_attempts=1)
    async def ship(order: int) -> None:
        raise RuntimeError(f"no courier for {order}")

    async def handle(message: fa.Message) -> None:
        await ship.enqueue(message.payload)

    await backend.publish(QUEUE, 7)
    orders = fa.WorkerApp("orders").add_worker(handle).build(backend, QUEUE)
    async with fa.open_system(orders), fa.open_system(jobs.worker("jobs").build()):
        await backend.join(QUEUE)
        await backend.join("jobs")
    finished = spans.get_finished_spans()
    (handled,) = [s for s in finished if s.name == f"{QUEUE} process"]
    (enqueue,) = [s for s in finished if s.name == "jobs publish"]
    job = next(s for s in finished if s.name == "jobs process")
    assert parent_id(enqueue) == span_id(handled)
    assert parent_id(job) == span_id(enqueue)
    assert trace_id(job) == trace_id(handled)
    assert job.attributes is not None
    assert job.attributes["foxactors.job.attempt"] == 1
    assert isinstance(job.attributes["foxactors.job.id"], str)
    assert job.status.status_code is StatusCode.ERROR  # settled by the runner, still failed
    assert job.status.description == "RuntimeError: no courier for 7"


@pytest.mark.parametrize("broker", BROKERS)
@pytest.mark.parametrize("anyio_backend", [("asyncio", {})], ids=["asyncio"])  # real time
async def test_trace_context_survives_the_wire(
    request: pytest.FixtureRequest, broker: str, spans: InMemorySpanExporter
) -> None:
    server = request.getfixturevalue(broker)
    backend = case(broker, server).backend
    queue = f"trace-{uuid.uuid4().hex[:8]}"
    chain = Chain(backend, queue)
    try:
        await backend.publish(
            queue, {"hop": 0}, properties=fa.MessageProperties(correlation_id="wire-1")
        )
        app = fa.WorkerApp("app").add_worker(chain.handle)
        async with fa.open_system(app.build(backend, queue)):
            with anyio.fail_after(20):
                await chain.done.wait()
    finally:
        await backend.close()
    assert_one_chain(spans.get_finished_spans(), queue, broker)
    assert [m.properties.correlation_id for m in chain.seen] == ["wire-1", "wire-1"]
    assert all(isinstance(m.headers["traceparent"], str) for m in chain.seen)
    assert "amqp://" not in repr([s.attributes for s in spans.get_finished_spans()])


@pytest.mark.parametrize("anyio_backend", [("asyncio", {})], ids=["asyncio"])  # real time
async def test_a_job_written_with_its_delivery_in_one_script_is_traced_as_a_publish(
    redis: RedisServer, spans: InMemorySpanExporter
) -> None:
    # records on the broker's own Redis: the store's script adds the stream entry
    # (jobs/_one_step.py); the publish span still ends, and the attempt continues it
    backend = fa.backends.RedisBackend(redis.url, block=0.1)
    store = RedisJobStore(redis.url, prefix=f"trace:{uuid.uuid4().hex[:8]}")
    queue = f"trace-{uuid.uuid4().hex[:8]}"
    jobs = JobQueue(backend, store=store, queue=queue)

    @jobs.task
    async def ship(order: int) -> int:
        return order

    try:
        handle = await ship.enqueue(7)
        (enqueue,) = [s for s in spans.get_finished_spans() if s.name == f"{queue} publish"]
        assert enqueue.kind is SpanKind.PRODUCER
        async with fa.open_system(jobs.worker(queue).build()):
            assert await handle.result(timeout=20) == 7
    finally:
        await jobs.close()
        await backend.close()
    job = next(s for s in spans.get_finished_spans() if s.name == f"{queue} process")
    assert parent_id(job) == span_id(enqueue)
    assert trace_id(job) == trace_id(enqueue)
    # an entry Redis refuses: that publish's span ends failed, as a refused publish's
    refused = f"trace-{uuid.uuid4().hex[:8]}"
    raw = aioredis.Redis.from_url(redis.url)
    await raw.set(refused, "not a stream")
    backend = fa.backends.RedisBackend(redis.url)
    store = RedisJobStore(redis.url, prefix=f"trace:{uuid.uuid4().hex[:8]}")
    jobs = JobQueue(backend, store=store, queue=refused)

    @jobs.task(name="ship")
    async def ship_again(order: int) -> int:
        return order

    try:
        with pytest.raises(fa.BackendError, match="WRONGTYPE"):
            await ship_again.enqueue(8)
    finally:
        await raw.delete(refused)
        await raw.aclose()
        await jobs.close()
        await backend.close()
    (failed,) = [s for s in spans.get_finished_spans() if s.name == f"{refused} publish"]
    assert failed.status.status_code is StatusCode.ERROR
    assert [event.name for event in failed.events] == ["exception"]


def test_the_library_runs_without_opentelemetry() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if not installed
        import anyio
        import foxactors as fa

        async def main():
            backend = fa.MemoryBackend()
            seen = []

            async def handle(message):
                seen.append(message.properties.correlation_id)
                if message.payload == 0:
                    await backend.publish("q", 1)

            props = fa.MessageProperties(correlation_id="c")
            await backend.publish("q", 0, properties=props)
            async with fa.open_system(fa.WorkerApp("a").add_worker(handle).build(backend, "q")):
                await backend.join("q")
            assert seen == ["c", "c"], seen

        anyio.run(main)
        try:
            fa.enable_tracing()
        except fa.ConfigurationError as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.splitlines()[-1]
        == "tracing needs opentelemetry-api: pip install 'foxactors[tracing]'"
    )


def sampled_by(sampler: Any) -> tuple[InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, provider


@pytest.mark.parametrize("children_sampled", [False, True], ids=["parent-based", "children-kept"])
async def test_an_unsampled_trace_is_carried_without_spans_unless_the_sampler_keeps_children(
    children_sampled: bool,
) -> None:
    """The root publish is not sampled; the context still reaches every message.

    With the SDK's parent-based defaults nothing under it starts a span (nothing
    would be kept); a sampler that keeps children of unsampled parents gets them.
    """
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased  # noqa: PLC0415

    children = ALWAYS_ON if children_sampled else ALWAYS_OFF
    exporter, provider = sampled_by(
        ParentBased(
            ALWAYS_OFF, remote_parent_not_sampled=children, local_parent_not_sampled=children
        )
    )
    fa.enable_tracing(provider)
    try:
        backend = fa.MemoryBackend()
        chain = Chain(backend, QUEUE)
        app = fa.WorkerApp("app").add_worker(chain.handle)
        await backend.publish(QUEUE, {"hop": 0})
        async with fa.open_system(app.build(backend, QUEUE)):
            with anyio.fail_after(10):
                await chain.done.wait()
    finally:
        fa.disable_tracing()
        provider.shutdown()
    parents = [message.headers["traceparent"] for message in chain.seen]
    assert len({parent.split("-")[1] for parent in parents}) == 1  # one trace throughout
    assert int(parents[0][-2:], 16) & 1 == 0  # the root: its sampled flag is not set
    kinds = [span.kind for span in exporter.get_finished_spans()]
    if children_sampled:
        assert kinds.count(SpanKind.CONSUMER) == 2
    else:
        assert kinds == []
        assert parents[1] == parents[0]  # no span between: the root's context, as it came
