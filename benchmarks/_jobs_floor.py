"""The floor of (b) and (c) with Redis records: the same Redis work, no framework.

A job's life with its record in Redis takes these commands, and this module sends
them from bare redis-py, batched as well as they batch: the producer creates 100
records with their 100 deliveries in one call of the job store's own CREATE script
(as an enqueue does when its records are on the broker's own Redis); the worker reads
16 entries at a time (the prefetch of foxactors' worker), starts them in one START
call and completes them in one COMPLETE call with their XACK in the same pipeline;
then the producer reads each result back (HMGET of state and result; one not final
yet is read again 0.5 ms later), or, with ``push`` (as ``push_results`` does), its
records name a channel it subscribed to before the first enqueue, and it reads the
pushed ends there. Nothing else: no handler runs, no arguments are validated, no retries,
leases, cancels, logs or actors.

So the floor is what the Redis work alone allows on this machine, the same run: (b)
runs it in one process, as (b) runs foxactors; (c) runs its worker in a process of
its own (``python _jobs_floor.py URL STREAM PREFIX N`` is that process), as (c)
does. A figure far from its target beside a floor that is too shows the target out
of reach of any code sending this work (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from _jobs_peers import READY_TIMEOUT, payload
from _jobs_store import delete_keys, entry_fields

from foxactors.jobs import JobRecord
from foxactors.jobs import _redis_scripts as scripts
from foxactors.jobs._record import FORMAT
from foxactors.jobs._redis_form import encode, fields_of

GROUP = "floor"
READ = 16  # entries a read takes: the prefetch of foxactors' worker (2 x concurrency 8)
BATCH = 100  # enqueues in flight, as in (b) and (c)
POLL = 0.0005  # seconds before a result that is not final yet is read again
RETENTION = 24 * 3600.0


def _evalsha(script: scripts.Script, prefix: str, *args: Any) -> tuple[Any, ...]:
    return ("EVALSHA", script.sha, 0, prefix, str(FORMAT), *args)


async def _worker(client: Any, stream: str, prefix: str, n: int) -> None:
    """Start and complete ``n`` jobs from ``stream``, ``READ`` at a time."""
    done = 0
    while done < n:
        reply = await client.execute_command(
            "XREADGROUP", "GROUP", GROUP, "w", "COUNT", READ, "BLOCK", 1000, "STREAMS", stream, ">"
        )
        if not reply:
            continue
        entries = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
        now = time.time()
        starts: list[str] = []
        for _, fields in entries:
            job_id = fields[b"x-job-id"].decode()
            starts += (job_id, repr(now), repr(now + 60), repr(now + RETENTION), uuid.uuid4().hex)
        started = await client.execute_command(*_evalsha(scripts.START, prefix, *starts))
        ends: list[str] = []
        for row in started:
            if row[0] != b"run":  # refused ('error', why), or not runnable: say which
                raise RuntimeError(f"the floor's start answered {row[:2]!r}, not 'run'")
            record = dict(zip(row[1].decode().split(","), json.loads(row[2]), strict=True))
            result = str(record["args"]["n"])  # what the no-op returns
            ends += (record["id"], repr(now), repr(now + RETENTION), result, str(record["attempt"]))
        async with client.pipeline(transaction=False) as pipe:
            pipe.execute_command(*_evalsha(scripts.COMPLETE, prefix, *ends))
            pipe.xack(stream, GROUP, *(entry_id for entry_id, _ in entries))
            completed, _ = await pipe.execute()
        if refused := [row for row in completed if row[0] != b"ok"]:
            raise RuntimeError(f"the floor's complete answered {refused[0]!r}, not 'ok'")
        done += len(entries)


async def _produce(client: Any, stream: str, prefix: str, n: int, *, push: bool) -> None:
    """Enqueue ``n`` jobs (records and deliveries), then read each result back."""
    channel = f"{prefix}:push:floor"
    pushed = ("push", json.dumps(channel)) if push else ()
    pubsub = client.pubsub() if push else None
    if pubsub is not None:
        await pubsub.subscribe(channel)
    ids: list[str] = []
    for first in range(0, n, BATCH):
        now = time.time()
        records = [  # as an enqueue makes them: with its delivery, so committed
            JobRecord(
                id=uuid.uuid4().hex,
                task="noop",
                queue=stream,
                args=payload(i),
                enqueued_at=now,
                committed=True,
            )
            for i in range(first, min(n, first + BATCH))
        ]
        rows = (
            "["
            + ",".join(encode(_row(i, r, stream, pushed)) for i, r in enumerate(records, first))
            + "]"
        )
        await client.execute_command(*_evalsha(scripts.CREATE, prefix, rows))
        ids += (r.id for r in records)
    if pubsub is not None:
        await _pushed(pubsub, ids)
        return
    for i, job_id in enumerate(ids):
        while True:
            state, result = await client.hmget(f"{prefix}:job:{job_id}", "state", "result")
            if state == b'"succeeded"':
                break
            await asyncio.sleep(POLL)
        if json.loads(result) != i:
            raise RuntimeError(f"floor job {i} returned something else")


def _row(i: int, record: JobRecord, stream: str, pushed: tuple[str, ...]) -> list[Any]:
    """CREATE's row of job ``i``: its id, no key, its delivery's XADD, its record."""
    entry = [stream, "*", *(part for item in entry_fields(i, record.id).items() for part in item)]
    return [record.id, "", entry, *fields_of(record), *pushed]


async def _pushed(pubsub: Any, ids: list[str]) -> None:
    """Read the pushed ends of the jobs ``ids`` (the i-th returns i); then unsubscribe."""
    expected = {job_id: i for i, job_id in enumerate(ids)}
    deadline = time.monotonic() + 120
    while expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the floor's producer waited 120 s ({len(expected)} left)")
        message = await pubsub.get_message(timeout=1.0)
        if message is None or message["type"] != "message":
            continue  # nothing yet, or the subscription's confirmation
        for job_id, _, _, _, result, *_ in json.loads(message["data"]):
            if expected.pop(job_id) != result:
                raise RuntimeError(f"floor job {job_id} returned something else")
    await pubsub.aclose()


async def _ready(url: str, stream: str, prefix: str) -> Any:
    client = aioredis.Redis.from_url(url)
    await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    for script in (scripts.CREATE, scripts.START, scripts.COMPLETE):
        await client.script_load(script.source)
    return client


@contextlib.contextmanager
def worker_process(url: str, stream: str, prefix: str, n: int) -> Iterator[None]:
    """The floor's worker in a process of its own, for ``n`` jobs; yields once it reads."""
    worker = subprocess.Popen(
        [sys.executable, str(Path(__file__)), url, stream, prefix, str(n)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        if not select.select([worker.stdout], [], [], READY_TIMEOUT)[0]:
            raise RuntimeError(f"the floor's worker did not start in {READY_TIMEOUT} s")
        if (line := worker.stdout.readline()).strip() != "ready":
            raise RuntimeError(f"the floor's worker did not start: {line!r}")
        yield
    finally:
        try:
            worker.wait(timeout=60)  # it ends once its n jobs are done
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


async def floor_rate(url: str, n: int, *, own_process: bool, push: bool = False) -> float:
    """Jobs per second of the floor: the worker beside the producer, or in its own process."""
    stream = f"bench-floor-{uuid.uuid4().hex[:8]}"
    prefix = f"{stream}:store"
    client = await _ready(url, stream, prefix)
    try:
        if own_process:
            with worker_process(url, stream, prefix, n):
                start = time.perf_counter()
                await _produce(client, stream, prefix, n, push=push)
                return n / (time.perf_counter() - start)
        worker = aioredis.Redis.from_url(url)
        start = time.perf_counter()
        await asyncio.gather(
            _worker(worker, stream, prefix, n), _produce(client, stream, prefix, n, push=push)
        )
        rate = n / (time.perf_counter() - start)
        await worker.aclose()
        return rate
    finally:
        await client.aclose()
        await delete_keys(url, f"{stream}*")


async def _serve(url: str, stream: str, prefix: str, n: int) -> None:
    client = aioredis.Redis.from_url(url)
    print("ready", flush=True)
    await _worker(client, stream, prefix, n)
    await client.aclose()


if __name__ == "__main__":
    import os

    import _jobs_peers  # the benchmark's loop, in the worker process too

    _jobs_peers.use_loop(os.environ.get(_jobs_peers.LOOP_VARIABLE, "asyncio"))
    asyncio.run(_serve(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
