"""redis-py clients: how they are made, and which errors mean what."""

from __future__ import annotations

import ssl

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from foxactors._redis_packing import pack_fast

ERRORS = (RedisError, OSError)
"""What a command may raise when the server or the network fails."""
TIMEOUT = 10.0
"""Seconds a command may take before its connection counts as dead."""


def unreachable(exc: BaseException) -> bool:
    """Whether a failed connect is worth trying again (the server was not reached).

    Network errors, timeouts and a server still loading its data are; refused
    credentials and error replies (an unknown database) are not.
    """
    if isinstance(exc, AuthenticationError | ssl.SSLCertVerificationError):
        return False
    return isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError | TimeoutError)


def wrong_password(exc: BaseException) -> bool:
    """Whether a failed connect was refused for its credentials."""
    return isinstance(exc, AuthenticationError) or "WRONGPASS" in str(exc)


def server_of(client: aioredis.Redis) -> tuple[object, ...]:
    """Where a client's commands go, and as whom: host, port, socket path, database, user.

    The user too: what a script may touch is its user's (ACL key patterns).
    """
    kwargs = client.connection_pool.connection_kwargs
    return (
        kwargs.get("host"),
        kwargs.get("port"),
        kwargs.get("path"),
        int(kwargs.get("db") or 0),
        kwargs.get("username") or "default",
    )


def new_client(url: str, *, retries: int) -> aioredis.Redis:
    """A new client (its own connection pool) that retries a command ``retries`` times.

    Its connections pack commands with hiredis (`pack_fast`).

    No socket_timeout: with one, redis-py (8.1, Python 3.11) can swallow a task's
    cancellation, and a cancelled read must end. Reads and health checks carry
    timeouts of their own instead; TCP keepalive finds dead peers.
    """
    client = aioredis.Redis.from_url(
        url,
        socket_connect_timeout=5,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), retries),
    )
    pack_fast(client)
    return client
