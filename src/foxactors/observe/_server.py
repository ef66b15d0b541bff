"""`HttpServer`: the metrics and health endpoints, served by an actor of the tree.

The server is hypercorn (an ASGI server that runs on asyncio and on trio, as the
tree does) serving the Starlette app of ``_app.py``, as a background task of the
actor. The actor binds the socket itself in ``on_start``, so a port already taken
fails the tree's start at once with an error that names the port and how to change
it, and a port of 0 (a free one) is known before anything is served.
"""

from __future__ import annotations

import errno
import functools
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import attrs
import sniffio

from foxactors._actor import Actor
from foxactors._cell import Cell
from foxactors._errors import ConfigurationError
from foxactors._validate import require_int

from ._app import make_app
from ._reading import Reading, read, root_of

if TYPE_CHECKING:
    from foxactors.pipeline import WorkerApp

DEFAULT_PORT = 9464
"""The port served by default (Prometheus's registry of exporter ports lists 9464)."""
LOOPBACK = "127.0.0.1"


@attrs.frozen
class HttpStatistics:
    """Where the endpoints are served.

    Attributes:
        host: The address bound.
        port: The port bound (the free one picked, when asked for port 0).
    """

    host: str
    port: int

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:9464``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening.

    Raises:
        ConfigurationError: The port is taken, or the address cannot be bound; the
            message names them and the options that change them.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT only
        sock.bind((host, port))
        sock.listen(128)  # connections wait in the backlog until hypercorn accepts them
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigurationError(
                f"cannot serve metrics and health on {host}:{port}: the port is already "
                "in use (by another process, or another worker on this machine); choose "
                "another with http_server(port=...) / with_http(port=...), or "
                "`foxactors run --http-port PORT` (0 picks a free one)"
            ) from None
        raise ConfigurationError(
            f"cannot serve metrics and health on {host}:{port}: {exc.strerror or exc}; "
            "check the host given to http_server(host=...) or --http-host"
        ) from None
    return sock


class HttpServer(Actor[Any]):
    """Serves ``/metrics``, ``/health``, ``/ready`` and ``/tree`` for its tree.

    Put it anywhere in the tree (`with_http` adds it beside a `WorkerApp`'s
    pipeline); it reads the whole tree it runs in. It binds ``host`` (loopback by
    default: other machines cannot reach it unless told) and ``port`` when it
    starts; a port in use fails the start with a `ConfigurationError`.

    Args:
        port: The port; 0 picks a free one (see `statistics`).
        host: The address to bind; ``"0.0.0.0"`` serves every interface.
        stores: Job stores whose job counts per state are served as metrics.
    """

    def __init__(
        self, *, port: int = DEFAULT_PORT, host: str = LOOPBACK, stores: Sequence[Any] = ()
    ) -> None:
        _check(port, host)
        self._host = host
        self._port = port
        self._stores = tuple(stores)

    async def on_start(self) -> None:
        """Bind the socket, then serve it in a background task."""
        sock = bind(self._host, self._port)
        self._bound = HttpStatistics(self._host, sock.getsockname()[1])
        self._root: Cell = root_of(self._cell)  # type: ignore[arg-type]  # a Host is a Cell
        self.start_task(self._serve, sock)
        self.log.info("http.serving", url=self._bound.url)

    def statistics(self) -> HttpStatistics:
        """Where it serves (the port picked, when asked for port 0)."""
        return self._bound

    async def _read(self) -> Reading:
        return await read(self._root, stores=self._stores)

    async def _serve(self, sock: socket.socket) -> None:
        """Serve until this task is cancelled (the actor stops), then shut down cleanly.

        Hypercorn's own shutdown must not be cancelled halfway, so it runs shielded
        and is told to stop (its shutdown trigger) when the cancel arrives here;
        requests in progress get `graceful_timeout` (one second) to finish.
        """
        from hypercorn.config import Config  # noqa: PLC0415 - the extra is needed only here

        config = Config()
        config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns the descriptor now
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 1.0
        app = make_app(self._read)
        stop = anyio.Event()
        done = anyio.Event()

        async def hypercorn() -> None:
            with anyio.CancelScope(shield=True):
                try:
                    if sniffio.current_async_library() == "trio":
                        from hypercorn.trio import serve as on_trio  # noqa: PLC0415

                        await on_trio(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
                    else:
                        from hypercorn.asyncio import serve as on_asyncio  # noqa: PLC0415

                        await on_asyncio(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
                finally:
                    done.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(hypercorn)
            try:
                await done.wait()  # until the actor stops (or hypercorn fails)
            finally:
                stop.set()


def _check(port: int, host: str) -> None:
    require_int("HTTP port", port, 0)
    if port > 65535:
        raise ConfigurationError(f"HTTP port must be from 0 to 65535, got {port!r}")
    if not isinstance(host, str) or not host:
        raise ConfigurationError(f"HTTP host must be an address such as '127.0.0.1', got {host!r}")


def http_server(
    *, port: int = DEFAULT_PORT, host: str = LOOPBACK, stores: Sequence[Any] = ()
) -> Callable[[], HttpServer]:
    """A factory of `HttpServer`, for ``WorkerApp.with_actor`` or a `ChildSpec`.

    Its arguments are checked now: a bad port or host fails here, not at start.
    """
    _check(port, host)
    return functools.partial(HttpServer, port=port, host=host, stores=tuple(stores))


def with_http(
    app: WorkerApp,
    *,
    port: int = DEFAULT_PORT,
    host: str = LOOPBACK,
    stores: Sequence[Any] = (),
) -> WorkerApp:
    """``app`` with an `HttpServer` named ``http`` beside its pipeline.

    Example:
        ```python
        app = with_http(WorkerApp("emails").add_worker(send), port=9464)
        ```
    """
    return app.with_actor("http", http_server(port=port, host=host, stores=stores))
