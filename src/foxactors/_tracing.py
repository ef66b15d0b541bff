"""Tracing: OpenTelemetry spans around publishes and processing attempts.

Off until `enable_tracing` is called; then every publish (on any backend) is a
PRODUCER span ``"<queue> publish"`` whose context goes into the message's headers
(W3C ``traceparent``/``tracestate``, through the configured propagator), and every
processing attempt is a CONSUMER span ``"<queue> process"`` whose parent is the
context those headers carry. A message published while another is handled is thus
the child of that handler's span: one trace from the first publish to the last.

Off, tracing costs one module-attribute check per publish and per attempt:
OpenTelemetry is not even imported. `outgoing` also copies the handled message's
correlation id to the messages its handler publishes; that is no tracing and
always happens.

Attributes follow the OpenTelemetry messaging semantic conventions; nothing in them
comes from a broker URL, so no credential reaches a span.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, cast

from ._errors import ConfigurationError
from ._logging import current_message
from ._message import DEFAULT_PROPERTIES, Delivery, MessageProperties, OutcomeKind

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.propagators.textmap import Getter
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from ._message import Outcome

_INSTALL = "tracing needs opentelemetry-api: pip install 'foxactors[tracing]'"
_NOT_FAILED = (OutcomeKind.SUCCEEDED, OutcomeKind.SETTLED)


class _Tracing:
    """What an enabled tracing uses: the tracer and the OpenTelemetry functions."""

    def __init__(self, tracer_provider: TracerProvider | None) -> None:
        from opentelemetry import context, propagate, trace  # noqa: PLC0415 - optional

        self.tracer: Tracer = trace.get_tracer("foxactors", tracer_provider=tracer_provider)
        self._provider = tracer_provider
        self._follows_parent: bool | None = None
        self.context = context
        self.propagate = propagate
        self.trace = trace
        self.getter = cast("Getter[Mapping[str, Any]]", _HeaderGetter())  # duck-typed

    def follows_parent(self) -> bool:
        """Whether the sampler never samples a span whose parent was not sampled.

        So it is with the SDK's default sampler and every ``ParentBased`` one left
        at its defaults: a span under an unsampled parent would be a non-recording
        span that only carries the parent's context, and that context is carried
        without it (the SDK costs several microseconds for a span it drops).
        """
        if self._follows_parent is None:
            provider = self._provider or self.trace.get_tracer_provider()
            sampler = getattr(provider, "sampler", None)
            if sampler is None:  # no SDK provider (yet): ask again next time
                return False
            described = str(sampler.get_description())
            self._follows_parent = all(
                f"{where}ParentNotSampled:AlwaysOffSampler" in described
                for where in ("remote", "local")
            )
        return self._follows_parent

    def _unsampled(self, context: Context | None = None) -> bool:
        span = self.trace.get_current_span(context).get_span_context()
        return span.is_valid and not span.trace_flags.sampled and self.follows_parent()

    def publishing(
        self, properties: MessageProperties, queue: str, system: str
    ) -> tuple[MessageProperties, Span | None]:
        """Start the PRODUCER span and carry its context in the headers.

        Under an unsampled span (see `follows_parent`) no span starts: the current
        context goes into the headers as it is.
        """
        trace = self.trace
        if self._unsampled():
            carrier: dict[str, str] = {}
            self.propagate.inject(carrier)
            return (properties.with_headers(carrier) if carrier else properties), None
        span = self.tracer.start_span(
            f"{queue} publish",
            kind=trace.SpanKind.PRODUCER,
            attributes=_attributes(system, queue, "publish", "send", properties.correlation_id),
        )
        carrier = {}
        self.propagate.inject(carrier, context=trace.set_span_in_context(span))
        if carrier:
            properties = properties.with_headers(carrier)
        return properties, span

    async def process(
        self,
        run: Callable[[Delivery], Awaitable[Outcome]],
        delivery: Delivery,
        system: str | None,
    ) -> Outcome:
        """Run ``run(delivery)`` inside a CONSUMER span, current while it runs."""
        message = delivery.message
        trace = self.trace
        parent = self.propagate.extract(message.headers, getter=self.getter)
        if self._unsampled(parent):  # no span: the parent's context is current
            token = self.context.attach(parent)
            try:
                return await run(delivery)
            finally:
                self.context.detach(token)
        attributes = _attributes(
            system, message.queue, "process", "process", message.properties.correlation_id
        )
        attributes["messaging.message.id"] = message.id
        attributes["foxactors.message.attempt"] = message.attempt
        if message.properties.message_type is not None:
            attributes["foxactors.message.type"] = message.properties.message_type
        span = self.tracer.start_span(
            f"{message.queue} process",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        )
        token = self.context.attach(trace.set_span_in_context(span, parent))
        try:
            outcome = await run(delivery)
        except BaseException as exc:  # cancelled or crashed: the attempt did not finish
            span.record_exception(exc)
            span.set_status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
            raise
        else:
            span.set_attribute("foxactors.outcome", outcome.kind.value)
            if outcome.kind not in _NOT_FAILED:
                if outcome.error is not None:
                    span.record_exception(outcome.error)
                span.set_status(trace.StatusCode.ERROR, outcome.reason or outcome.kind.value)
        finally:
            self.context.detach(token)
            span.end()
        return outcome

    def annotate(self, attributes: Mapping[str, str | int]) -> None:
        """Add ``attributes`` to the current span (the attempt's)."""
        self.trace.get_current_span().set_attributes(attributes)

    def fail(self, error: BaseException) -> None:
        """Mark the current span failed with ``error`` (a handler that settled it)."""
        span = self.trace.get_current_span()
        span.record_exception(error)
        span.set_status(self.trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")


def _attributes(
    system: str | None, queue: str, operation: str, kind: str, correlation_id: str | None
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.destination.name": queue,
        "messaging.operation.name": operation,
        "messaging.operation.type": kind,
    }
    if system is not None:
        attributes["messaging.system"] = system
    if correlation_id is not None:
        attributes["messaging.message.conversation_id"] = correlation_id
    return attributes


class _HeaderGetter:
    """Reads propagation fields from message headers (bytes from the wire as text)."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            return None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return [str(value)]

    def keys(self, carrier: Mapping[str, Any]) -> Iterable[str]:
        return list(carrier)


#: The enabled tracing, or None (off). Read on every publish and attempt.
ACTIVE: _Tracing | None = None


def enable_tracing(tracer_provider: TracerProvider | None = None) -> None:
    """Turn on OpenTelemetry tracing of publishes and processing attempts, process-wide.

    Every backend's ``publish`` then starts a PRODUCER span and carries its context
    in the message headers; every processing attempt of a `WorkerApp` is a CONSUMER
    span, the child of that context. Spans go to ``tracer_provider``, or to the
    global one (``opentelemetry.trace.set_tracer_provider``), looked up when a span
    starts, so the application may set it before or after this call.

    Raises:
        ConfigurationError: opentelemetry-api is not installed (the ``tracing`` extra).
    """
    global ACTIVE  # noqa: PLW0603 - one switch for the process, read on the hot path
    try:
        ACTIVE = _Tracing(tracer_provider)
    except ImportError:
        raise ConfigurationError(_INSTALL) from None


def disable_tracing() -> None:
    """Turn tracing off again: no spans, no trace headers (correlation ids still flow)."""
    global ACTIVE  # noqa: PLW0603 - one switch for the process
    ACTIVE = None


def tracing_enabled() -> bool:
    """Whether `enable_tracing` is in effect."""
    return ACTIVE is not None


def outgoing(
    properties: MessageProperties | None, content_type: str, queue: str, system: str
) -> tuple[MessageProperties | None, AbstractContextManager[Any] | None]:
    """What every backend's ``publish`` sends: ``properties`` plus context; the span.

    Inside a handler, a message published without a correlation id gets the handled
    message's. With tracing on, a PRODUCER span starts and its context goes into the
    headers; the caller ends it (``with span:``) once the broker has the message.
    ``content_type`` is the codec's, for properties made here from none.
    """
    handled = current_message.get()
    if handled is not None and (properties is None or properties.correlation_id is None):
        correlation_id = handled.properties.correlation_id
        if correlation_id is not None:
            properties = (properties or _defaults(content_type)).with_correlation_id(correlation_id)
    tracing = ACTIVE
    if tracing is None:
        return properties, None
    return tracing.publishing(properties or _defaults(content_type), queue, system)


def _defaults(content_type: str) -> MessageProperties:
    if content_type == DEFAULT_PROPERTIES.content_type:
        return DEFAULT_PROPERTIES
    return MessageProperties(content_type=content_type)
