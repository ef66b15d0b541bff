"""``/ready`` with real brokers: 503 while the network to the broker is cut, 200 once healed.

The cut is the silent partition of tests/test_broker_failures.py: no byte crosses
and no connection is closed, so only the connection's own checks (RabbitMQ's
heartbeats, Redis's health PINGs) can tell; then the intake is rebuilt through the
proxy once it heals.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import httpx
import pytest

import foxactors as fa
from foxactors.observe import HttpStatistics, with_http

from .brokers import BROKERS, Partition, RabbitMQCase, RedisCase, case

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})  # the brokers' clients run on asyncio


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> RabbitMQCase | RedisCase:
    return case(request.param, request.getfixturevalue(request.param))


async def wait_ready(client: httpx.AsyncClient, url: str, status: int, within: float) -> Any:
    """Poll ``/ready`` until it answers ``status`` (nothing else tells a probe); its body."""
    with anyio.fail_after(within):
        while True:
            response = await client.get(f"{url}/ready")
            if response.status_code == status:
                return response.json()
            await anyio.sleep(0.02)


async def test_ready_is_503_while_the_broker_is_cut_and_200_once_healed(
    broker: RabbitMQCase | RedisCase,
) -> None:
    queue = f"ready-{uuid.uuid4().hex[:8]}"
    handled = anyio.Event()

    async def handle(message: fa.Message) -> None:
        handled.set()

    partition = Partition(broker.server.port)
    app = with_http(
        fa.WorkerApp("app")
        .add_worker(handle)
        .with_reconnect(min_delay=0.05, max_delay=0.2, give_up_after=1000),
        port=0,
    )
    async with anyio.create_task_group() as proxy:
        await proxy.start(partition.serve)
        backend = broker.backend_via(partition.port)
        async with (
            fa.open_system(app.build(backend, queue)) as system,
            httpx.AsyncClient(timeout=10) as client,
        ):
            where = system.statistics("/app/http")
            assert isinstance(where, HttpStatistics)
            body = await wait_ready(client, where.url, 200, within=30)
            assert [i["consuming"] for i in body["intakes"]] == [True]
            partition.cut()
            body = await wait_ready(client, where.url, 503, within=30)
            assert body["ready"] is False
            assert [i["consuming"] for i in body["intakes"]] == [False]
            assert (await client.get(f"{where.url}/health")).status_code == 200  # alive
            partition.heal()
            body = await wait_ready(client, where.url, 200, within=30)
            assert [i["consuming"] for i in body["intakes"]] == [True]
            await broker.backend.publish(queue, 1)
            with anyio.fail_after(30):
                await handled.wait()  # ready meant it: the healed intake consumes
            assert backend.statistics().lost >= 1
        await backend.close()
        proxy.cancel_scope.cancel()
    await broker.backend.close()
