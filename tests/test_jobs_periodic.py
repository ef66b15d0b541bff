"""Periodic jobs: ticks at their times, once per tick, across zones, downtime and processes.

Memory tests run on asyncio and trio in virtual time, the records' clock on the loop's
clock: a scheduler sleeps to each tick exactly, so jobs are read back by their tick
keys. The Redis race runs in real time on the suite's own redis-server.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import foxactors as fa
from foxactors import _cli_cron, _cli_jobs
from foxactors._cli import main
from foxactors.jobs import (
    CronSchedule,
    JobArgumentsError,
    JobQueue,
    JobStore,
    MemoryJobStore,
    PeriodicLedger,
    RedisJobStore,
    UnknownTask,
)
from foxactors.jobs._periodic import tick_key
from foxactors.testing.servers import RedisServer

pytestmark = pytest.mark.anyio

UTC = datetime.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def utc(*parts: int) -> float:
    return datetime.datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[arg-type, misc]


def clock_from(start: float) -> Callable[[], float]:
    """The records' clock: ``start`` now, then on with the loop's (virtual) time."""
    origin = anyio.current_time()
    return lambda: start + (anyio.current_time() - origin)


def queue_at(start: float | None, store: JobStore | None = None) -> tuple[JobQueue, Any]:
    """A job queue with a task ``report``; its clock at ``start`` now (None: real time)."""
    clock = time.time if start is None else clock_from(start)
    jobs = JobQueue(fa.MemoryBackend(), store=store or MemoryJobStore(), clock=clock)

    @jobs.task
    async def report(kind: str = "daily") -> str:
        return kind

    return jobs, report


async def keys(jobs: JobQueue) -> list[str]:
    page = await jobs.list(limit=10_000)
    return sorted(record.key or "" for record in page.jobs)


def key(name: str, *parts: int) -> str:
    return tick_key(name, utc(*parts))


async def run_for(jobs: JobQueue, seconds: float, *specs: fa.ChildSpec) -> None:
    """Run the schedulers (default: one) for ``seconds`` of the loop's time."""
    children = list(specs) or [jobs.scheduler()]
    async with fa.open_system(fa.Supervisor.spec("app", children)):
        await anyio.sleep(seconds)


# -- ticks at their times ---------------------------------------------------------------


async def test_ticks_are_enqueued_at_their_times_with_the_tick_in_the_key() -> None:
    start = utc(2027, 1, 15, 8, 1, 30)
    jobs, report = queue_at(start)
    jobs.periodic("*/5 * * * *", report, kwargs={"kind": "five"}, name="every-five")
    await run_for(jobs, 16 * 60)  # to 08:17:30
    assert await keys(jobs) == [
        key("every-five", 2027, 1, 15, 8, 5),
        key("every-five", 2027, 1, 15, 8, 10),
        key("every-five", 2027, 1, 15, 8, 15),
    ]
    page = await jobs.list()
    assert [record.args for record in page.jobs] == [{"kind": "five"}] * 3
    enqueued = sorted(record.enqueued_at for record in page.jobs)
    assert enqueued == pytest.approx(
        [utc(2027, 1, 15, 8, m) for m in (5, 10, 15)], abs=0.01
    )  # on the tick, not before it and not a sleep's length after


async def test_the_decorator_form_and_a_worker_app_run_the_schedule() -> None:
    jobs = JobQueue(fa.MemoryBackend(), clock=clock_from(utc(2027, 1, 15, 22, 59)))
    ran: list[str] = []

    @jobs.periodic("@daily", tz="Europe/Berlin", missed="run_once")
    @jobs.task
    async def nightly() -> None:
        ran.append("nightly")

    assert list(jobs.periodic_jobs) == ["nightly"]
    async with fa.open_system(jobs.worker().build()):
        await anyio.sleep(120)  # Berlin's midnight is 23:00 UTC: one tick
    assert ran == ["nightly"]
    assert await keys(jobs) == [key("nightly", 2027, 1, 15, 23, 0)]


# -- exactly once --------------------------------------------------------------------------


async def test_three_schedulers_racing_enqueue_each_tick_once() -> None:
    jobs, report = queue_at(utc(2027, 1, 15, 8, 0, 0))
    jobs.periodic("* * * * *", report, name="minutely")
    await run_for(jobs, 10 * 60 + 1, *(jobs.scheduler(f"scheduler-{n}") for n in range(3)))
    assert await keys(jobs) == [key("minutely", 2027, 1, 15, 8, m) for m in range(1, 11)]
    store = jobs.store
    assert isinstance(store, PeriodicLedger)
    assert await store.periodic_last("minutely") == utc(2027, 1, 15, 8, 10)


async def test_a_tick_whose_job_expired_is_not_enqueued_again_by_a_late_scheduler() -> None:
    store = MemoryJobStore(retention=0)
    jobs, report = queue_at(utc(2027, 1, 15, 8, 0, 30), store)
    periodic = jobs.periodic("* * * * *", report, name="minutely")
    async with fa.open_system(jobs.worker().build()):
        await anyio.sleep(75)  # 08:01 enqueued and run; the keeper reaps it and its key
    assert await keys(jobs) == []
    assert isinstance(store, PeriodicLedger)
    assert await store.periodic_last("minutely") == utc(2027, 1, 15, 8, 1)
    # a scheduler that was stalled since before 08:01 fires that tick now: nothing happens
    from foxactors.jobs._scheduler import PeriodicScheduler  # noqa: PLC0415

    late = PeriodicScheduler(jobs)
    await late._fire(periodic, utc(2027, 1, 15, 8, 1))
    assert await keys(jobs) == []


# -- daylight saving -------------------------------------------------------------------------


async def test_spring_forward_a_wall_time_in_the_gap_runs_once_after_it() -> None:
    jobs, report = queue_at(utc(2027, 3, 27, 12, 0))  # Berlin springs forward on 28 March
    jobs.periodic("30 2 * * *", report, tz="Europe/Berlin", name="gap")
    jobs.periodic("0 * * * *", report, tz="Europe/Berlin", name="hourly")
    await run_for(jobs, 2 * 24 * 3600)
    found = await keys(jobs)
    gap = [k for k in found if k.startswith("periodic:gap:")]
    # 28 March 02:30 does not exist: it runs once, at 03:00 CEST (01:00 UTC)
    assert gap == [key("gap", 2027, 3, 28, 1, 0), key("gap", 2027, 3, 29, 0, 30)]
    hours = [k for k in found if k.startswith("periodic:hourly:")]
    assert len(hours) == 48  # every real hour; the day of the change has 23


async def test_fall_back_a_wall_time_in_the_repeated_hour_runs_once() -> None:
    jobs, report = queue_at(utc(2027, 10, 30, 12, 0))  # Berlin falls back on 31 October
    jobs.periodic("30 2 * * *", report, tz="Europe/Berlin", name="twice")
    jobs.periodic("0 * * * *", report, tz="Europe/Berlin", name="hourly")
    await run_for(jobs, 2 * 24 * 3600)
    found = await keys(jobs)
    twice = [k for k in found if k.startswith("periodic:twice:")]
    # 02:30 happens at 00:30 UTC (CEST) and 01:30 UTC (CET): the first one only
    assert twice == [key("twice", 2027, 10, 31, 0, 30), key("twice", 2027, 11, 1, 1, 30)]
    hours = [k for k in found if k.startswith("periodic:hourly:")]
    assert len(hours) == 48  # every real hour: both 02:00s of the long night
    assert key("hourly", 2027, 10, 31, 0, 0) in hours
    assert key("hourly", 2027, 10, 31, 1, 0) in hours


@given(
    expression=st.sampled_from(
        ["30 2 * * *", "0 * * * *", "*/20 * * * *", "15 1-3 * * *", "0 2 * * 0", "*/7 * * * * *"]
    ),
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]),
    start=st.floats(utc(2027, 3, 1), utc(2027, 11, 30)),
)
def test_next_and_previous_agree_and_ticks_only_move_forwards(
    expression: str, zone: str, start: float
) -> None:
    schedule = CronSchedule.of(expression, zone)
    tick = schedule.next_after(start)
    assert tick > start
    assert schedule.previous(tick) == tick
    assert schedule.previous(tick - 0.5) < tick
    assert schedule.next_after(schedule.previous(tick - 0.5)) == tick
    wall = schedule.at(tick).replace(tzinfo=None)
    later = schedule.next_after(tick)
    assert schedule.at(later).replace(tzinfo=None) != wall or "*" in expression.split()[1]


# -- missed ticks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missed", "hours"), [("skip", [8, 11]), ("run_once", [8, 10, 11])], ids=["skip", "run_once"]
)
async def test_ticks_missed_while_no_scheduler_ran_follow_the_policy(
    missed: str, hours: list[int]
) -> None:
    jobs, report = queue_at(utc(2027, 1, 15, 7, 59, 30))
    jobs.periodic("0 * * * *", report, name="hourly", missed=missed)
    await run_for(jobs, 60)  # 08:00 enqueued
    await anyio.sleep(2 * 3600)  # every scheduler down from 08:00:30 to 10:00:30
    await run_for(jobs, 3600)  # up again until 11:00:30
    assert await keys(jobs) == [key("hourly", 2027, 1, 15, h, 0) for h in hours]


async def test_run_once_enqueues_only_the_latest_missed_tick_at_restart() -> None:
    jobs, report = queue_at(utc(2027, 1, 15, 7, 59, 30))
    jobs.periodic("0 * * * *", report, name="hourly", missed="run_once")
    await run_for(jobs, 60)
    await anyio.sleep(2 * 3600)
    restart = jobs.clock()
    await run_for(jobs, 60)
    found = {record.key: record.enqueued_at for record in (await jobs.list()).jobs}
    assert set(found) == {key("hourly", 2027, 1, 15, 8, 0), key("hourly", 2027, 1, 15, 10, 0)}
    assert found[key("hourly", 2027, 1, 15, 10, 0)] == pytest.approx(restart, abs=0.01)


async def test_a_first_start_enqueues_nothing_for_ticks_before_it() -> None:
    jobs, report = queue_at(utc(2027, 1, 15, 8, 0, 30))
    jobs.periodic("0 * * * *", report, name="hourly", missed="run_once")
    await run_for(jobs, 60)
    assert await keys(jobs) == []


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"expression": "*/5 * * *"}, "'*/5 * * *'"),
        ({"expression": "61 * * * *"}, "'61 * * * *'"),
        ({"expression": "0 0 31 2 *"}, "'0 0 31 2 *'"),
        ({"tz": "Mars/Olympus_Mons"}, "'Mars/Olympus_Mons'"),
        ({"tz": "CEST+2"}, "'CEST+2'"),
        ({"missed": "catch_up"}, "'catch_up'"),
        ({"name": "has space"}, "'has space'"),
        ({"delay": 5}, "'delay'"),
    ],
)
def test_a_bad_declaration_is_a_configuration_error_naming_it(
    options: dict[str, Any], named: str
) -> None:
    jobs, report = queue_at(None)
    expression = options.pop("expression", "*/5 * * * *")
    with pytest.raises(fa.ConfigurationError, match=named.replace("*", r"\*").replace("+", r"\+")):
        jobs.periodic(expression, report, **options)
    assert jobs.periodic_jobs == {}


def test_arguments_are_checked_and_names_are_unique_at_declaration() -> None:
    jobs, report = queue_at(None)
    with pytest.raises(JobArgumentsError):
        jobs.periodic("@hourly", report, kwargs={"kind": ["not", "a", "string"]})
    with pytest.raises(UnknownTask):
        jobs.periodic("@hourly", "no-such-task")
    jobs.periodic("@hourly", report)
    with pytest.raises(fa.ConfigurationError, match="'report' is already declared"):
        jobs.periodic("@daily", report)
    with pytest.raises(fa.ConfigurationError, match="no periodic job"):
        queue_at(None)[0].scheduler()


# -- the command line ------------------------------------------------------------------------


def test_jobs_cron_lists_each_periodic_job_with_its_last_and_next_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = MemoryJobStore()
    jobs, report = queue_at(None, store)
    jobs.periodic("30 2 * * *", report, tz="Europe/Berlin", name="nightly", missed="run_once")
    jobs.periodic("*/5 * * * *", report, name="often")

    async def declare() -> None:
        for periodic in jobs.periodic_jobs.values():
            await store.periodic_declare([periodic.entry()])
        await store.periodic_advance("nightly", utc(2027, 10, 31, 0, 30))

    anyio.run(declare)
    monkeypatch.setattr(_cli_jobs, "open_store", lambda url, prefix: store)
    monkeypatch.setattr(_cli_cron, "clock", lambda: utc(2027, 10, 31, 1, 40))
    assert main(["jobs", "cron", "--store", "redis://127.0.0.1:1/0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "NAME", "EXPRESSION", "ZONE", "TASK", "QUEUE", "MISSED", "LAST", "RUN", "NEXT", "RUN",
    ]  # fmt: skip
    assert lines[1].split()[:6] == [
        "nightly", "30", "2", "*", "*", "*",
    ]  # fmt: skip
    assert lines[1].split()[6:10] == ["Europe/Berlin", "report", "jobs", "run_once"]
    assert "2027-10-31T02:30:00+02:00" in lines[1]  # last: the first 02:30
    assert "2027-11-01T02:30:00+01:00" in lines[1]  # next: not the second 02:30 tonight
    assert lines[2].split()[-2:] == ["-", "2027-10-31T01:45:00+00:00"]
    assert main(["jobs", "cron", "--json", "--store", "redis://127.0.0.1:1/0"]) == 0
    shown = json.loads(capsys.readouterr().out)["periodic"]
    assert [row["name"] for row in shown] == ["nightly", "often"]
    assert shown[1]["last_run"] is None
    assert shown[1]["next_run"] == "2027-10-31T01:45:00+00:00"


# -- on real Redis -------------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # redis-py; real time
async def test_three_schedulers_on_redis_enqueue_a_tick_once(redis: RedisServer) -> None:
    prefix = f"fx:cron:{uuid.uuid4().hex[:8]}"
    upcoming = float(int(time.time()) + 1)  # a whole second: "* * * * * *" fires on it
    queues, stores = [], []
    for _ in range(3):
        store = RedisJobStore(redis.url, prefix=prefix)
        jobs = JobQueue(fa.MemoryBackend(), store=store)  # wall clock: real time

        @jobs.task
        async def beat() -> None:
            return None

        jobs.periodic("* * * * * *", beat, name="beat", missed="run_once")
        queues.append(jobs)
        stores.append(store)
    schedulers = [jobs.scheduler(f"scheduler-{n}") for n, jobs in enumerate(queues)]
    async with fa.open_system(fa.Supervisor.spec("app", schedulers)):
        with anyio.fail_after(10):
            while (await stores[0].periodic_last("beat") or 0) < upcoming + 1:  # noqa: ASYNC110
                await anyio.sleep(0.05)
    page = await queues[0].list(limit=1000)
    found = [record.key for record in page.jobs]
    assert len(found) == len(set(found))  # never twice
    assert tick_key("beat", upcoming) in found
    assert tick_key("beat", upcoming + 1) in found
    (entry,) = await stores[0].periodic_entries()
    assert (entry.name, entry.expression, entry.timezone, entry.missed) == (
        "beat", "* * * * * *", "UTC", "run_once",
    )  # fmt: skip
    assert entry.last_tick is not None
    assert entry.last_tick >= upcoming + 1
    for store in stores:
        await store.close()
