"""The pytest plugin, as a user meets it: small test files run by pytester against it."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFTEST = """
import pytest

@pytest.fixture
def anyio_backend(foxactors_anyio_backend):
    return foxactors_anyio_backend
"""


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    """Run ``source`` as a user's test file, with the plugin loaded as installed."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_user=source)
    # loaded by its entry point when installed; named here when it is not
    plugin = pytester.parseconfig().pluginmanager.get_plugin("foxactors")
    load = [] if plugin is not None else ["-p", "foxactors.testing._plugin"]
    return pytester.runpytest_inprocess(*load, "-p", "no:cacheprovider", "-v", *args)


HANDLER_FAILS = """
import pytest
import foxactors as fa

class CardDeclined(Exception):
    pass

async def charge(message):
    raise CardDeclined(message.payload["card"])

@pytest.mark.anyio
async def test_join_raises_the_handlers_own_error(foxactors_harness, virtual_clock):
    app = fa.WorkerApp("billing").add_worker(charge).with_retry(max_retries=3)
    async with foxactors_harness.running(app, queue="charges"):
        began = virtual_clock.now()
        await foxactors_harness.backend.publish("charges", {"card": "4242"})
        with pytest.raises(CardDeclined, match="4242"):
            await foxactors_harness.join("charges")
        # raised at the first failure: before even the first retry delay (1 s)
        assert virtual_clock.now() - began < 1.0

@pytest.mark.anyio
async def test_without_fail_fast_the_failure_is_a_dead_letter(foxactors_harness, virtual_clock):
    app = fa.WorkerApp("billing").add_worker(charge).with_retry(max_retries=3, jitter=0)
    async with foxactors_harness.running(app, queue="charges"):
        began = virtual_clock.now()
        await foxactors_harness.backend.publish("charges", {"card": "4242"})
        await foxactors_harness.join("charges", fail_fast=False)
        # the retries waited 1 + 2 + 4 s, in virtual time
        assert virtual_clock.now() - began >= 7.0
    [letter] = foxactors_harness.backend.dead_letters("charges")
    assert "CardDeclined" in letter.reason
"""


def test_join_fails_fast_with_the_handlers_exception_on_both_loops(
    pytester: pytest.Pytester,
) -> None:
    result = run(pytester, HANDLER_FAILS)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_join_raises_the_handlers_own_error?trio? PASSED*"])


DRAIN = """
import pytest
import foxactors as fa
from foxactors.testing import DrainCounts

async def handle(message):
    if message.payload == "bad":
        raise ValueError("bad")
    if message.payload == "flaky" and message.attempt == 1:
        raise ValueError("flaky")

@pytest.mark.anyio
async def test_drain_counts(foxactors_harness, virtual_clock):
    app = fa.WorkerApp("w").add_worker(handle).with_retry(max_retries=2, jitter=0)
    backend = foxactors_harness.backend
    async with foxactors_harness.running(app, queue="q"):
        began = virtual_clock.now()
        for payload in ["ok", "flaky", "bad"]:
            await backend.publish("q", payload)
        await backend.publish("q", "later", delay=3600)
        counts = await foxactors_harness.drain("q")
        assert virtual_clock.now() - began >= 3600 - 1e-6  # it jumped to the delayed one
    assert counts == DrainCounts(succeeded=3, failed=3, dead=1, cancelled=0)
    assert backend.queue_statistics("q").ready == 0
"""


def test_drain_runs_scheduled_work_and_counts_it(pytester: pytest.Pytester) -> None:
    result = run(pytester, DRAIN)
    result.assert_outcomes(passed=2)


JOBS = """
import pytest
import foxactors as fa
from foxactors.jobs import JobQueue, Reject
from foxactors.testing import DrainCounts, assert_enqueued, enqueued

@pytest.fixture
def jobs(foxactors_harness, virtual_clock):
    return JobQueue(foxactors_harness.backend, clock=virtual_clock.wall)

@pytest.mark.anyio
async def test_assert_enqueued_passes(jobs):
    @jobs.task(queue="emails")
    async def send(to: str, name: str = "there") -> None: ...

    await send.enqueue("ada@example.com", name="Ada")
    record = await assert_enqueued(send, to="ada@example.com")
    assert record.args["name"] == "Ada"
    assert len(await enqueued(send)) == 1

@pytest.mark.anyio
async def test_assert_enqueued_fails(jobs):
    @jobs.task(queue="emails")
    async def send(to: str) -> None: ...

    await send.enqueue("ada@example.com")
    await assert_enqueued(send, to="bob@example.com")

@pytest.mark.anyio
async def test_drain_jobs(jobs, foxactors_harness):
    @jobs.task(queue="j", max_attempts=2)
    async def work(kind: str) -> str:
        if kind == "reject":
            raise Reject("no")
        if kind == "fail":
            raise KeyError(kind)
        return kind

    for kind in ["ok", "fail", "reject"]:
        await work.enqueue(kind)
    await work.options(delay=3600).enqueue("ok")
    doomed = await work.enqueue("ok")
    await doomed.cancel()
    async with foxactors_harness.running(jobs, "j"):
        counts = await foxactors_harness.drain("j")
    assert counts == DrainCounts(succeeded=2, failed=1, dead=2, cancelled=0)
    assert await enqueued(work) == []

@pytest.mark.anyio
async def test_join_raises_the_tasks_own_error(jobs, foxactors_harness):
    @jobs.task(queue="j", max_attempts=5)
    async def work() -> None:
        raise KeyError("missing")

    await work.enqueue()
    async with foxactors_harness.running(jobs, "j"):
        with pytest.raises(KeyError, match="missing"):
            await foxactors_harness.join("j")
"""


def test_jobs_assert_enqueued_drain_and_join(pytester: pytest.Pytester) -> None:
    result = run(pytester, JOBS)
    result.assert_outcomes(passed=6, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: expected a job of task 'send' enqueued with args "
            "{'to': 'bob@example.com'}; 1 job(s) of it wait(s):*",
            "*{'to': 'ada@example.com'} (pending)*",
        ]
    )
    assert result.stdout.str().count("FAILED test_user.py::test_assert_enqueued_fails") == 2


REAL_TIME = """
import pytest

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.mark.anyio
async def test_drain_in_real_time(foxactors_harness):
    await foxactors_harness.drain("q")
"""


def test_drain_in_real_time_says_how_to_get_virtual_time(pytester: pytest.Pytester) -> None:
    result = run(pytester, REAL_TIME)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*drain() runs in virtual time only*foxactors_anyio_backend*"])


SERVERS = """
def test_redis(foxactors_redis):
    assert foxactors_redis.url.startswith("redis://127.0.0.1:")
"""


def test_a_missing_server_skips_with_the_install_hint(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(pytester.path))  # no redis-server found here
    monkeypatch.setattr("shutil.which", lambda *args, **kwargs: None)
    result = run(pytester, SERVERS, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*redis-server is not installed*"])
