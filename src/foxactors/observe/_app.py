"""The HTTP endpoints, as a Starlette (ASGI) application over a reading function.

``/metrics`` (Prometheus text), ``/health``, ``/ready`` (503 unless every intake
consumes) and ``/tree`` (the snapshot). Each request takes a fresh `Reading`; the
app holds no state of its own. Whatever is served is scrubbed of the brokers'
passwords once more before it leaves, should one ever reach a figure.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._health import health, is_ready, readiness, tree
from ._metrics import render
from ._reading import Reading

#: Takes a reading of the running tree.
Reader = Callable[[], Awaitable[Reading]]


def scrub(text: str, secrets: frozenset[str]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _json(reading: Reading, body: Any, status: int = 200) -> Response:
    text = scrub(json.dumps(body, sort_keys=True), reading.secrets)
    return Response(text, status_code=status, media_type="application/json")


def make_app(read: Reader) -> Starlette:
    """The ASGI application serving a tree's endpoints; ``read`` takes its reading."""

    async def metrics(request: Request) -> Response:
        reading = await read()
        text = scrub(render(reading).decode(), reading.secrets)
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    async def health_endpoint(request: Request) -> Response:
        reading = await read()
        return _json(reading, health(reading))

    async def ready_endpoint(request: Request) -> Response:
        reading = await read()
        return _json(reading, readiness(reading), 200 if is_ready(reading) else 503)

    async def tree_endpoint(request: Request) -> Response:
        reading = await read()
        return _json(reading, tree(reading.snapshot))

    return Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/health", health_endpoint),
            Route("/ready", ready_endpoint),
            Route("/tree", tree_endpoint),
        ]
    )
