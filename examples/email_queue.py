"""Armature's email queue as foxactors jobs, on the embedded memory backend.

One worker sends one email at a time through a pretend mail gateway:

- four welcome emails at priorities low, normal, high and critical, enqueued before
  the worker starts: the critical one is sent first, the low one last;
- a receipt with an idempotency key: the same key again is refused (``unique=True``)
  or returns the job already enqueued;
- a promotion cancelled before any worker ran: it is never sent;
- an address at a domain that does not exist: rejected at once, with its reason;
- a flaky gateway: timed out twice, the email is sent on the third attempt;
- a reminder delayed by 0.3 s: scheduled, then sent once due;
- a newsletter that reports its progress list by list.

Every line it prints is read back from the job records (state, attempts, progress,
result, reason). Run it with ``python examples/email_queue.py`` (``trio`` as an
argument runs it on trio).
"""

from __future__ import annotations

import sys

import anyio
import anyio.lowlevel

import foxactors as fa
from foxactors.jobs import (
    Exponential,
    JobAlreadyExists,
    JobCancelled,
    JobContext,
    JobFailed,
    JobHandle,
    JobQueue,
    Reject,
)

QUEUE = "emails"


class GatewayTimeout(Exception):
    """The mail gateway did not answer in time (worth another try)."""


class NoSuchDomain(Exception):
    """The address's domain does not exist (no retry can fix that)."""


class Gateway:
    """The mail gateway (pretend): it records what it sent, in order."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.timeouts: dict[str, int] = {}  # address -> timeouts it still answers with
        self._quota: anyio.Event | None = None

    async def send(self, to: str, subject: str) -> None:
        """Send one email, or fail as this address is set up to."""
        await anyio.lowlevel.checkpoint()  # a network call, in real life
        if to.rpartition("@")[2].endswith(".invalid"):
            raise NoSuchDomain(to.rpartition("@")[2])
        if self.timeouts.get(to, 0) > 0:
            self.timeouts[to] -= 1
            raise GatewayTimeout(f"no answer from the gateway for {to}")
        self.sent.append(f"{subject} -> {to}")

    def quota(self) -> anyio.Event:
        """The gateway's bulk quota: set once bulk sending may go on."""
        if self._quota is None:
            self._quota = anyio.Event()
        return self._quota


gateway = Gateway()
backend = fa.MemoryBackend()
jobs = JobQueue(backend, queue=QUEUE)


@jobs.task(
    max_attempts=4,
    retry_on=GatewayTimeout,  # anything else (a bug) goes dead at once, with its error
    backoff=Exponential(initial=0.05, maximum=1.0, jitter=0),
)
async def send_email(ctx: JobContext, to: str, subject: str) -> str:
    """Send one email; a domain that does not exist is rejected, not retried."""
    try:
        await gateway.send(to, subject)
    except NoSuchDomain as exc:
        raise Reject(f"no such domain: {exc}") from None
    return f"sent on attempt {ctx.attempt}"


@jobs.task(priority="low")
async def send_newsletter(ctx: JobContext, issue: str, lists: list[str]) -> int:
    """Send an issue to each mailing list, reporting progress list by list."""
    for done, name in enumerate(lists, start=1):
        if done == len(lists):
            await gateway.quota().wait()  # bulk mail waits for the gateway's quota
        await gateway.send(f"{name}@lists.example.com", issue)
        await ctx.progress(100 * done / len(lists), f"sent to {done} of {len(lists)} lists")
    return len(lists)


async def wait_for_progress(handle: JobHandle[int], percent: float) -> None:
    """Wait until the job reports at least ``percent`` (as a dashboard would, by polling)."""
    while ((await handle.status()).progress or 0.0) < percent:  # noqa: ASYNC110 - no feed to wait on
        await anyio.sleep(0.01)


async def before_the_worker() -> list[JobHandle[str]]:
    """Enqueue with no worker running: priorities, a key, a cancel."""
    handles = []
    for level in ("low", "normal", "high", "critical"):
        handles.append(
            await send_email.options(priority=level).enqueue(
                f"{level}@example.com", subject=f"welcome ({level})"
            )
        )
    print("enqueued 4 welcome emails (low, normal, high, critical); no worker runs yet")

    receipt = await send_email.options(key="receipt-1042").enqueue(
        "ada@example.com", subject="receipt 1042"
    )
    handles.append(receipt)
    print("enqueued receipt 1042 with idempotency key 'receipt-1042'")
    try:
        await send_email.options(key="receipt-1042", unique=True).enqueue(
            "ada@example.com", subject="receipt 1042"
        )
    except JobAlreadyExists as exc:
        print(f"  the same key with unique=True: refused ({type(exc).__name__})")
    again = await send_email.options(key="receipt-1042").enqueue(
        "ada@example.com", subject="receipt 1042"
    )
    print(
        f"  the same key again: the job already enqueued (created={again.created}, "
        f"same job: {again.id == receipt.id})"
    )
    return handles


async def failures() -> None:
    """An address that can never work, and one behind a flaky gateway."""
    gateway.timeouts["linus@example.com"] = 2
    bounce = await send_email.enqueue("grace@example.invalid", subject="welcome")
    flaky = await send_email.enqueue("linus@example.com", subject="welcome")
    try:
        await bounce.result(timeout=10)
    except JobFailed as exc:
        record = exc.record
        print(
            f"grace@example.invalid: {record.state.value} after {record.attempt} attempt: "
            f"{record.reason}"
        )
    letter = backend.dead_letters(QUEUE)[0]
    print(f"  its dead letter says the same: {letter.reason}")
    print(f"linus@example.com: {await flaky.result(timeout=10)} (the gateway timed out twice)")


async def later_and_longer() -> None:
    """A delayed reminder, and a newsletter that reports its progress."""
    reminder = await send_email.options(delay=0.3).enqueue(
        "ada@example.com", subject="your trial ends tomorrow"
    )
    print(f"reminder enqueued to run in 0.3 s: {(await reminder.status()).state.value}")
    print(f"reminder: {await reminder.result(timeout=10)}")
    record = await reminder.status()
    sent_when_due = (record.started_at or 0.0) >= (record.scheduled_at or float("inf"))
    print(f"  it waited in the broker until it was due: {sent_when_due}")

    newsletter = await send_newsletter.enqueue(
        "December issue", lists=["customers", "partners", "press", "staff"]
    )
    await wait_for_progress(newsletter, 75)
    record = await newsletter.status()
    print(
        f"newsletter: {record.state.value}, {record.progress:.0f}% "
        f"({record.progress_message}), waiting for the gateway's bulk quota"
    )
    gateway.quota().set()
    print(f"newsletter: sent to {await newsletter.result(timeout=10)} lists")


async def story() -> None:
    """Enqueue, run, read back, and tell what happened."""
    print("Armature's email queue: one worker, one email at a time\n")
    first = await before_the_worker()
    promo = await send_email.enqueue("everyone@example.com", subject="promotion")
    cancelled = await promo.cancel()
    print(f"enqueued a promotion and cancelled it before it ran: {cancelled.kind.value}")

    print("\nthe worker starts")
    async with fa.open_system(jobs.worker(QUEUE, concurrency=1).build()):
        for handle in first:
            await handle.result(timeout=10)
        print("the gateway sent, in this order:")
        for line in gateway.sent:
            print(f"  {line}")
        await failures()
        await later_and_longer()
        await backend.join(QUEUE)  # every delivery settled, the promotion's too
    try:
        await promo.result(timeout=1)
    except JobCancelled:
        never = not any("promotion" in line for line in gateway.sent)
        print(f"\nthe promotion: cancelled, never sent: {never}")
    counts = await jobs.counts(queue=QUEUE)
    print("jobs by state:", ", ".join(f"{s.value} {n}" for s, n in counts.items() if n))


def main(argv: list[str]) -> None:
    """Run the story on asyncio, or on trio with ``trio`` as the argument."""
    fa.configure_logging(level="error")  # the story is the output; errors still show
    anyio.run(story, backend=argv[0] if argv else "asyncio")


if __name__ == "__main__":
    main(sys.argv[1:])
