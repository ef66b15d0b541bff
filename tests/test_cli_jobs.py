"""``foxactors jobs``: status, list, cancel, retry and stats, human and ``--json``.

Most tests call ``main([...])`` in this process, on a `MemoryJobStore` handed to the
command through its one seam, ``_cli_jobs.open_store``; retry publishes to the suite's
real brokers. The last tests run the real thing, a `RedisJobStore` on the suite's
Redis, in this process and in subprocesses.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

import foxactors as fa
import foxactors.jobs
from foxactors import _cli_jobs
from foxactors._cli import main
from foxactors.backends import RabbitMQBackend, RedisBackend
from foxactors.jobs import ErrorInfo, JobQueue, JobRecord, JobState, MemoryJobStore
from foxactors.testing.servers import RedisServer, free_port

from .brokers import BROKERS

ROOT = Path(__file__).resolve().parent.parent
STORE = "redis://:s3cret-pw@127.0.0.1:6399/0"  # the seam's store: never reached


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FOXACTORS_JOBS_STORE_URL", "FOXACTORS_RABBITMQ_URL", "FOXACTORS_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


class Seam:
    """What the command opened through ``open_store``."""

    def __init__(self) -> None:
        self.store = MemoryJobStore()
        self.opened: list[tuple[str, str]] = []

    def open(self, url: str, prefix: str) -> MemoryJobStore:
        self.opened.append((url, prefix))
        return self.store


@pytest.fixture
def seam(monkeypatch: pytest.MonkeyPatch) -> Seam:
    seam = Seam()
    monkeypatch.setattr(_cli_jobs, "open_store", seam.open)
    return seam


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``foxactors jobs ARGV...`` in this process: (exit status, stdout, stderr)."""
    status = main(["jobs", *argv])
    out, err = capsys.readouterr()
    return status, out, err


T0 = 4_102_444_800.0  # 2100-01-01T00:00:00Z: a scheduled job is not due yet


def at(seconds: float) -> str:
    """The ISO form the command prints for ``T0 + seconds``."""
    moment = datetime.datetime.fromtimestamp(T0 + seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def story(store: Any, queue: str = "emails", *, close: bool = False) -> dict[str, str]:
    """Jobs in every interesting state, on ``store``; their ids by name."""

    async def make() -> dict[str, str]:
        try:
            return await jobs_of_every_kind(store, queue)
        finally:
            if close:
                await store.close()

    return asyncio.run(make())


async def jobs_of_every_kind(store: Any, queue: str) -> dict[str, str]:
    clock = iter(T0 + n for n in range(100)).__next__
    jobs = JobQueue(fa.MemoryBackend(), store=store, queue=queue, clock=clock)

    @jobs.task
    async def send(to: str) -> dict[str, Any]:
        return {}

    @jobs.task(queue="reports")
    async def report(month: str) -> None: ...

    ids = {}
    ids["pending"] = (await send.enqueue("ada@example.com")).id  # T0
    ids["acme"] = (
        await send.options(tenant="acme", key="receipt-1", priority="high").enqueue("bob")
    ).id  # T0+1
    ids["running"] = (await report.options(max_attempts=5).enqueue("2026-11")).id  # +2
    await store.start(ids["running"], T0 + 5, T0 + 9)  # its first worker died, and its
    await store.start(ids["running"], T0 + 10, T0 + 40)  # lease ran out: attempt 2
    await store.progress(ids["running"], 2, 50, "step 2 of 4")
    ids["dead"] = (await send.enqueue("grace@example.invalid")).id  # +3
    await store.start(ids["dead"], T0 + 11, T0 + 41)
    error = ErrorInfo("ValueError", "no such domain: example.invalid", "Traceback ...")
    await store.fail(ids["dead"], 1, T0 + 12, error, retry_at=None, reason="no such domain")
    ids["done"] = (await send.enqueue("linus@example.com")).id  # +4
    await store.start(ids["done"], T0 + 13, T0 + 43)
    await store.complete(ids["done"], 1, T0 + 14, {"sent": True, "to": "linus"})
    ids["later"] = (await report.options(delay=3600, tenant="acme").enqueue("2026-12")).id
    return ids


async def _record(store: Any, job_id: str) -> JobRecord:
    record: JobRecord = await store.get(job_id)
    return record


def record(store: Any, job_id: str) -> JobRecord:
    return asyncio.run(_record(store, job_id))


# -- status ------------------------------------------------------------------------------


def test_status_shows_a_running_job_readably(
    seam: Seam, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = story(seam.store)
    status, out, err = run(capsys, "status", ids["running"], "--store", STORE)
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        f"id           {ids['running']}",
        "task         report",
        "queue        reports",
        "state        running",
        "attempts     2/5",
        "progress     50% step 2 of 4",
        "priority     3",
        f"enqueued     {at(2)}",
        f"started      {at(10)}",
        f"leased until {at(40)}",
    ]
    assert seam.opened == [(STORE, "fx:jobs")]


def test_status_shows_the_error_of_a_dead_job_and_the_result_of_a_done_one(
    seam: Seam, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = story(seam.store)
    _, dead, _ = run(capsys, "status", ids["dead"], "--store", STORE)
    assert "state        dead\n" in dead
    assert "attempts     1/3\n" in dead
    assert "error        ValueError: no such domain: example.invalid\n" in dead
    assert "reason       no such domain\n" in dead
    assert f"finished     {at(12)}\n" in dead
    _, done, _ = run(capsys, "status", ids["done"], "--store", STORE)
    assert 'result       {"sent": true, "to": "linus"}\n' in done
    assert "progress     100%\n" in done
    _, acme, _ = run(capsys, "status", ids["acme"], "--store", STORE)
    assert "tenant       acme\n" in acme
    assert "key          receipt-1\n" in acme
    assert "priority     6\n" in acme
    _, later, _ = run(capsys, "status", ids["later"], "--store", STORE)
    assert "state        scheduled\n" in later
    assert f"scheduled    {at(3605)}\n" in later


def test_status_json_is_the_record(seam: Seam, capsys: pytest.CaptureFixture[str]) -> None:
    ids = story(seam.store)
    status, out, _ = run(capsys, "status", ids["dead"], "--store", STORE, "--json")
    assert status == 0
    data = json.loads(out)
    expected = record(seam.store, ids["dead"]).to_dict()
    del expected["v"]
    assert data == expected
    assert data["error"]["traceback"] == "Traceback ..."


def test_an_unknown_id_is_one_line_and_exit_status_1(
    seam: Seam, capsys: pytest.CaptureFixture[str]
) -> None:
    story(seam.store)
    for action in ("status", "cancel", "retry"):
        status, out, err = run(capsys, action, "nope", "--store", STORE, "--redis", STORE)
        assert (status, out, err) == (1, "", "foxactors: no job 'nope'\n"), action


def test_a_tenant_sees_only_its_own_jobs(seam: Seam, capsys: pytest.CaptureFixture[str]) -> None:
    ids = story(seam.store)
    status, _, err = run(capsys, "status", ids["pending"], "--tenant", "acme", "--store", STORE)
    assert (status, err) == (1, f"foxactors: no job {ids['pending']!r} for tenant 'acme'\n")
    assert run(capsys, "status", ids["acme"], "--tenant", "acme", "--store", STORE)[0] == 0


# -- list and stats ----------------------------------------------------------------------


def test_list_is_a_table_newest_first_with_filters(
    seam: Seam, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = story(seam.store)
    status, out, err = run(capsys, "list", "--store", STORE)
    lines = out.splitlines()
    assert status == 0
    assert re.split(r"\s{2,}", lines[0]) == [
        "ID",
        "TASK",
        "QUEUE",
        "STATE",
        "ATTEMPTS",
        "TENANT",
        "ENQUEUED",
    ]
    order = ["later", "done", "dead", "running", "acme", "pending"]
    assert [line.split()[0] for line in lines[1:]] == [ids[name] for name in order]
    assert lines[4].split() == [ids["running"], "report", "reports", "running", "2/5", "-", at(2)]
    assert lines[5].split() == [ids["acme"], "send", "emails", "pending", "0/3", "acme", at(1)]
    assert err == "6 job(s)\n"
    _, out, _ = run(capsys, "list", "--queue", "emails", "--state", "pending", "--store", STORE)
    assert [line.split()[0] for line in out.splitlines()[1:]] == [ids["acme"], ids["pending"]]
    _, out, _ = run(capsys, "list", "--tenant", "acme", "--store", STORE)
    assert [line.split()[0] for line in out.splitlines()[1:]] == [ids["later"], ids["acme"]]


def test_list_pages_with_the_cursor_it_prints(
    seam: Seam, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = story(seam.store)
    _, out, err = run(capsys, "list", "--limit", "4", "--store", STORE)
    cursor = err.rpartition("--cursor ")[2].strip()
    assert err == f"4 job(s); next page: --cursor {cursor}\n"
    first = [line.split()[0] for line in out.splitlines()[1:]]
    _, out, err = run(capsys, "list", "--limit", "4", "--cursor", cursor, "--store", STORE)
    second = [line.split()[0] for line in out.splitlines()[1:]]
    assert err == "2 job(s)\n"
    assert first + second == [
        ids[n] for n in ["later", "done", "dead", "running", "acme", "pending"]
    ]
    _, out, _ = run(capsys, "list", "--limit", "4", "--store", STORE, "--json")
    page = json.loads(out)
    assert [job["id"] for job in page["jobs"]] == first
    assert page["cursor"] == cursor
    assert page["jobs"][0]["state"] == "scheduled"


def test_a_bad_state_or_limit_is_named(seam: Seam, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "list", "--state", "finished", "--store", STORE)
    assert status == 1
    assert err.startswith("foxactors: state must be one of scheduled, pending, running")
    assert "'finished'" in err
    status, _, err = run(capsys, "list", "--limit", "0", "--store", STORE)
    assert status == 1
    assert "limit" in err


def test_the_state_help_names_every_state() -> None:
    assert _cli_jobs.STATES.split(", ") == [state.value for state in JobState]


def test_stats_counts_every_state(seam: Seam, capsys: pytest.CaptureFixture[str]) -> None:
    story(seam.store)
    status, out, _ = run(capsys, "stats", "--store", STORE)
    assert status == 0
    assert [line.split() for line in out.splitlines()] == [
        ["STATE", "JOBS"],
        ["scheduled", "1"],
        ["pending", "2"],
        ["running", "1"],
        ["retrying", "0"],
        ["succeeded", "1"],
        ["dead", "1"],
        ["cancelled", "0"],
        ["total", "6"],
    ]
    _, out, _ = run(capsys, "stats", "--queue", "reports", "--store", STORE, "--json")
    assert json.loads(out) == {
        "scheduled": 1,
        "pending": 0,
        "running": 1,
        "retrying": 0,
        "succeeded": 0,
        "dead": 0,
        "cancelled": 0,
    }
    _, out, _ = run(capsys, "stats", "--tenant", "acme", "--store", STORE, "--json")
    assert sum(json.loads(out).values()) == 2


# -- cancel and retry ---------------------------------------------------------------------


def test_cancel_says_what_it_did(seam: Seam, capsys: pytest.CaptureFixture[str]) -> None:
    ids = story(seam.store)
    assert run(capsys, "cancel", ids["pending"], "--store", STORE) == (
        0,
        f"job {ids['pending']} cancelled: it will not run\n",
        "",
    )
    assert record(seam.store, ids["pending"]).state is JobState.CANCELLED
    _, out, _ = run(capsys, "cancel", ids["running"], "--store", STORE)
    assert out == (
        f"job {ids['running']} is running: cancel requested; it ends cancelled when it stops\n"
    )
    assert record(seam.store, ids["running"]).cancel_requested
    _, out, _ = run(capsys, "status", ids["running"], "--store", STORE)
    assert "state        running (cancel requested)\n" in out
    _, out, _ = run(capsys, "cancel", ids["done"], "--store", STORE, "--json")
    assert json.loads(out) == {"id": ids["done"], "outcome": "finished", "state": "succeeded"}
    assert record(seam.store, ids["done"]).state is JobState.SUCCEEDED


def test_retry_without_a_broker_or_of_a_live_job_is_refused(
    seam: Seam, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = story(seam.store)
    status, _, err = run(capsys, "retry", ids["dead"], "--store", STORE)
    assert status == 1
    assert "--rabbitmq URL or --redis URL" in err
    assert record(seam.store, ids["dead"]).state is JobState.DEAD
    status, _, err = run(capsys, "retry", ids["pending"], "--store", STORE, "--redis", STORE)
    assert (status, err) == (
        1,
        f"foxactors: job {ids['pending']!r} is pending: only dead or cancelled jobs can be "
        "retried\n",
    )


async def _published(broker: str, url: str, queue: str, count: int) -> list[dict[str, Any]]:
    """The headers and payloads of the first ``count`` messages in ``queue`` (left there)."""
    backend: Any = RabbitMQBackend(url) if broker == "rabbitmq" else RedisBackend(url)
    try:
        source = await backend.open_source(queue, prefetch=10)
        try:
            held: list[fa.Delivery] = []
            with anyio.fail_after(30):
                while len(held) < count:
                    held += await source.receive(10)
            return [{**d.message.properties.headers, "body": d.message.payload} for d in held]
        finally:
            await source.close()
    finally:
        await backend.close()


@pytest.mark.parametrize("broker", BROKERS)
def test_retry_publishes_a_dead_job_again_on_its_broker(
    broker: str, seam: Seam, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue(broker)
    queue = f"emails-{uuid.uuid4().hex[:8]}"
    ids = story(seam.store, queue)
    status, out, err = run(
        capsys, "retry", ids["dead"], "--store", STORE, f"--{broker}", server.url
    )
    assert (status, err) == (0, "")
    assert out == f"job {ids['dead']} is pending again on {queue!r}: 3 attempt(s) from the first\n"
    again = record(seam.store, ids["dead"])
    assert (again.state, again.attempt, again.committed) == (JobState.PENDING, 0, True)
    [message] = asyncio.run(_published(broker, server.url, queue, 1))
    assert message["x-job-id"] == ids["dead"]
    assert message["body"] == {"to": "grace@example.invalid"}


def test_a_broker_password_never_shows_in_an_error(
    seam: Seam, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = story(seam.store)
    url = f"amqp://guest:hunter2-pw@127.0.0.1:{free_port()}/"
    status, out, err = run(capsys, "retry", ids["dead"], "--store", STORE, "--rabbitmq", url)
    assert (status, out) == (1, "")
    assert err.startswith("foxactors: cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:")
    assert "hunter2" not in err
    assert err.count("\n") == 1
    assert record(seam.store, ids["dead"]).state is JobState.DEAD  # as it was

    def failing(url: str, prefix: str) -> Any:
        raise foxactors.jobs.JobStoreError(f"cannot reach the job store {url}:\nrefused")

    monkeypatch.setattr(_cli_jobs, "open_store", failing)
    monkeypatch.setenv("FOXACTORS_JOBS_STORE_URL", "redis://:p%40ss-word@127.0.0.1:1/0")
    status, _, err = run(capsys, "stats")
    assert status == 1
    assert err == "foxactors: cannot reach the job store redis://:***@127.0.0.1:1/0: refused\n"


def test_the_store_url_comes_from_the_flag_the_environment_or_the_redis_url(
    seam: Seam, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(capsys, "stats", "--redis", "redis://h:1/2")
    monkeypatch.setenv("FOXACTORS_REDIS_URL", "redis://h:1/3")
    run(capsys, "stats")
    monkeypatch.setenv("FOXACTORS_JOBS_STORE_URL", "redis://h:1/4")
    run(capsys, "stats", "--redis", "redis://h:1/2")
    run(capsys, "stats", "--store", "redis://h:1/5", "--prefix", "app:jobs")
    assert seam.opened == [
        ("redis://h:1/2", "fx:jobs"),
        ("redis://h:1/3", "fx:jobs"),
        ("redis://h:1/4", "fx:jobs"),
        ("redis://h:1/5", "app:jobs"),
    ]


def test_without_a_store_or_with_another_kind_it_says_what_to_give(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, _, err = run(capsys, "stats")
    assert (status, err) == (
        1,
        "foxactors: jobs stats needs the job store: --store URL (a Redis job store) or "
        "$FOXACTORS_JOBS_STORE_URL\n",
    )
    status, _, err = run(capsys, "stats", "--store", "memory://")
    assert status == 1
    assert "must be a Redis one" in err
    assert "the memory store lives inside one process" in err
    status, _, err = run(capsys, "stats", "--store", "amqp://guest:hunter2-pw@h/")
    assert status == 1
    assert "amqp://guest:***@h/" in err
    assert "hunter2" not in err


def test_the_help_says_the_store_is_redis_not_memory(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["jobs", "list", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "The job store is a Redis job store" in out
    assert "The memory store lives inside one process, so these commands cannot read it" in out


# -- real processes ----------------------------------------------------------------------


def foxactors_command(
    *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "foxactors", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": os.environ["PATH"], **(env or {})},
        check=False,
    )


def test_a_subprocess_with_an_unreachable_store_fails_in_one_line_without_the_password() -> None:
    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    done = foxactors_command("jobs", "status", "abc", env={"FOXACTORS_JOBS_STORE_URL": url})
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("foxactors: ")
    assert done.stderr.count("\n") == 1
    assert "s3cret" not in done.stderr


@pytest.fixture
def redis_store(redis: RedisServer) -> tuple[str, str]:
    """The suite's Redis as a job store: (URL, a prefix of this test's own)."""
    return redis.url, f"fx:test:{uuid.uuid4().hex[:8]}"


def test_the_commands_on_a_redis_store_in_a_subprocess(redis_store: tuple[str, str]) -> None:
    url, prefix = redis_store
    store = foxactors.jobs.RedisJobStore(url, prefix=prefix)
    ids = story(store, close=True)
    env = {"FOXACTORS_JOBS_STORE_URL": url}
    done = foxactors_command("jobs", "status", ids["running"], "--prefix", prefix, env=env)
    assert (done.returncode, done.stderr) == (0, "")
    assert "state        running\n" in done.stdout
    assert "progress     50% step 2 of 4\n" in done.stdout
    done = foxactors_command("jobs", "stats", "--prefix", prefix, "--json", env=env)
    assert json.loads(done.stdout)["pending"] == 2
    done = foxactors_command("jobs", "list", "--prefix", prefix, "--state", "dead", env=env)
    assert [line.split()[0] for line in done.stdout.splitlines()[1:]] == [ids["dead"]]
    done = foxactors_command("jobs", "cancel", ids["pending"], "--prefix", prefix, env=env)
    assert done.stdout == f"job {ids['pending']} cancelled: it will not run\n"
    done = foxactors_command("jobs", "status", "nope", "--prefix", prefix, env=env)
    assert (done.returncode, done.stderr) == (1, "foxactors: no job 'nope'\n")


def test_retry_on_a_redis_store_and_a_redis_broker(
    redis_store: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, prefix = redis_store
    store = foxactors.jobs.RedisJobStore(url, prefix=prefix)
    queue = f"reports-{uuid.uuid4().hex[:8]}"

    async def fill() -> str:
        try:
            jobs = JobQueue(RedisBackend(url), store=store, queue=queue)

            @jobs.task
            async def report(month: str) -> None: ...

            handle = await report.enqueue("2026-11")
            await store.cancel(handle.id, T0)
            await jobs.backend.close()
            return handle.id
        finally:
            await store.close()

    job_id = asyncio.run(fill())
    status, out, err = run(capsys, "retry", job_id, "--redis", url, "--prefix", prefix, "--json")
    assert (status, err) == (0, "")
    assert json.loads(out) == {"id": job_id, "state": "pending", "queue": queue}
    messages = asyncio.run(_published("redis", url, queue, 2))
    assert [m["x-job-id"] for m in messages] == [job_id, job_id]  # the first, and the retry
