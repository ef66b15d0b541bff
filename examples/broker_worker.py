"""An email worker on RabbitMQ or Redis Streams, run by the CLI until SIGINT/SIGTERM.

    FOXACTORS_BROKER_URL=amqp://guest:guest@localhost/ foxactors run examples.broker_worker:app
    FOXACTORS_BROKER_URL=redis://localhost:6379/0 foxactors run examples.broker_worker:app

Environment: ``FOXACTORS_BROKER_URL`` (``amqp://`` for RabbitMQ, ``redis://`` for Redis;
default: a local RabbitMQ), ``FOXACTORS_QUEUE`` (the queue or stream, default
``emails``), ``FOXACTORS_CLAIM_MIN_IDLE`` (Redis: seconds before a dead consumer's
messages are taken over, default 60). The test suite also sets
``FOXACTORS_PROCESSED_LOG`` (a file each handled message's number is appended to),
``FOXACTORS_WORK_SECONDS`` (simulated work per message) and ``FOXACTORS_STALL_FROM``
(messages from this number on never finish), to kill and stop this process mid-stream.
"""

from __future__ import annotations

import os

import anyio
import structlog

import foxactors as fa
from foxactors import backends

URL = os.environ.get("FOXACTORS_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
QUEUE = os.environ.get("FOXACTORS_QUEUE", "emails")
PROCESSED = os.environ.get("FOXACTORS_PROCESSED_LOG")
WORK = float(os.environ.get("FOXACTORS_WORK_SECONDS", "0"))
STALL_FROM = int(os.environ.get("FOXACTORS_STALL_FROM", "-1"))

log = structlog.get_logger("email")


async def send_email(message: fa.Message) -> None:
    """Pretend to send one email; record it when the tests ask."""
    n = message.payload["n"]
    if PROCESSED:
        async with await anyio.open_file(PROCESSED, "a") as out:
            await out.write(f"{n}\n")
    if WORK:
        await anyio.sleep(WORK)  # simulated I/O
    if 0 <= STALL_FROM <= n:
        await anyio.sleep_forever()  # a handler that hangs, to be killed mid-message
    log.debug("email.sent", n=n, attempt=message.attempt)


def broker(url: str) -> backends.Backend:
    """The backend the URL names: RabbitMQ for amqp(s)://, Redis Streams for redis(s)://."""
    if url.startswith(("redis://", "rediss://")):
        idle = float(os.environ.get("FOXACTORS_CLAIM_MIN_IDLE", "60"))
        return backends.RedisBackend(url, leases=backends.Leases(claim_min_idle=idle))
    return backends.RabbitMQBackend(url)


app = (
    fa.WorkerApp("emails")
    .add_worker(send_email)
    .with_prefetch(20)
    .with_retry(max_retries=3, initial_backoff=1)
    .with_drain_timeout(10)
    .with_backend(broker(URL), QUEUE)
)
