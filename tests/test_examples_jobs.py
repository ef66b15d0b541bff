"""The job examples run as scripts, on asyncio and trio, and tell the same story every time.

Each example prints what it read back from the job records; the whole output is
pinned, so a change in what a job does (its order, attempts, state, reason) shows
here. They run in processes of their own because their queue lives at module level,
as an application's would.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

EMAIL_QUEUE = """\
Armature's email queue: one worker, one email at a time

enqueued 4 welcome emails (low, normal, high, critical); no worker runs yet
enqueued receipt 1042 with idempotency key 'receipt-1042'
  the same key with unique=True: refused (JobAlreadyExists)
  the same key again: the job already enqueued (created=False, same job: True)
enqueued a promotion and cancelled it before it ran: cancelled

the worker starts
the gateway sent, in this order:
  welcome (critical) -> critical@example.com
  welcome (high) -> high@example.com
  welcome (normal) -> normal@example.com
  receipt 1042 -> ada@example.com
  welcome (low) -> low@example.com
grace@example.invalid: dead after 1 attempt: no such domain: example.invalid
  its dead letter says the same: no such domain: example.invalid
linus@example.com: sent on attempt 3 (the gateway timed out twice)
reminder enqueued to run in 0.3 s: scheduled
reminder: sent on attempt 1
  it waited in the broker until it was due: True
newsletter: running, 75% (sent to 3 of 4 lists), waiting for the gateway's bulk quota
newsletter: sent to 4 lists

the promotion: cancelled, never sent: True
jobs by state: succeeded 8, dead 1, cancelled 1
"""

INBOX_SERVICE = """\
Dog-Queue's inbox service: users alice and bob are tenants

the scheduler enqueues alice's snapshot for 2026-12-02 (key 'snapshot:2026-12-02'): new job
  a second scheduler fires: the same job back (created=False, same job: True)
  bob's snapshot, same key: a new job (created=True): keys are per tenant
alice's reading analysis, to run 0.2 s after the snapshot: scheduled

the worker starts
alice's snapshot: 148 emails, new: a1, a2, a3 (InboxSnapshot)
bob's snapshot: 143 emails, new: b1, b2, b3 (InboxSnapshot)
alice's analysis, once due: never reads ['newsletter@deals.example']
summaries of 5 emails: running, 40% (2 of 5 done)
  bob asks about alice's job: JobNotFound (tenants see their own jobs)
  alice cancels it while it runs: requested
  summaries: cancelled, result None; AI calls started: 3 of 5
cleanup, attempt 1: the mail server closed the connection after 3 of 6 changes; retrying in 0.5 s
the worker stops (a deploy) while the cleanup waits for its retry
  the retry is held by the broker: 1 delayed
a new worker starts
cleanup, attempt 2: succeeded, {'archived': 4, 'deleted': 2}, resumed at change 4 of 6
  archived a5, a6, a7, a8; deleted a3, a4
  changes made twice: 0

jobs by state: succeeded 4, cancelled 1
"""


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["asyncio", "trio"])
@pytest.mark.parametrize(
    ("script", "story"),
    [("email_queue", EMAIL_QUEUE), ("inbox_service", INBOX_SERVICE)],
    ids=["email_queue", "inbox_service"],
)
def test_the_example_tells_its_story(script: str, story: str, loop: str) -> None:
    proc = subprocess.run(
        [sys.executable, f"examples/{script}.py", loop],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    assert proc.stdout == story


@pytest.mark.parametrize(
    ("module", "queue"), [("email_queue", "emails"), ("inbox_service", "inbox")]
)
def test_the_example_imports_without_running(
    module: str, queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    example = importlib.import_module(f"examples.{module}")
    assert capsys.readouterr().out == ""  # importing declares; only running tells the story
    assert {task.queue for task in example.jobs.tasks.values()} == {queue}
    assert example.jobs.worker(queue).options.queue == queue  # a WorkerApp for `foxactors run`
