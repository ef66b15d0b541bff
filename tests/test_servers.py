"""The throwaway servers the broker tests rely on: started, reachable, persistent."""

from __future__ import annotations

import re

import redis as redis_py

from foxactors.testing.servers import RabbitMQ, RedisServer, rabbitmq_server


def test_redis_keeps_data_across_a_restart_with_aof(redis: RedisServer) -> None:
    client = redis_py.Redis.from_url(redis.url)
    client.xadd("servers-test", {"n": "1"})
    client.close()
    redis.stop()
    redis.start()
    client = redis_py.Redis.from_url(redis.url)
    assert client.xlen("servers-test") == 1
    client.delete("servers-test")
    client.close()


def test_rabbitmq_listens_only_on_loopback(rabbitmq: RabbitMQ) -> None:
    listeners = rabbitmq.ctl("eval", "rabbit_networking:active_listeners().")
    addresses = re.findall(r"\{(\d+(?:,\d+){3,7})\}", re.sub(r"\s", "", listeners))
    assert len(addresses) == 2  # AMQP and clustering
    assert set(addresses) == {"127,0,0,1"}


def test_rabbitmq_runs_its_own_port_mapper_and_stops_it(rabbitmq: RabbitMQ) -> None:
    # (the fixture: skipped, or failed under CI, where rabbitmq-server is missing)
    with rabbitmq_server() as broker:
        assert broker.epmd is not None
        assert broker.epmd.poll() is None
        names = broker.ctl("eval", "net_adm:names().")  # asks the node's port mapper
        assert broker.node.split("@")[0] in names
        assert broker.env["ERL_EPMD_PORT"] != rabbitmq.env["ERL_EPMD_PORT"]
    # nothing of ours is left running: not the node, not its port mapper
    assert broker.epmd.poll() is not None
    assert broker.process is not None
    assert broker.process.poll() is not None
