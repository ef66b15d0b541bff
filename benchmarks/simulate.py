"""The simulator: how much virtual time a real second buys, and examples per second.

(a) One `simulate` run of a 1,000-message workload under faults (a crash before an
    ack, a handler that raises, one that is slow, a crashed pool, a lost
    connection): each handler call waits 0.5 s of virtual time (its I/O), 8 workers.
    Reported: virtual seconds simulated per real second, beside the wall-clock
    time the same workload would take in real time (the virtual seconds) as the
    baseline (``->`` the speed-up; the target is at least 100x).
(b) Hypothesis examples per second: `fault_schedules` drawn for a 20-message app,
    each example one whole simulated run.
(c) One `simulate_jobs` run of a workload of jobs (records in a memory job store)
    under faults (a lost ack, a raise, a crashed pool, a lost connection, two
    cancels), each job waiting 0.5 s of virtual time: virtual seconds per real
    second, as in (a).

Run: python benchmarks/simulate.py [--backend asyncio|trio] [--messages N] [--jobs N] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import time

import anyio
from hypothesis import given, settings

import foxactors as fa
from foxactors.testing import (
    CancelJob,
    CrashActor,
    CrashBeforeSettle,
    FaultSchedule,
    LoseConnection,
    RaiseInHandler,
    SlowHandler,
    fault_schedules,
    simulate,
    simulate_jobs,
)


def app() -> fa.WorkerApp:
    """Eight workers whose handler waits half a virtual second per message."""

    async def handle(message: fa.Message) -> None:
        await anyio.sleep(0.5)

    return (
        fa.WorkerApp("app")
        .add_worker(handle)
        .with_concurrency_limit(8)
        .with_prefetch(16)
        .with_timeout(10)
        .with_retry(max_retries=3, initial_backoff=1, max_backoff=8)
    )


def virtual_per_real(backend: str, messages: int) -> None:
    schedule = FaultSchedule(
        [
            CrashBeforeSettle(messages // 10),
            RaiseInHandler(messages // 5),
            SlowHandler(messages // 3, 30),
            CrashActor("pool", 10),
            LoseConnection(20),
        ]
    )
    began = time.perf_counter()
    result = simulate(app, messages, schedule, loop=backend)
    real = time.perf_counter() - began
    print(
        f"(a) {messages} messages under {len(schedule.faults)} faults on {backend}: "
        f"{result.elapsed:.1f} virtual s in {real:.3f} real s "
        f"-> {result.elapsed / real:.0f}x real time (baseline: the same run in real time)"
    )


def examples_per_second(backend: str, examples: int) -> None:
    runs = 0

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True)
    @given(schedule=fault_schedules(paths=["pool", "consumer"], messages=20))
    def run(schedule: FaultSchedule) -> None:
        nonlocal runs
        runs += 1
        simulate(app, 20, schedule, loop=backend)

    began = time.perf_counter()
    run()
    real = time.perf_counter() - began
    print(f"(b) hypothesis examples of a 20-message app on {backend}: {runs / real:.1f} per second")


def jobs_virtual_per_real(backend: str, count: int) -> None:
    from foxactors.jobs import JobQueue  # noqa: PLC0415 - the jobs extra

    def make_jobs(memory: fa.MemoryBackend) -> JobQueue:
        jobs = JobQueue(memory, queue="work")

        @jobs.task(name="work", max_attempts=3)
        async def work(n: int) -> int:
            await anyio.sleep(0.5)
            return n

        return jobs

    async def workload(jobs: JobQueue) -> None:
        for n in range(count):
            await jobs.tasks["work"].enqueue(n=n)

    schedule = FaultSchedule(
        [
            CrashBeforeSettle(count // 10),
            RaiseInHandler(count // 5),
            CrashActor("pool", 10),
            LoseConnection(20),
            CancelJob(count // 2, 5),
            CancelJob(count - 1, 15),
        ]
    )
    began = time.perf_counter()
    result = simulate_jobs(
        make_jobs,
        workload,
        schedule,
        worker=lambda jobs: jobs.worker("work", concurrency=8),
        loop=backend,
    )
    real = time.perf_counter() - began
    print(
        f"(c) {count} jobs under {len(schedule.faults)} faults on {backend}: "
        f"{result.elapsed:.1f} virtual s in {real:.3f} real s "
        f"-> {result.elapsed / real:.0f}x real time (baseline: the same run in real time)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--examples", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.examples, args.jobs = 100, 5, 50
    logging.disable(logging.CRITICAL)  # the faults are logged as failures: not the figure
    virtual_per_real(args.backend, args.messages)
    examples_per_second(args.backend, args.examples)
    jobs_virtual_per_real(args.backend, args.jobs)


if __name__ == "__main__":
    main()
