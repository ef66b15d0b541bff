"""Throwaway broker servers for tests and benchmarks: free loopback ports, temporary dirs.

Each server is one of ours: started in the foreground (we keep its pid), bound to
127.0.0.1, stopped by its pid, its data deleted. A missing server raises
`ServerNotInstalled`; a test suite decides whether that skips or fails.

Example:
    ```python
    from foxactors.testing.servers import rabbitmq_server

    with rabbitmq_server() as broker:
        backend = RabbitMQBackend(broker.url)
    ```
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import attrs

T = TypeVar("T")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerNotInstalled(RuntimeError):
    """A server program the caller asked for is not installed."""


def require_server(command: str) -> str:
    """Return the path of ``command``, or raise `ServerNotInstalled`."""
    # Debian's /usr/sbin wrappers switch to the rabbitmq user; call the scripts directly.
    path = shutil.which(command, path="/usr/lib/rabbitmq/bin") or shutil.which(
        command, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin"
    )
    if path is None:
        raise ServerNotInstalled(
            f"{command} is not installed (Debian: apt-get install -y rabbitmq-server "
            "redis-server; scripts/brokers.sh does it)"
        )
    return path


def _wait_for_port(
    port: int, process: subprocess.Popen[bytes], timeout: float, *, hello: bytes = b""
) -> None:
    """Wait until the server listens (and answers ``hello`` with ``+PONG``, if given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
            if not hello:
                return
            s.sendall(hello)
            if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):  # not -LOADING: data is in
                return
        time.sleep(0.05)  # polling a process we do not control, not test synchronisation
    raise RuntimeError(f"server did not listen on port {port} within {timeout} s")


@attrs.define
class RabbitMQ:
    """One rabbitmq-server node of ours: its AMQP port, node name and process."""

    port: int
    node: str
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    epmd: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The AMQP URL of the default user on this node."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> None:
        """Start the node in the foreground (we keep its pid) and wait until it serves."""
        server = require_server("rabbitmq-server")
        log = Path(self.env["RABBITMQ_LOG_BASE"]) / "stdout.log"
        if self.epmd is None or self.epmd.poll() is not None:
            self._start_epmd()
        with log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own server binary
                [server], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        _wait_for_port(self.port, self.process, 60)
        ctl = require_server("rabbitmqctl")
        subprocess.run(  # noqa: S603
            [ctl, "-n", self.node, "await_startup"],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=60,
        )

    def _start_epmd(self) -> None:
        """Start an Erlang port mapper of our own (else the node leaves one running)."""
        port = int(self.env["ERL_EPMD_PORT"])
        self.epmd = subprocess.Popen(  # noqa: S603 - the port mapper that ships with Erlang
            [require_server("epmd"), "-port", str(port), "-address", "127.0.0.1"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(port, self.epmd, 10)

    def stop(self) -> None:
        """Stop our node by its pid (SIGTERM, then SIGKILL); the port mapper stays."""
        _terminate(self.process)

    def close(self) -> None:
        """Stop the node and our port mapper."""
        self.stop()
        _terminate(self.epmd)

    def ctl(self, *args: str) -> str:
        """Run ``rabbitmqctl`` against this node; return what it printed."""
        ctl = require_server("rabbitmqctl")
        done = subprocess.run(  # noqa: S603
            [ctl, "-q", "-n", self.node, *args],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=60,
            text=True,
        )
        return done.stdout


def _terminate(process: subprocess.Popen[bytes] | None) -> None:
    """Stop one of our processes by its pid: SIGTERM, then SIGKILL."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def rabbitmq_server() -> Iterator[RabbitMQ]:
    """Run a throwaway RabbitMQ node on loopback for the duration of the block."""
    require_server("rabbitmq-server")
    with tempfile.TemporaryDirectory(prefix="foxactors-rabbitmq-") as tmp:
        base = Path(tmp)
        port, dist_port = free_port(), free_port()
        node = f"foxactors{port}@localhost"
        config = base / "rabbitmq.conf"
        config.write_text(
            f"listeners.tcp.1 = 127.0.0.1:{port}\nloopback_users = none\n"
            "log.console = false\nlog.file.level = warning\n"
        )
        plugins = base / "enabled_plugins"
        plugins.write_text("[].\n")
        env = {
            **os.environ,
            "HOME": str(base),  # its own Erlang cookie, shared with rabbitmqctl
            "RABBITMQ_NODENAME": node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(free_port()),  # our own port mapper (see RabbitMQ.start)
            # the distribution (clustering) listener too, not only AMQP
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        (base / "log").mkdir()
        broker = RabbitMQ(port, node, env)
        try:
            broker.start()
            yield broker
        finally:
            broker.close()


@attrs.define
class RedisServer:
    """One redis-server of ours: its port, data directory and process."""

    port: int
    directory: Path
    appendonly: bool
    password: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of this server (with its password, if it has one)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server in the foreground (we keep its pid) and wait until it listens."""
        server = require_server("redis-server")
        self.process = subprocess.Popen(  # noqa: S603 - our own server binary
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(self.directory / "redis.log"),
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self.process, 30, hello=b"PING\r\n")

    def stop(self, *, kill: bool = False) -> None:
        """Stop our server by its pid: SIGTERM (or SIGKILL with ``kill``)."""
        if self.process is None or self.process.poll() is not None:
            return
        if kill:
            self.process.kill()
        else:
            self.process.terminate()
        self.process.wait(30)


@contextlib.contextmanager
def redis_server(*, appendonly: bool = False, password: str | None = None) -> Iterator[RedisServer]:
    """Run a throwaway Redis on loopback for the block (AOF on with ``appendonly``)."""
    require_server("redis-server")
    with tempfile.TemporaryDirectory(prefix="foxactors-redis-") as tmp:
        server = RedisServer(free_port(), Path(tmp), appendonly, password)
        try:
            server.start()
            yield server
        finally:
            server.stop()


def session_server(
    server: contextlib.AbstractContextManager[T], *, required: bool = False
) -> Iterator[T]:
    """Run ``server`` for the fixture that yields from this (see `redis_server`).

    A server that is not installed skips the tests that need it, saying how to
    install it; with ``required`` (say, on CI) it fails them instead. In a fixture:
    ``yield from session_server(redis_server(), required=bool(os.environ.get("CI")))``.
    """
    import pytest  # noqa: PLC0415 - only for fixtures, under pytest

    try:
        running = server.__enter__()
    except ServerNotInstalled as exc:
        if required:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    try:
        yield running
    finally:
        server.__exit__(None, None, None)
