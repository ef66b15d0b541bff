"""``foxactors jobs stats --queue Q`` with a broker: the store's jobs beside the broker's messages.

Real brokers and a real `RedisJobStore` (the command's store), in this process: the
jobs and messages are made first, then the command reads them, text and ``--json``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from foxactors._cli import main
from foxactors.backends import Backend, RabbitMQBackend, RedisBackend
from foxactors.jobs import JobQueue, RedisJobStore

from .brokers import BROKERS
from .helpers import receive_one
from .test_queue_depth import known_jobs


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FOXACTORS_JOBS_STORE_URL", "FOXACTORS_RABBITMQ_URL", "FOXACTORS_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(the broker's flag name, its URL), on the suite's server."""
    name = str(request.param)
    return name, request.getfixturevalue(name).url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["jobs", *argv])
    out, err = capsys.readouterr()
    return status, out, err


async def story(broker: tuple[str, str], store_url: str, prefix: str, queue: str) -> None:
    """`known_jobs`, then one message dead-lettered: 5 ready, 1 delayed, 1 dead."""
    name, url = broker
    backend: Backend = RabbitMQBackend(url) if name == "rabbitmq" else RedisBackend(url)
    store = RedisJobStore(store_url, prefix=prefix)
    try:
        await known_jobs(JobQueue(backend, store=store, queue=queue))
        source = await backend.open_source(queue, prefetch=1)
        (await receive_one(source)).handle.dead_letter("no good")
        await source.wait_settled()
        await source.close()
    finally:
        await store.close()
        await backend.close()


def test_stats_of_a_queue_show_the_brokers_messages_beside_the_jobs(
    broker: tuple[str, str], redis: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    name, url = broker
    queue, prefix = f"depth-{uuid.uuid4().hex[:8]}", f"fx:test:{uuid.uuid4().hex[:8]}"
    asyncio.run(story(broker, redis.url, prefix, queue))
    where = ["--store", redis.url, "--prefix", prefix, f"--{name}", url]
    status, out, err = run(capsys, "stats", "--queue", queue, *where)
    assert status == 0
    # RabbitMQ tells delayed and in-flight counts only to the process holding them
    delayed, in_flight = ("-", "-") if name == "rabbitmq" else ("1", "0")
    assert [line.split() for line in out.splitlines()] == [
        ["STATE", "JOBS", "BROKER", "MESSAGES"],
        ["scheduled", "1", "ready", "5"],
        ["pending", "3", "delayed", delayed],
        ["running", "1", "in_flight", in_flight],
        ["retrying", "1", "dead", "1"],
        ["succeeded", "0"],
        ["dead", "1"],
        ["cancelled", "0"],
        ["total", "7"],
    ]
    if name == "rabbitmq":
        assert err == (
            "delayed, in_flight: rabbitmq tells only the process that holds them; the job "
            "counts cover them (scheduled, retrying, running)\n"
        )
    else:
        assert err == ""
    status, out, _ = run(capsys, "stats", "--queue", queue, "--tenant", "beta", "--json", *where)
    assert status == 0
    assert json.loads(out) == {
        "queue": queue,
        "tenant": "beta",
        "jobs": {
            "scheduled": 0,
            "pending": 1,
            "running": 0,
            "retrying": 1,
            "succeeded": 0,
            "dead": 0,
            "cancelled": 0,
        },
        "broker": {
            "ready": 5,
            "delayed": None if name == "rabbitmq" else 1,
            "in_flight": None if name == "rabbitmq" else 0,
            "dead": 1,
        },
    }


def test_stats_without_a_queue_or_a_broker_read_the_store_alone(
    broker: tuple[str, str], redis: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    name, url = broker
    queue, prefix = f"depth-{uuid.uuid4().hex[:8]}", f"fx:test:{uuid.uuid4().hex[:8]}"
    asyncio.run(story(broker, redis.url, prefix, queue))
    store = ["--store", redis.url, "--prefix", prefix]
    _, alone, _ = run(capsys, "stats", "--queue", queue, "--json", *store)
    _, unqueued, _ = run(capsys, "stats", "--json", *store, f"--{name}", url)
    assert json.loads(alone) == json.loads(unqueued)  # the old flat shape, jobs only
    assert json.loads(alone)["pending"] == 3
