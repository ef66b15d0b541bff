"""The RabbitMQ backend (aio-pika): manual acks, delayed retry queues, a dead-letter queue.

Topology, declared idempotently per queue ``q`` (names configurable):

- ``q``: the work queue (durable; classic or quorum). Expired messages dead-letter
  to ``q-dlq`` through RabbitMQ's own dead-lettering.
- ``q-retry_exchange``: a direct exchange; one queue ``q-retry-<ms>`` per delay bucket
  is bound to it. A bucket queue has a message TTL of its delay and dead-letters back
  to ``q``, so a message due in 1 s never waits behind one due in 60 s.
- ``q-dlq``: dead letters, with the original body and properties untouched and the
  headers ``x-original-routing-key``, ``x-failure-reason``, ``x-final-attempt`` and
  ``x-failed-at`` added.

Attempts: ``x-retry-attempt`` counts the attempts that went through the retry path;
a redelivery (the broker's redelivered flag, or a quorum queue's delivery count) adds
to it, so max retries holds even when workers die mid-message.

Modules: ``_wire`` (AMQP properties and headers, pure), ``_topology`` (queue names and
arguments), ``_client`` (connecting, and which errors mean what), ``_backend``
(publishing, declaring, opening sources), ``_source`` (a consumer and its batched
settlement), ``_deadletters`` (listing, replaying, purging the dead-letter queue).

RabbitMQ runs on asyncio only (aio-pika): use this backend under asyncio.
"""

from __future__ import annotations

try:
    import aio_pika  # noqa: F401 - only to say what to install when it is missing
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the RabbitMQ backend needs aio-pika: pip install 'foxactors[rabbitmq]' "
        "(from a clone: pip install '.[rabbitmq]')"
    ) from exc

from ._backend import RabbitMQBackend as RabbitMQBackend
from ._backend import RabbitMQQueueStatistics as RabbitMQQueueStatistics
from ._backend import RabbitMQStatistics as RabbitMQStatistics
from ._source import RabbitMQSource as RabbitMQSource
from ._topology import Topology as Topology
from ._topology import delay_bucket as delay_bucket
