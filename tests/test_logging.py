"""Log output as a user sees it: failed attempts, successes, message fields, the start line.

Each test captures real output: a stdlib handler (the library's events go to stdlib
logging when structlog is not configured), ``configure_logging`` writing to a captured
stdout, or a fresh interpreter's stdout and stderr.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

import foxactors as fa
from foxactors._logging import TENANT_HEADER, LibraryLogger, logger
from foxactors.jobs import TENANT_HEADER as JOBS_TENANT_HEADER
from foxactors.jobs import JobQueue, JobState
from foxactors.testing import anyio_backend_options

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parent.parent
QUEUE = "orders"


class Records(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def of(self, event: str) -> list[logging.LogRecord]:
        return [r for r in self.records if isinstance(r.msg, dict) and r.msg["event"] == event]


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The event a record of the library carries."""
    assert isinstance(record.msg, dict)
    return record.msg


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """No structlog configuration and no foxactors handlers before and after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("foxactors").setLevel(logging.NOTSET)


@pytest.fixture
def records() -> Iterator[Records]:
    """The records of the ``foxactors`` stdlib logger, at every level."""
    handler = Records()
    library = logging.getLogger("foxactors")
    library.addHandler(handler)
    library.setLevel(logging.DEBUG)
    yield handler
    library.removeHandler(handler)


async def fail_twice_then_succeed(message: fa.Message) -> None:
    if message.payload == "bad" or message.attempt < 3:
        raise ValueError(f"no stock for {message.payload}")


async def run_orders(*payloads: str, max_retries: int = 2) -> fa.MemoryBackend:
    backend = fa.MemoryBackend()
    properties = fa.MessageProperties(
        message_type="order.created", correlation_id="corr-1"
    ).with_header(TENANT_HEADER, "acme")
    for payload in payloads:
        await backend.publish(QUEUE, payload, properties=properties)
    app = (
        fa.WorkerApp("shop")
        .add_worker(fail_twice_then_succeed)
        .with_retry(max_retries=max_retries, initial_backoff=2, jitter=0)
    )
    async with fa.open_system(app.build(backend, QUEUE)):
        with anyio.fail_after(3600):
            await backend.join(QUEUE)
    return backend


async def test_each_failed_attempt_is_one_warning_with_traceback_attempt_and_next_step(
    records: Records,
) -> None:
    await run_orders("bad")
    failed = records.of("message.failed")
    assert [r.levelno for r in failed] == [logging.WARNING] * 3
    lines = [r.getMessage() for r in failed]  # as a plain stdlib formatter shows them
    assert "attempt=1 of 3" in lines[0]
    assert "next=retry in 2.0s" in lines[0]
    assert "attempt=2 of 3" in lines[1]
    assert "next=retry in 4.0s" in lines[1]
    assert "attempt=3 of 3" in lines[2]
    assert "next=dead-lettered" in lines[2]
    assert "reason=failed after 3 attempts: ValueError: no stock for bad" in lines[2]
    for record in failed:
        assert "error=ValueError: no stock for bad" in record.getMessage()
        assert record.exc_info is not None
        assert record.exc_info[0] is ValueError
        text = logging.Formatter().format(record)
        assert "Traceback (most recent call last)" in text
        assert 'raise ValueError(f"no stock for {message.payload}")' in text
    assert records.of("message.dead_lettered") == []  # the failure's line says it all


async def test_a_success_is_one_debug_line_with_its_duration(records: Records) -> None:
    await run_orders("ok")
    (succeeded,) = records.of("message.succeeded")
    assert succeeded.levelno == logging.DEBUG
    event = fields(succeeded)
    assert isinstance(event["duration"], float)
    assert event["duration"] >= 0
    assert event["attempt"] == 3


async def test_no_success_line_is_built_when_debug_is_off(records: Records) -> None:
    logging.getLogger("foxactors").setLevel(logging.INFO)
    await run_orders("ok")
    assert records.of("message.succeeded") == []
    assert len(records.of("message.failed")) == 2


async def test_the_message_fields_are_on_its_lines_and_on_lines_logged_in_its_handler(
    records: Records,
) -> None:
    log = logger.bind()

    async def handle(message: fa.Message) -> None:
        log.info("charging")  # the library's logger, as an actor's self.log
        raise KeyError("card")

    backend = fa.MemoryBackend()
    properties = fa.MessageProperties(message_type="order.created", correlation_id="corr-1")
    await backend.publish(QUEUE, 1, properties=properties.with_header(TENANT_HEADER, "acme"))
    app = fa.WorkerApp("shop").add_worker(handle).without_retry()
    async with fa.open_system(app.build(backend, QUEUE)):
        await backend.join(QUEUE)
    (charging,) = records.of("charging")
    (failed,) = records.of("message.failed")
    for record in (charging, failed):
        event = fields(record)
        assert event["message_type"] == "order.created"
        assert event["queue"] == QUEUE
        assert event["tenant"] == "acme"
        assert event["correlation_id"] == "corr-1"
        assert event["attempt"] == 1
    assert fields(charging)["message_id"] == fields(failed)["message_id"]
    assert "next=dead-lettered" in failed.getMessage()


def test_the_tenant_header_is_the_one_jobs_set() -> None:
    assert TENANT_HEADER == JOBS_TENANT_HEADER


def in_virtual_time(payload: str) -> None:
    """`run_orders` on asyncio, its backoffs in virtual time, for a sync test."""
    backend, options = anyio_backend_options("asyncio")
    anyio.run(run_orders, payload, backend=backend, backend_options=options)


def configured_output(fmt: str, capsys: pytest.CaptureFixture[str], level: str = "info") -> str:
    fa.configure_logging(fmt, level)
    in_virtual_time("bad")
    return capsys.readouterr().out


def test_configure_logging_console_shows_tracebacks_of_failures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = configured_output("console", capsys)
    failed = [line for line in out.splitlines() if "message.failed" in line]
    assert len(failed) == 3
    assert "attempt='1 of 3'" in failed[0]
    assert "next='retry in 2.0s'" in failed[0]
    assert "next=dead-lettered" in failed[2]
    assert out.count("Traceback (most recent call last)") == 3
    assert "ValueError: no stock for bad" in out
    assert "message.succeeded" not in out  # debug, below the level asked for
    assert "intake.consuming" in out


def test_configure_logging_json_has_the_fields_and_the_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = [json.loads(line) for line in configured_output("json", capsys).splitlines()]
    failed = [line for line in lines if line["event"] == "message.failed"]
    assert [(f["attempt"], f["max_attempts"], f["next"]) for f in failed] == [
        (1, 3, "retry in 2.0s"),
        (2, 3, "retry in 4.0s"),
        (3, 3, "dead-lettered"),
    ]
    for line in failed:
        assert line["level"] == "warning"
        assert line["error"] == "ValueError: no stock for bad"
        assert (line["message_type"], line["tenant"], line["correlation_id"]) == (
            "order.created",
            "acme",
            "corr-1",
        )
        (exception,) = line["exception"]
        assert exception["exc_type"] == "ValueError"
        assert all("locals" not in frame for frame in exception["frames"])  # payloads stay out


def test_configure_logging_at_debug_shows_successes(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [json.loads(line) for line in configured_output("json", capsys, "debug").splitlines()]
    assert not any(line["event"] == "message.succeeded" for line in lines)  # "bad" never does
    fa.configure_logging("json", "debug")
    in_virtual_time("ok")
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (succeeded,) = [line for line in out if line["event"] == "message.succeeded"]
    assert succeeded["level"] == "debug"
    assert succeeded["duration"] >= 0


def test_configure_logging_twice_keeps_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    fa.configure_logging("json")
    fa.configure_logging("json")
    logger.warning("once")
    assert capsys.readouterr().out.count('"once"') == 1


def test_an_application_structlog_configuration_gets_the_events() -> None:
    with structlog.testing.capture_logs() as logs:
        in_virtual_time("bad")
    failed = [e for e in logs if e["event"] == "message.failed"]
    assert [e["next"] for e in failed] == ["retry in 2.0s", "retry in 4.0s", "dead-lettered"]
    assert all(isinstance(e["exc_info"], ValueError) for e in failed)


APP = """
import anyio, foxactors as fa

async def handle(message):
    if message.payload == "bad":
        raise ValueError("no stock")

async def main():
    backend = fa.MemoryBackend()
    for payload in ("ok", "bad"):
        await backend.publish("orders", payload)
    app = fa.WorkerApp("shop").add_worker(handle).without_retry()
    async with fa.open_system(app.build(backend, "orders")):
        await backend.join("orders")
    print("done")

anyio.run(main)
"""


def test_with_nothing_configured_only_warnings_reach_stderr_and_nothing_stdout() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", APP],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done\n"  # no actor.started and the like
    assert "message.failed" in proc.stderr  # Python's last resort shows warnings
    assert "Traceback (most recent call last)" in proc.stderr
    assert "intake.consuming" not in proc.stderr  # info: not shown
    assert "actor.started" not in proc.stderr


def test_a_library_logger_logs_nothing_below_the_stdlib_level(records: Records) -> None:
    logging.getLogger("foxactors").setLevel(logging.WARNING)
    log = LibraryLogger("foxactors").bind(actor="/x")
    log.info("hidden")
    log.warning("shown %s", "here", n=1)
    assert [r.getMessage() for r in records.records] == ["shown here actor=/x n=1"]


async def test_job_attempts_are_logged_with_attempt_next_step_and_traceback(
    records: Records,
) -> None:
    # the records' clock follows the loop's (virtual) one, as the retry's delay does
    jobs = JobQueue(fa.MemoryBackend(), queue="jobs", clock=anyio.current_time)

    @jobs.task(max_attempts=2)
    async def charge(amount: int) -> int:
        if amount < 0:
            raise ValueError("negative amount")
        return amount

    bad = await charge.enqueue(-1)
    good = await charge.enqueue(5)
    async with fa.open_system(jobs.worker("jobs").build()):
        with anyio.fail_after(3600):
            assert await good.result(timeout=3600) == 5
            while (await bad.status()).state is not JobState.DEAD:  # noqa: ASYNC110
                await anyio.sleep(1)
    failed = [fields(r) for r in records.of("job.failed")]
    assert [(f["attempt"], f["max_attempts"]) for f in failed] == [(1, 2), (2, 2)]
    assert failed[0]["next"].startswith("retry in ")
    assert failed[1]["next"] == "dead-lettered"
    assert all(f["error"] == "ValueError: negative amount" for f in failed)
    assert all(r.exc_info is not None for r in records.of("job.failed"))
    assert "attempt=1 of 2" in records.of("job.failed")[0].getMessage()
    (succeeded,) = [fields(r) for r in records.of("job.succeeded")]
    assert (succeeded["attempt"], succeeded["max_attempts"]) == (1, 2)
    assert succeeded["duration"] >= 0


def test_foxactors_run_says_what_it_starts_without_credentials(tmp_path: Path) -> None:
    (tmp_path / "shop_app.py").write_text(
        "import foxactors as fa\n"
        "class Broker(fa.MemoryBackend):\n"
        "    url = 'redis://user:s3cret@broker:6379/0'\n"
        "async def charge(message):\n"
        "    pass\n"
        "app = fa.WorkerApp('shop').add_worker(charge).with_prefetch(20).with_backend(\n"
        "    Broker(), 'orders')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(tmp_path)])}
    with subprocess.Popen(
        [sys.executable, "-m", "foxactors", "run", "shop_app:app", "--log-format", "json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        lines: list[dict[str, Any]] = []
        for line in proc.stdout:
            lines.append(json.loads(line))
            if lines[-1]["event"] == "intake.consuming":
                break
        proc.terminate()
        proc.communicate(timeout=30)
    (banner,) = [line for line in lines if line["event"] == "app.starting"]
    assert banner["level"] == "info"
    assert (banner["app"], banner["queue"], banner["concurrency"], banner["prefetch"]) == (
        "shop",
        "orders",
        8,
        20,
    )
    assert banner["backend"] == "Broker redis://user:***@broker:6379/0"
    assert banner["handlers"] == ["charge"]
    assert "s3cret" not in json.dumps(lines)
    assert lines[-1]["queue"] == "orders"
