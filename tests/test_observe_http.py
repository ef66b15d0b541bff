"""The metrics and health endpoints, over real HTTP, on asyncio and trio."""

from __future__ import annotations

import socket
import time
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import foxactors as fa
from foxactors.observe import HttpServer, HttpStatistics, http_server, with_http

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Real time: the server and the client talk over real sockets."""
    return (request.param, {})


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called ``name`` in an exposition, by their sorted labels."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def served(system: fa.ActorSystem, path: str) -> HttpStatistics:
    where = system.statistics(path)
    assert isinstance(where, HttpStatistics)
    return where


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(url)


async def test_metrics_count_what_was_processed() -> None:
    backend = fa.MemoryBackend()

    async def handle(message: fa.Message) -> None:
        if message.payload % 3 == 0:
            raise RuntimeError("boom")

    app = with_http(
        fa.WorkerApp("app").add_worker(handle).without_retry().with_concurrency_limit(2), port=0
    )
    for n in range(12):  # 0, 3, 6, 9 fail
        await backend.publish("q", n, properties=fa.MessageProperties(message_type="order"))
    async with fa.open_system(app.build(backend, "q")) as system:
        await backend.join("q")
        url = served(system, "/app/http").url
        text = (await get(f"{url}/metrics")).text
        labels = (("message_type", "order"), ("pipeline", "/app"), ("queue", "q"))
        assert samples(text, "foxactors_messages_received_total") == {labels: 12}
        assert samples(text, "foxactors_messages_succeeded_total") == {labels: 8}
        assert samples(text, "foxactors_messages_failed_total") == {labels: 4}
        assert samples(text, "foxactors_messages_dead_lettered_total") == {labels: 4}
        assert samples(text, "foxactors_message_duration_seconds_count") == {labels: 12}
        assert samples(text, "foxactors_workers") == {(("pipeline", "/app"),): 2}
        assert samples(text, "foxactors_queue_messages")[(("queue", "q"), ("state", "dead"))] == 4
        assert samples(text, "foxactors_ready") == {(): 1}
        restarts = samples(text, "foxactors_actor_restarts_total")
        assert restarts[(("path", "/app/consumer"),)] == 0


async def test_health_ready_and_tree_describe_the_running_tree() -> None:
    backend = fa.MemoryBackend()

    async def handle(message: fa.Message) -> None:
        pass

    app = with_http(fa.WorkerApp("app").add_worker(handle).with_concurrency_limit(3), port=0)
    async with fa.open_system(app.build(backend, "q")) as system:
        url = served(system, "/app/http").url
        health = await get(f"{url}/health")
        assert health.status_code == 200
        body = health.json()
        assert {"status", "pool", "workers", "running"} <= set(body)
        assert body["status"] == "ok"
        assert body["running"] is True
        assert body["workers"] == 3
        assert [(i["path"], i["consuming"]) for i in body["intakes"]] == [("/app/consumer", True)]
        ready = await get(f"{url}/ready")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True
        tree = (await get(f"{url}/tree")).json()
        assert tree["path"] == "/app"
        assert "/app/pool" in [child["path"] for child in tree["children"]]


async def test_ready_is_503_while_an_intake_does_not_consume() -> None:
    backend = fa.MemoryBackend()

    async def handle(message: fa.Message) -> None:
        pass

    app = with_http(fa.WorkerApp("app").add_worker(handle), port=0)
    async with fa.open_system(app.build(backend, "q")) as system:
        url = served(system, "/app/http").url
        assert (await get(f"{url}/ready")).status_code == 200
        await system.ref("/app/consumer").ask(fa.pipeline._messages.STOP_INTAKE)
        ready = await get(f"{url}/ready")
        assert ready.status_code == 503
        assert ready.json()["intakes"][0]["consuming"] is False
        assert (await get(f"{url}/health")).status_code == 200  # still running


async def test_a_port_in_use_fails_the_start_naming_the_port_and_the_option() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        spec = fa.ChildSpec("http", http_server(port=port))
        with pytest.raises(fa.StartError) as caught:
            async with fa.open_system(fa.Supervisor.spec("root", [spec])):
                pass
        text = str(caught.value)
        assert str(port) in text
        assert "--http-port" in text
        assert "port=" in text
    finally:
        taken.close()


async def test_it_binds_loopback_unless_told_otherwise() -> None:
    spec = fa.ChildSpec("http", http_server(port=0))
    async with fa.open_system(fa.Supervisor.spec("root", [spec])) as system:
        where = served(system, "/root/http")
        assert where.host == "127.0.0.1"
        response = await get(f"{where.url}/health")
        assert response.status_code == 200
        assert response.json()["intakes"] == []


def test_bad_ports_and_hosts_are_refused_when_given() -> None:
    for bad in (-1, 65536, "80", True):
        with pytest.raises(fa.ConfigurationError, match="port"):
            http_server(port=bad)  # type: ignore[arg-type]
    with pytest.raises(fa.ConfigurationError, match="host"):
        HttpServer(host="")


@pytest.mark.parametrize("anyio_backend", [("asyncio", {})])  # the Redis client's loop
async def test_a_broker_password_never_leaves_the_endpoints(redis: Any) -> None:
    password = "s3cret-pass"
    # the server's default user has no password ("nopass"): any password is accepted
    url = redis.url.replace("redis://", f"redis://default:{password}@")
    backend = fa.backends.RedisBackend(url)

    async def handle(message: fa.Message) -> None:
        pass

    app = with_http(fa.WorkerApp("app").add_worker(handle), port=0)
    async with fa.open_system(app.build(backend, "creds")) as system:
        base = served(system, "/app/http").url
        for path in ("/metrics", "/health", "/ready", "/tree"):
            response = await get(f"{base}{path}")
            assert response.status_code == 200
            assert password not in response.text
    await backend.close()


async def test_job_counts_per_state_are_served_from_the_store() -> None:
    from foxactors.jobs import JobFailed, JobQueue, JobState  # noqa: PLC0415 - the jobs extra

    jobs = JobQueue(fa.MemoryBackend(), queue="jobs")

    @jobs.task(max_attempts=1)
    async def work(fail: bool) -> None:
        if fail:
            raise RuntimeError("boom")

    done = [await work.enqueue(False) for _ in range(3)]
    failing = await work.enqueue(True)
    await work.options(delay=3600).enqueue(False)  # scheduled: not due for an hour
    app = with_http(jobs.worker("jobs", concurrency=2), port=0, stores=[jobs])
    async with fa.open_system(app.build()) as system:
        for handle in done:
            await handle.result(timeout=10)
        with pytest.raises(JobFailed):
            await failing.result(timeout=10)
        text = (await get(f"{served(system, '/jobs-jobs/http').url}/metrics")).text
    counts = {labels[0][1]: value for labels, value in samples(text, "foxactors_jobs").items()}
    assert counts[JobState.SUCCEEDED.value] == 3
    assert counts[JobState.DEAD.value] == 1
    assert counts[JobState.SCHEDULED.value] == 1
    assert counts[JobState.RUNNING.value] == 0


async def test_periodic_jobs_show_their_next_tick_and_the_ticks_enqueued() -> None:
    from foxactors.jobs import JobQueue  # noqa: PLC0415 - the jobs extra

    # the records' clock starts a tenth of a second before a minute: one tick soon
    start, origin = 1_800_000_059.9, time.monotonic()
    jobs = JobQueue(
        fa.MemoryBackend(), queue="jobs", clock=lambda: start + time.monotonic() - origin
    )
    ran = anyio.Event()

    @jobs.task
    async def report() -> None:
        ran.set()

    jobs.periodic("* * * * *", report, name="minutely")
    app = with_http(jobs.worker("jobs"), port=0, stores=[jobs])
    async with fa.open_system(app.build()) as system:
        with anyio.fail_after(10):
            await ran.wait()
        text = (await get(f"{served(system, '/jobs-jobs/http').url}/metrics")).text
    name = (("name", "minutely"),)
    assert samples(text, "foxactors_periodic_enqueued_total") == {name: 1.0}
    assert samples(text, "foxactors_periodic_next_tick_seconds") == {name: 1_800_000_120.0}
