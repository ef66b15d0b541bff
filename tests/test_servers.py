"""The throwaway servers the broker tests rely on: started, reachable, persistent."""

from __future__ import annotations

import re

import redis as redis_py

from foxactors.testing.servers import RabbitMQ, RedisServer


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
