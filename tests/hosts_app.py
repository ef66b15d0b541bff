"""One app as every host of a deployment runs it: ``foxactors run tests.hosts_app:app``.

The broker, queue, concurrency and prefetch come from ``FOXACTORS_*`` variables
(`foxactors.Settings`), as they would on N containers started from one image. The
backend is built in code from the settings, since the Redis lease is an option a URL
cannot carry. tests/test_many_hosts.py also sets:

- ``HOSTS_RECORD_DIR``: each handled id is appended to a file of this process's own
  (named by its pid) before the handler returns;
- ``HOSTS_WORK_SECONDS``: simulated work per message, so that the hosts share a load;
- ``HOSTS_STALL_AFTER``: after this many messages the handler records the id with the
  word ``stalled`` and hangs, so the process holds unacked deliveries when killed;
- ``HOSTS_CLAIM_MIN_IDLE``: Redis: seconds before a dead consumer's entries move on.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio

import foxactors as fa
from foxactors import backends

RECORDS = Path(os.environ.get("HOSTS_RECORD_DIR", "."))
WORK = float(os.environ.get("HOSTS_WORK_SECONDS", "0"))
STALL_AFTER = int(os.environ.get("HOSTS_STALL_AFTER", "-1"))
CLAIM_MIN_IDLE = float(os.environ.get("HOSTS_CLAIM_MIN_IDLE", "60"))

handled = 0


async def record(message: fa.Message) -> None:
    """Write the message's id down (to this process's file), work, or hang if told."""
    global handled  # noqa: PLW0603 - one process, one count: the point of the app
    handled += 1
    stall = 0 <= STALL_AFTER < handled
    line = f"{message.payload['id']}{' stalled' if stall else ''}\n"
    async with await anyio.open_file(RECORDS / str(os.getpid()), "a") as out:
        await out.write(line)
    if stall:
        await anyio.sleep_forever()  # held, unacked, until the process is killed
    if WORK:
        await anyio.sleep(WORK)


def app() -> fa.WorkerApp:
    """The worker app, on the broker and queue the environment names."""
    settings = fa.Settings()
    if settings.broker_name() == "redis" and settings.redis_url is not None:
        leases = backends.Leases(claim_min_idle=CLAIM_MIN_IDLE)
        backend: backends.Backend = backends.RedisBackend(settings.redis_url, leases=leases)
    else:
        backend = settings.backend()
    worker = fa.WorkerApp("hosts").add_worker(record).with_drain_timeout(10)
    bound = worker.with_backend(backend, settings.queue or "hosts")
    return settings.apply(bound, keep_backend=True)  # keep the lease option
