"""Dog-Queue's inbox service as foxactors jobs, on the embedded memory backend.

An email service looks after its users' inboxes (each user is a tenant) with four
job types:

- ``fetch_inbox_snapshot``: once a day per user, idempotent: keyed by the date, so a
  second scheduler firing the same morning gets the same job back;
- ``analyze_reading_patterns``: delayed until after the snapshot (minutes in
  production, 0.2 s here), held by the broker meanwhile;
- ``generate_summaries``: expensive (an AI call per email), reports its progress, and
  is cancelled while it runs: the job ends cancelled, with no result;
- ``cleanup_inbox``: archives and deletes in bulk and must survive crashes: the mail
  server drops its connection halfway, the worker is restarted while the job waits
  for its retry, and the next attempt resumes where the first one stopped.

If a worker process dies in the middle of a job instead, the job's record says
"running" until its lease runs out (``JobQueue(lease=...)``), then the keeper of any
live worker sets it back to pending and the broker delivers it again: the same
resume, one attempt later.

Run it with ``python examples/inbox_service.py`` (``trio`` as an argument runs it on
trio).
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pydantic

import foxactors as fa
from foxactors.jobs import (
    JobCancelled,
    JobContext,
    JobHandle,
    JobNotFound,
    JobQueue,
    JobRecord,
    JobState,
    Linear,
    Retry,
)

QUEUE = "inbox"
TODAY = datetime.date(2026, 12, 2)


class InboxSnapshot(pydantic.BaseModel):
    """What a snapshot found (a model: stored as JSON, read back as a model)."""

    user: str
    day: datetime.date
    total: int
    new: list[str]


class MailServer:
    """The users' mail server (pretend): inboxes, and a connection that can drop."""

    def __init__(self) -> None:
        self.inbox = {
            "alice": [f"a{n}" for n in range(1, 9)],
            "bob": [f"b{n}" for n in range(1, 4)],
        }
        self.archived: list[str] = []
        self.deleted: list[str] = []
        self.drop_after: int | None = None  # changes before the connection drops
        self.summaries_started = 0

    async def change(self, action: str, email_id: str) -> None:
        """Archive or delete one email; the connection may drop first."""
        await anyio.lowlevel.checkpoint()  # a network call, in real life
        if self.drop_after is not None:
            if self.drop_after == 0:
                self.drop_after = None
                raise ConnectionResetError("the mail server closed the connection")
            self.drop_after -= 1
        (self.archived if action == "archive" else self.deleted).append(email_id)

    def done(self, email_id: str) -> bool:
        """True if this email was archived or deleted already (by an earlier attempt)."""
        return email_id in self.archived or email_id in self.deleted


server = MailServer()
backend = fa.MemoryBackend()
jobs = JobQueue(backend, queue=QUEUE)


@jobs.task(priority="high", max_attempts=5)
async def fetch_inbox_snapshot(ctx: JobContext, user: str, day: datetime.date) -> InboxSnapshot:
    """Record the state of a user's inbox for ``day``."""
    emails = server.inbox[user]
    return InboxSnapshot(user=user, day=day, total=len(emails) + 140, new=emails[:3])


@jobs.task(max_attempts=3)
async def analyze_reading_patterns(ctx: JobContext, user: str, email_ids: list[str]) -> list[str]:
    """Find the senders the user never reads."""
    return ["newsletter@deals.example"] if email_ids else []


@jobs.task(max_attempts=2)
async def generate_summaries(ctx: JobContext, user: str, email_ids: list[str]) -> list[str]:
    """Summarise each email with an AI model: slow and expensive, so it can be cancelled."""
    summaries = []
    for done, email_id in enumerate(email_ids):
        server.summaries_started += 1
        await anyio.sleep(0.01 if done < 2 else 10)  # the third email is a long one
        summaries.append(f"{email_id}: meeting moved to 3 pm")
        await ctx.progress(
            100 * (done + 1) / len(email_ids), f"{done + 1} of {len(email_ids)} done"
        )
    return summaries


@jobs.task(priority="low", max_attempts=5, backoff=Linear(step=0.5))
async def cleanup_inbox(
    ctx: JobContext, user: str, archive: list[str], delete: list[str]
) -> dict[str, int]:
    """Archive and delete in bulk; safe to run again: it skips what is already done."""
    plan = [("archive", e) for e in archive] + [("delete", e) for e in delete]
    for done, (action, email_id) in enumerate(plan, start=1):
        if server.done(email_id):
            continue
        try:
            await server.change(action, email_id)
        except ConnectionResetError as exc:
            raise Retry(reason=f"{exc} after {done - 1} of {len(plan)} changes") from None
        await ctx.progress(100 * done / len(plan), f"{done} of {len(plan)} changes")
    return {"archived": len(archive), "deleted": len(delete)}


async def wait_until(handle: JobHandle[Any], ready: Callable[[JobRecord], bool]) -> None:
    """Poll the job's record until ``ready(record)`` is true (as a dashboard would)."""
    while not ready(await handle.status()):  # noqa: ASYNC110 - no feed of progress to wait on
        await anyio.sleep(0.01)


async def story() -> None:
    """Enqueue, run, read back, and tell what happened."""
    print("Dog-Queue's inbox service: users alice and bob are tenants\n")

    key = f"snapshot:{TODAY}"
    alice = await fetch_inbox_snapshot.options(key=key, tenant="alice").enqueue("alice", TODAY)
    print(f"the scheduler enqueues alice's snapshot for {TODAY} (key {key!r}): new job")
    twice = await fetch_inbox_snapshot.options(key=key, tenant="alice").enqueue("alice", TODAY)
    print(
        f"  a second scheduler fires: the same job back (created={twice.created}, "
        f"same job: {twice.id == alice.id})"
    )
    bob = await fetch_inbox_snapshot.options(key=key, tenant="bob").enqueue("bob", TODAY)
    print(f"  bob's snapshot, same key: a new job (created={bob.created}): keys are per tenant")

    analysis = await analyze_reading_patterns.options(tenant="alice", delay=0.2).enqueue(
        "alice", server.inbox["alice"]
    )
    record = await analysis.status()
    print(f"alice's reading analysis, to run 0.2 s after the snapshot: {record.state.value}")

    print("\nthe worker starts")
    async with fa.open_system(jobs.worker(QUEUE, concurrency=2).build()):
        for handle in (alice, bob):
            snapshot = await handle.result(timeout=10)
            print(
                f"{snapshot.user}'s snapshot: {snapshot.total} emails, new: "
                f"{', '.join(snapshot.new)} ({type(snapshot).__name__})"
            )
        print(f"alice's analysis, once due: never reads {await analysis.result(timeout=10)}")

        summaries = await generate_summaries.options(tenant="alice").enqueue(
            "alice", ["a1", "a2", "a3", "a4", "a5"]
        )
        await wait_until(summaries, lambda r: (r.progress or 0) >= 40)
        record = await summaries.status()
        print(
            f"summaries of 5 emails: {record.state.value}, {record.progress:.0f}% "
            f"({record.progress_message})"
        )
        try:
            await jobs.handle(summaries.id, tenant="bob").status()
        except JobNotFound:
            print("  bob asks about alice's job: JobNotFound (tenants see their own jobs)")
        cancelled = await summaries.cancel()
        print(f"  alice cancels it while it runs: {cancelled.kind.value}")
        try:
            await summaries.result(timeout=10)
        except JobCancelled:
            record = await summaries.status()
            print(
                f"  summaries: {record.state.value}, result {record.result}; "
                f"AI calls started: {server.summaries_started} of 5"
            )

        server.drop_after = 3
        cleanup = await cleanup_inbox.options(tenant="alice").enqueue(
            "alice", archive=["a5", "a6", "a7", "a8"], delete=["a3", "a4"]
        )
        await wait_until(cleanup, lambda r: r.state is JobState.RETRYING)
        record = await cleanup.status()
        delay = cleanup_inbox.defaults.backoff(record.attempt)  # the task's rule: Linear
        print(f"cleanup, attempt {record.attempt}: {record.reason}; retrying in {delay} s")
    print("the worker stops (a deploy) while the cleanup waits for its retry")
    print(f"  the retry is held by the broker: {backend.queue_statistics(QUEUE).delayed} delayed")
    async with fa.open_system(jobs.worker(QUEUE, concurrency=2).build()):
        print("a new worker starts")
        outcome = await cleanup.result(timeout=10)
        record = await cleanup.status()
        print(
            f"cleanup, attempt {record.attempt}: {record.state.value}, {outcome}, "
            f"resumed at change 4 of 6"
        )
        changes = server.archived + server.deleted
        print(f"  archived {', '.join(server.archived)}; deleted {', '.join(server.deleted)}")
        print(f"  changes made twice: {len(changes) - len(set(changes))}")
    counts = await jobs.counts(queue=QUEUE)
    print("\njobs by state:", ", ".join(f"{s.value} {n}" for s, n in counts.items() if n))


def main(argv: list[str]) -> None:
    """Run the story on asyncio, or on trio with ``trio`` as the argument."""
    fa.configure_logging(level="error")  # the story is the output; errors still show
    anyio.run(story, backend=argv[0] if argv else "asyncio")


if __name__ == "__main__":
    main(sys.argv[1:])
