"""The peers of `jobs.py`: arq and Celery, each run as one worker process of its own.

The workload is the one foxactors runs: a no-op task that takes the same payload
(``to``, ``template``, ``n``) and returns ``n``, so a result is stored and read back;
for latency, a task that returns how long after its enqueue it started
(``time.perf_counter()`` is CLOCK_MONOTONIC on Linux, one clock for every process).

Both run with the benchmark's concurrency (arq ``max_jobs``, Celery's thread pool),
results in Redis, JSON on the wire (arq's default is pickle; JSON is what the others
send). arq polls: its worker and ``job.result`` poll every ``ARQ_POLL`` seconds (its
default is 0.5 s, which caps it near ``queue_read_limit`` jobs per half second).

Run as a script, this module is the worker process:
``python _jobs_peers.py arq|celery REDIS_URL QUEUE CONCURRENCY``; it prints ``ready``
once it consumes, and stops on SIGTERM. The peers are imported by name, so this
module (and `jobs.py`) loads without them; `available` says which are installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import importlib.util
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from foxactors.jobs import JobQueue, Task

ARQ_POLL = 0.005
"""Seconds between arq's polls of its queue and of a job's result (its default: 0.5)."""
READY_TIMEOUT = 60.0
INSTALL_HINT = "skipped: pip install 'foxactors[bench]'"
PEERS = ("arq", "celery")


def available(peer: str) -> bool:
    """Whether ``peer`` (arq or celery) is installed here."""
    return importlib.util.find_spec(peer) is not None


def payload(n: int) -> dict[str, Any]:
    """The arguments of job ``n``: the same small JSON object the other benchmarks send."""
    return {"to": "user@example.com", "template": "welcome", "n": n}


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[rank]


# -- event loops -----------------------------------------------------------------------

LOOPS = ("asyncio", "uvloop")
LOOP_VARIABLE = "FOXACTORS_BENCH_LOOP"
"""Tells the worker processes the loop the benchmark's process chose."""


def use_loop(name: str) -> None:
    """Make ``name`` the event loop of this process and of the worker processes it starts.

    Raises:
        SystemExit: uvloop was asked for and is not installed (says how to get it).
    """
    os.environ[LOOP_VARIABLE] = name
    if name == "uvloop":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            raise SystemExit("--loop uvloop needs uvloop: pip install uvloop") from None
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# -- worker processes ------------------------------------------------------------------


@contextlib.contextmanager
def worker_process(peer: str, url: str, queue: str, concurrency: int) -> Iterator[None]:
    """Run this module as ``peer``'s worker process; yield once it consumes."""
    proc = subprocess.Popen(
        [sys.executable, "-W", "ignore", str(Path(__file__)), peer, url, queue, str(concurrency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT
        said: list[str] = []
        while not said or said[-1].strip() != "ready":  # Celery prints its banner first
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                raise RuntimeError(f"the {peer} worker did not get ready in {READY_TIMEOUT} s")
            said.append(proc.stdout.readline())
            if not said[-1]:
                raise RuntimeError(f"the {peer} worker exited: {''.join(said)[-500:]}")
        yield
    finally:
        proc.send_signal(signal.SIGQUIT if peer == "celery" else signal.SIGTERM)  # no drain
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready() -> None:
    print("ready", flush=True)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


# -- foxactors, for (c): the same tasks, a worker process like the peers' -------------


def declare(jobs: JobQueue) -> tuple[Task[Any, int], Task[Any, float]]:
    """The benchmark's tasks on a `JobQueue`: a no-op returning ``n``, and ``stamp``."""

    @jobs.task
    async def noop(to: str, template: str, n: int) -> int:
        return n

    @jobs.task
    async def stamp(to: str, template: str, n: int, sent: float) -> float:
        return time.perf_counter() - sent

    return noop, stamp


def store_prefix(queue: str) -> str:
    """The Redis job store prefix that goes with a benchmark queue."""
    return f"{queue}:store"


def serve_foxactors(url: str, queue: str, concurrency: int) -> None:
    """foxactors' job worker: Redis Streams, `RedisJobStore`, ``concurrency`` workers."""
    import foxactors as fa  # noqa: PLC0415 - the peers' processes do without it
    from foxactors.backends import RedisBackend  # noqa: PLC0415
    from foxactors.jobs import JobQueue, RedisJobStore  # noqa: PLC0415

    structlog = importlib.import_module("structlog")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    async def serve() -> None:
        store = RedisJobStore(url, prefix=store_prefix(queue))
        jobs = JobQueue(RedisBackend(url, group="bench"), store=store, queue=queue)
        declare(jobs)
        async with fa.open_system(jobs.worker(queue, concurrency=concurrency).build()):
            fa.freeze_gc()  # as `fa.run` does in a process of its own
            _ready()
            await asyncio.Event().wait()  # until SIGTERM

    asyncio.run(serve())


# -- arq -------------------------------------------------------------------------------


async def _arq_noop(ctx: dict[str, Any], to: str, template: str, n: int) -> int:
    return n


async def _arq_stamp(ctx: dict[str, Any], to: str, template: str, n: int, sent: float) -> float:
    return time.perf_counter() - sent


def serve_arq(url: str, queue: str, concurrency: int) -> None:
    """arq's worker: the two tasks, ``max_jobs=concurrency``, JSON, polling every ARQ_POLL."""
    arq_worker = importlib.import_module("arq.worker")
    connections = importlib.import_module("arq.connections")

    async def started(ctx: dict[str, Any]) -> None:
        _ready()

    worker = arq_worker.Worker(
        functions=[
            arq_worker.func(_arq_noop, name="noop"),
            arq_worker.func(_arq_stamp, name="stamp"),
        ],
        redis_settings=connections.RedisSettings.from_dsn(url),
        queue_name=queue,
        max_jobs=concurrency,
        poll_delay=ARQ_POLL,
        keep_result=600,
        on_startup=started,
        job_serializer=_dumps,
        job_deserializer=json.loads,
    )
    worker.run()


async def _arq_pool(url: str, queue: str) -> Any:
    connections = importlib.import_module("arq.connections")
    return await connections.create_pool(
        connections.RedisSettings.from_dsn(url),
        default_queue_name=queue,
        job_serializer=_dumps,
        job_deserializer=json.loads,
    )


async def arq_rate(url: str, queue: str, n: int, in_flight: int) -> float:
    """Jobs/s: enqueue_job n no-op jobs (``in_flight`` at a time), then each job.result()."""
    pool = await _arq_pool(url, queue)
    try:
        start = time.perf_counter()
        jobs: list[Any] = []
        for first in range(0, n, in_flight):
            batch = range(first, min(n, first + in_flight))
            jobs += await asyncio.gather(*(pool.enqueue_job("noop", **payload(i)) for i in batch))
        for i, job in enumerate(jobs):
            if await job.result(timeout=120, poll_delay=ARQ_POLL) != i:
                raise RuntimeError(f"arq job {i} returned something else")
        return n / (time.perf_counter() - start)
    finally:
        await pool.aclose()


async def arq_latencies(url: str, queue: str, n: int, rate: float) -> list[float]:
    """Seconds from enqueue_job to the task's start, ``n`` jobs sent at ``rate`` per second."""
    pool = await _arq_pool(url, queue)
    try:
        jobs: list[Any] = []

        async def send(i: int) -> None:
            jobs.append(await pool.enqueue_job("stamp", **payload(i), sent=time.perf_counter()))

        await paced(n, rate, send)
        return [await job.result(timeout=120, poll_delay=ARQ_POLL) for job in jobs]
    finally:
        await pool.aclose()


async def paced(n: int, rate: float, send: Callable[[int], Any]) -> None:
    """Start ``send(i)`` for i in range(n) at ``rate`` per second (open loop), await all."""
    loop = asyncio.get_running_loop()
    tasks = []
    start = loop.time()
    for i in range(n):
        due = start + i / rate
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.ensure_future(send(i)))
    await asyncio.gather(*tasks)


# -- Celery ----------------------------------------------------------------------------


def celery_app(url: str, queue: str) -> Any:
    """A Celery app on Redis (broker and result backend) with the two tasks."""
    celery = importlib.import_module("celery")
    app = celery.Celery("bench", broker=url, backend=url)
    app.conf.update(
        task_default_queue=queue,
        result_expires=600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,  # "ready" goes to our pipe, not to a logger
    )

    def noop(to: str, template: str, n: int) -> int:
        return n

    def stamp(to: str, template: str, n: int, sent: float) -> float:
        return time.perf_counter() - sent

    app.task(name="bench.noop")(noop)
    app.task(name="bench.stamp")(stamp)
    return app


def serve_celery(url: str, queue: str, concurrency: int) -> None:
    """Celery's worker: one process, a pool of ``concurrency`` threads."""
    app = celery_app(url, queue)
    signals = importlib.import_module("celery.signals")
    signals.worker_ready.connect(lambda **_: _ready(), weak=False)
    app.worker_main(
        [
            "worker",
            "--pool=threads",
            f"--concurrency={concurrency}",
            "--loglevel=WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            f"--queues={queue}",
        ]
    )


def celery_rate(url: str, queue: str, n: int) -> float:
    """Jobs/s: apply_async n no-op tasks, then each AsyncResult.get()."""
    app = celery_app(url, queue)
    noop = app.tasks["bench.noop"]
    results: list[Any] = []
    try:
        start = time.perf_counter()
        results = [noop.apply_async(kwargs=payload(i)) for i in range(n)]
        for i, result in enumerate(results):
            if result.get(timeout=120) != i:
                raise RuntimeError(f"celery task {i} returned something else")
        return n / (time.perf_counter() - start)
    finally:
        results.clear()  # their __del__ unsubscribes: while the server is still there
        gc.collect()
        app.close()


def celery_latencies(url: str, queue: str, n: int, rate: float) -> list[float]:
    """Seconds from apply_async to the task's start, ``n`` tasks sent at ``rate`` per second."""
    app = celery_app(url, queue)
    stamp = app.tasks["bench.stamp"]
    results: list[Any] = []
    try:
        start = time.perf_counter()
        for i in range(n):
            wait = start + i / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)  # pacing an open-loop producer
            results.append(stamp.apply_async(kwargs={**payload(i), "sent": time.perf_counter()}))
        return [float(result.get(timeout=120)) for result in results]
    finally:
        results.clear()  # their __del__ unsubscribes: while the server is still there
        gc.collect()
        app.close()


def main() -> None:
    peer, url, queue, concurrency = sys.argv[1:5]
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # the benchmark is done with us
    use_loop(os.environ.get(LOOP_VARIABLE, "asyncio"))
    serve = {"arq": serve_arq, "celery": serve_celery, "foxactors": serve_foxactors}[peer]
    serve(url, queue, int(concurrency))


if __name__ == "__main__":
    main()
