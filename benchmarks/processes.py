"""Worker processes: 1 against 2 on RabbitMQ and on Redis, and the restart of a killed one.

Each run publishes N small JSON messages to a fresh queue (or stream), then starts
``foxactors run processes:app --processes P --http-port PORT`` and times how long
until the parent's merged ``/metrics`` count all N handled. The clock starts at the
first poll (every 20 ms, ``--poll``) that sees a message handled, so the children's start is
not counted. The handler spends WORK microseconds of CPU
per message (a busy loop: the work a second process can take over); prefetch 100.
Both process counts run in the same run, on the same broker.

Restart: with 2 processes up, one child is killed with SIGKILL; the figure is the
time until the parent's ``/health`` shows its replacement ready (consuming), beside
the app's own start time (spawning ``foxactors run`` to ready, one process).

Starts its own rabbitmq-server and redis-server on loopback unless given URLs.

``--cpu`` (Linux) also says where the CPU went during each timed window: the CPU
seconds (user + system, from /proc/PID/stat) of the parent, of each child, of the
broker's server (our own, with its descendants: the Erlang VM for RabbitMQ), of this
script (its polling of the parent's /metrics), and of the whole machine (/proc/stat),
whose rest is other programs'. On a shared machine that rest is noise in every
figure here.

Run: python benchmarks/processes.py [--messages N] [--work MICROSECONDS]
    [--rabbitmq-url amqp://...] [--redis-url redis://...] [--brokers rabbitmq,redis]
    [--quick] [--cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import foxactors as fa
from foxactors import backends

HERE = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: Seconds between two polls of the parent (each one a scrape of every child).
POLL = 0.02


async def _work(message: fa.Message) -> None:
    end = time.perf_counter() + int(os.environ.get("FOXACTORS_BENCH_WORK_US", "200")) / 1e6
    while time.perf_counter() < end:  # CPU work: what a second process can share
        pass


def _backend(url: str) -> Any:
    if url.startswith("redis"):
        return backends.RedisBackend(url)
    return backends.RabbitMQBackend(url)


def app() -> fa.WorkerApp:
    """The app each child runs: the broker and queue come from the environment."""
    url = os.environ["FOXACTORS_BENCH_URL"]
    return (
        fa.WorkerApp("bench")
        .add_worker(_work)
        .with_prefetch(100)
        .with_backend(_backend(url), os.environ["FOXACTORS_BENCH_QUEUE"])
    )


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except OSError:
        return 0, ""


def _handled(base: str) -> int:
    status, text = _get(base + "/metrics")
    total = 0.0
    for line in text.splitlines() if status == 200 else []:
        if line.startswith("foxactors_messages_succeeded_total"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _until(check: Callable[[], bool], what: str, deadline: float = 120.0) -> float:
    """Poll ``check`` (another process's state) until it holds; the time it did."""
    end = time.perf_counter() + deadline
    while not check():
        if time.perf_counter() > end:
            raise SystemExit(f"no {what} within {deadline:g}s")
        time.sleep(POLL)
    return time.perf_counter()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def parent(url: str, queue: str, processes: int, work: int) -> Iterator[tuple[str, int]]:
    """A parent of ``processes`` children on ``queue``; yields its base URL and pid."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "foxactors", "run", "processes:app", "--processes",
         str(processes), "--http-port", str(port), "--log-level", "warning"],
        cwd=HERE,
        stdout=subprocess.DEVNULL,
        env={
            **os.environ,
            # this app, then the foxactors being measured
            "PYTHONPATH": os.pathsep.join([str(HERE), str(Path(fa.__file__).parents[1])]),
            "FOXACTORS_BENCH_URL": url,
            "FOXACTORS_BENCH_QUEUE": queue,
            "FOXACTORS_BENCH_WORK_US": str(work),
        },
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def publish(url: str, queue: str, n: int) -> None:
    async def go() -> None:
        backend = _backend(url)
        try:
            sent = 0
            while sent < n:
                batch = min(100, n - sent)
                await asyncio.gather(
                    *(backend.publish(queue, {"n": sent + i}) for i in range(batch))
                )
                sent += batch
        finally:
            await backend.close()

    asyncio.run(go())


def throughput(url: str, processes: int, n: int, work: int, cpu: list[int] | None = None) -> float:
    """Messages per second of ``processes`` children, from all ready to all handled.

    With ``cpu`` (the broker's pids, maybe none), prints the window's `CpuSplit`.
    """
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    with parent(url, queue, 1, work) as (base, _):  # declare the queue; then stop
        _until(lambda: _get(base + "/ready")[0] == 200, "ready")
    publish(url, queue, n)
    with parent(url, queue, processes, work) as (base, pid):
        first: list[int] = []

        def begun() -> bool:
            first.append(_handled(base))
            return first[-1] > 0

        start = _until(begun, "the first message handled")
        before = None if cpu is None else CpuSplit.take(pid, cpu)
        end = _until(lambda: _handled(base) >= n, f"{n} handled")
        if before is not None and cpu is not None:
            print(f"  {processes} process(es): {CpuSplit.take(pid, cpu).since(before)}")
    return (n - first[-1]) / max(end - start, 1e-9)


def restart(url: str, work: int) -> tuple[float, float]:
    """(start time of one process, SIGKILL-to-consuming time of a child of two)."""
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    spawned = time.perf_counter()
    with parent(url, queue, 1, work) as (base, _):
        started = _until(lambda: _get(base + "/ready")[0] == 200, "ready") - spawned
    with parent(url, queue, 2, work) as (base, _):
        _until(lambda: _get(base + "/ready")[0] == 200, "ready")
        victim = json.loads(_get(base + "/health")[1])["processes"][0]["pid"]
        killed = time.perf_counter()
        os.kill(victim, signal.SIGKILL)

        def back() -> bool:
            status, text = _get(base + "/health")
            child = json.loads(text)["processes"][0] if status == 200 else {}
            return child.get("pid") not in (None, victim) and bool(child.get("ready"))

        again = _until(back, "the killed child consuming again") - killed
    return started, again


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (all its threads); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return sorted(found)


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for child in _children_of(pid):
        found += _descendants(child)
    return found


def _machine() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


class CpuSplit:
    """CPU seconds so far of the parent, its children, the broker, this script, the machine."""

    def __init__(self, at: float, parts: dict[str, float], machine: tuple[float, float]) -> None:
        self.at, self.parts, self.machine = at, parts, machine

    @classmethod
    def take(cls, parent_pid: int, broker_pids: list[int]) -> CpuSplit:
        """The figures now (the children: the parent's, as they are now)."""
        parts = {"parent": _cpu_seconds(parent_pid)}
        for i, child in enumerate(_children_of(parent_pid), 1):
            parts[f"child {i}"] = _cpu_seconds(child)
        broker = [p for pid in broker_pids for p in _descendants(pid)]
        parts["broker"] = sum(_cpu_seconds(p) for p in broker)
        own = os.times()
        parts["this script"] = own.user + own.system
        return cls(time.perf_counter(), parts, _machine())

    def since(self, before: CpuSplit) -> str:
        """The CPU seconds spent between ``before`` and this, as one line."""
        wall = self.at - before.at
        spent = {k: v - before.parts.get(k, 0.0) for k, v in self.parts.items()}
        busy = self.machine[0] - before.machine[0]
        capacity = self.machine[1] - before.machine[1]
        ours = sum(spent.values())
        shown = ", ".join(f"{k} {v:.2f}" for k, v in spent.items())
        return (
            f"CPU s over {wall:.2f} s wall: {shown}; machine busy {busy:.2f} of {capacity:.2f} "
            f"(others {busy - ours:.2f})"
        )


@contextlib.contextmanager
def _servers(args: argparse.Namespace) -> Iterator[dict[str, tuple[str, list[int]]]]:
    """Each broker's URL, and the pids of its server if it is ours."""
    from foxactors.testing.servers import rabbitmq_server, redis_server  # noqa: PLC0415

    with contextlib.ExitStack() as stack:
        urls: dict[str, tuple[str, list[int]]] = {}
        for broker in args.brokers.split(","):
            given = getattr(args, f"{broker}_url")
            if given:
                urls[broker] = (given, [])
                continue
            server: contextlib.AbstractContextManager[Any] = (
                rabbitmq_server() if broker == "rabbitmq" else redis_server()
            )
            running = stack.enter_context(server)
            process = getattr(running, "process", None)
            urls[broker] = (str(running.url), [process.pid] if process is not None else [])
        yield urls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--work", type=int, default=200, help="CPU microseconds per message")
    parser.add_argument("--rabbitmq-url", help="an existing RabbitMQ (default: our own)")
    parser.add_argument("--redis-url", help="an existing Redis (default: our own)")
    parser.add_argument("--brokers", default="rabbitmq,redis")
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    parser.add_argument("--cpu", action="store_true", help="where the CPU went (Linux)")
    parser.add_argument(
        "--poll", type=float, default=0.02, help="seconds between polls of /metrics"
    )
    args = parser.parse_args()
    global POLL  # noqa: PLW0603 - one setting for the whole run
    POLL = args.poll
    n = 300 if args.quick else args.messages
    print(f"{n} messages, {args.work} us of CPU each, prefetch 100")
    with _servers(args) as urls:
        for broker, (url, pids) in urls.items():
            cpu = pids if args.cpu else None
            one = throughput(url, 1, n, args.work, cpu)
            two = throughput(url, 2, n, args.work, cpu)
            print(f"{broker}: 1 process: {one:,.0f} msg/s")
            print(f"{broker}: 2 processes: {two:,.0f} msg/s -> {two / max(one, 1):.2f}x one")
        started, again = restart(next(iter(urls.values()))[0], args.work)
        print(f"app start (spawn to consuming, 1 process): {started:.2f} s")
        print(f"restart (SIGKILL to consuming again): {again:.2f} s -> {again - started:+.2f} s")


if __name__ == "__main__":
    main()
