"""An email-notification worker on the embedded memory backend.

    /mail                     supervisor; stops when the reporter is done
      notifications           the pipeline (consumer, retry stage, pool of 3 workers)
      reporter                publishes the work, waits for the queue, reports

The mail gateway is flaky: some sends fail on their first attempts and are retried
with backoff. One address is permanently bad (no such domain: not retried, as
trying again cannot fix it), one message has a type nobody handles, one body is not
even JSON: those end in the dead-letter queue, each with its reason. Every other
message is sent exactly once.

Run it with ``foxactors run examples.email_pipeline:app`` or
``python examples/email_pipeline.py``.
"""

from __future__ import annotations

from typing import Any

import structlog

import foxactors as fa

QUEUE = "emails"
log = structlog.get_logger("mail")


class GatewayTimeout(Exception):
    """The mail gateway did not answer."""


class BadAddress(Exception):
    """The address can never receive mail."""


async def send_email(message: fa.Message) -> None:
    """Send one email (pretend); some attempts time out at the gateway."""
    to = message.payload["to"]
    if to.endswith("@invalid"):
        raise BadAddress(f"no such domain for {to}")
    if message.payload["id"] % 4 == 0 and message.attempt < 3:
        raise GatewayTimeout("gateway timed out")
    log.info("email.sent", to=to, attempt=message.attempt)


async def send_sms(message: fa.Message) -> None:
    """Send one text message (pretend)."""
    log.info("sms.sent", to=message.payload["to"])


class Reporter(fa.Actor[Any]):
    """Publishes the work, waits until the queue is drained, reports, stops."""

    def __init__(self, backend: fa.MemoryBackend) -> None:
        self.backend = backend

    async def on_start(self) -> None:
        self.start_task(self.run)

    async def run(self) -> None:
        email = fa.MessageProperties(message_type="send_email")
        for n in range(1, 9):
            await self.backend.publish(
                QUEUE, {"id": n, "to": f"user{n}@example.com"}, properties=email
            )
        await self.backend.publish(QUEUE, {"id": 9, "to": "ghost@invalid"}, properties=email)
        await self.backend.publish(
            QUEUE, {"id": 10, "to": "+15550100"}, properties=email.with_message_type("send_sms")
        )
        await self.backend.publish(
            QUEUE, {"id": 11, "to": "fax"}, properties=email.with_message_type("send_fax")
        )
        self.backend.publish_raw(QUEUE, b"{not json", properties=email)
        await self.backend.join(QUEUE)
        for letter in self.backend.dead_letters(QUEUE):
            log.warning("report.dead_letter", reason=letter.reason, attempts=letter.attempts)
        log.info("report.done", dead_letters=len(self.backend.dead_letters(QUEUE)))
        self.stop()

    async def receive(self, message: Any) -> None:
        pass


def app() -> fa.ChildSpec:
    """Build the tree: the pipeline, then the reporter."""
    backend = fa.MemoryBackend()
    notifications = (
        fa.WorkerApp("notifications")
        .register("send_email", send_email)
        .register("send_sms", send_sms)
        .with_concurrency_limit(3)
        .with_retry(max_retries=3, initial_backoff=0.05, max_backoff=1.0, dead_on=[BadAddress])
        .with_timeout(5)
    )
    return fa.Supervisor.spec(
        "mail",
        [
            notifications.build(backend, QUEUE),
            fa.ChildSpec(
                "reporter",
                lambda: Reporter(backend),
                restart="transient",
                significant=True,
            ),
        ],
        auto_shutdown="any_significant",
    )


if __name__ == "__main__":
    fa.configure_logging()
    exit = fa.run(app())
    log.info("system.stopped", exit=str(exit))
