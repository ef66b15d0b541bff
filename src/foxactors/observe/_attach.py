"""``foxactors run APP --http-port N``: the HTTP server put into the application's tree.

The server reads the tree it runs in, so it must be a child somewhere in it; this
module puts it there without moving anything else (every path stays what the
application expects): beside the pipeline of a `WorkerApp` (as `with_http` does),
or as the last child of a root supervisor made by ``Supervisor.spec``. The port is
tried before anything starts, so a port in use is reported at once, naming the
option that changes it.
"""

from __future__ import annotations

import errno
import functools
import socket

import attrs

from foxactors._errors import ConfigurationError
from foxactors._spec import ChildSpec
from foxactors._supervisor import Supervisor
from foxactors.pipeline import WorkerApp

from ._server import _check, http_server, with_http

#: The child's name, beside the application's own children.
NAME = "http"


def check_http_port(host: str, port: int) -> None:
    """Fail now, naming ``--http-port``, if ``host:port`` cannot be bound.

    Raises:
        ConfigurationError: The port is in use, or the host cannot be bound.
    """
    _check(port, host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"cannot serve metrics and health on {host}:{port}: the port is already "
                    "in use; choose another with --http-port PORT (0 picks a free one)"
                ) from None
            raise ConfigurationError(
                f"cannot serve metrics and health on {host}:{port}: "
                f"{exc.strerror or exc}; check --http-host"
            ) from None


def attach_http(app: ChildSpec | WorkerApp, *, port: int, host: str) -> ChildSpec:
    """``app``'s tree with an `HttpServer` named ``http`` in it (see module).

    Raises:
        ConfigurationError: The root is neither a `WorkerApp` nor a supervisor made
            by ``Supervisor.spec`` (the message says how to add the server by hand),
            or it has a child named ``http`` already.
    """
    if isinstance(app, WorkerApp):
        return with_http(app, port=port, host=host).build()
    factory = app.factory
    if (
        isinstance(factory, functools.partial)
        and isinstance(factory.func, type)
        and issubclass(factory.func, Supervisor)
        and len(factory.args) == 1
        and isinstance(factory.args[0], tuple)
    ):
        children: tuple[ChildSpec, ...] = factory.args[0]
        if any(child.id == NAME for child in children):
            raise ConfigurationError(
                f"--http-port adds a child named {NAME!r} to {app.id!r}, which has one "
                "already: rename yours, or serve the endpoints with it"
            )
        server = ChildSpec(NAME, http_server(port=port, host=host))
        grown = functools.partial(factory.func, (*children, server), **factory.keywords)
        return attrs.evolve(app, factory=grown)
    raise ConfigurationError(
        f"--http-port needs a tree whose root is a WorkerApp or a supervisor made by "
        f"Supervisor.spec; the root of this one is {app.id!r} ({factory!r}): add "
        "ChildSpec('http', foxactors.observe.http_server(port=...)) to your tree instead"
    )
