"""The parent's endpoints: every child's metrics merged, health and readiness of all.

Each child serves its own ``/metrics``, ``/health`` and ``/ready`` on a loopback port
the parent chose for it; a request to the parent asks every child at once (a short
timeout each) and answers for the whole: ``/metrics`` merges the children's
expositions (`foxactors.observe.merge`) and adds the parent's own figures,
``/health`` lists each child with its pid, restarts and health, ``/ready`` is 200
only when every child answers ready.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from ._child import WorkerProcess

#: Seconds a child has to answer the parent.
ASK_TIMEOUT = 2.0


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=ASK_TIMEOUT) as response:  # noqa: S310 - our loopback URL
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except (OSError, ValueError):
        return 0, b""


async def ask_all(
    workers: Sequence[WorkerProcess], path: str
) -> list[tuple[WorkerProcess, int, bytes]]:
    """Ask every running child for ``path`` at once; status 0 for one that did not answer."""
    answers: list[tuple[WorkerProcess, int, bytes]] = []

    async def one(worker: WorkerProcess) -> None:
        status, body = (0, b"")
        if worker.running and worker.url is not None:
            status, body = await anyio.to_thread.run_sync(_get, worker.url + path)
        answers.append((worker, status, body))

    async with anyio.create_task_group() as tasks:
        for worker in workers:
            tasks.start_soon(one, worker)
    return sorted(answers, key=lambda answer: answer[0].index)


def _own_metrics(workers: Sequence[WorkerProcess]) -> str:
    """The parent's figures, as Prometheus text: children running, restarts."""
    running = sum(worker.running for worker in workers)
    lines = [
        "# HELP foxactors_processes Worker processes running under the parent.",
        "# TYPE foxactors_processes gauge",
        f"foxactors_processes {running}",
        "# HELP foxactors_process_restarts Worker processes restarted by the parent.",
        "# TYPE foxactors_process_restarts counter",
    ]
    lines += [
        f'foxactors_process_restarts_total{{process="{w.index}"}} {w.restarts}' for w in workers
    ]
    return "\n".join(lines) + "\n"


def _says_ready(answer: Any) -> bool:
    return isinstance(answer, dict) and bool(answer.get("ready"))


def make_app(workers: Sequence[WorkerProcess], stopping: Callable[[], bool]) -> Any:
    """The Starlette app of the parent's endpoints over ``workers``."""
    from prometheus_client import CONTENT_TYPE_LATEST  # noqa: PLC0415 - the metrics extra
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import Response  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    from foxactors.observe import merge  # noqa: PLC0415

    async def metrics(request: Request) -> Response:
        answers = await ask_all(workers, "/metrics")
        texts = [body.decode() for _, status, body in answers if status == 200]
        return Response(merge([*texts, _own_metrics(workers)]), media_type=CONTENT_TYPE_LATEST)

    def each(answers: list[tuple[WorkerProcess, int, bytes]]) -> list[dict[str, Any]]:
        shown = []
        for worker, status, body in answers:
            try:
                answer = json.loads(body) if status else None
            except ValueError:
                answer = None
            shown.append(
                {
                    "process": worker.index,
                    "pid": worker.pid,
                    "running": worker.running,
                    "restarts": worker.restarts,
                    "url": worker.url,
                    "answer": answer,
                    "ready": status == 200 and _says_ready(answer),
                }
            )
        return shown

    def body(value: Any, status: int = 200) -> Response:
        return Response(json.dumps(value), status_code=status, media_type="application/json")

    async def health(request: Request) -> Response:
        shown = each(await ask_all(workers, "/health"))
        running = all(child["running"] for child in shown)
        status = "stopping" if stopping() else ("ok" if running else "degraded")
        return body({"status": status, "running": running, "processes": shown})

    async def ready(request: Request) -> Response:
        shown = each(await ask_all(workers, "/ready"))
        is_ready = not stopping() and all(child["ready"] for child in shown)
        return body({"ready": is_ready, "processes": shown}, 200 if is_ready else 503)

    return Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/health", health),
            Route("/ready", ready),
        ]
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now, for a child to serve on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def serve(
    app: Any,
    host: str,
    port: int,
    *,
    task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; started with its URL."""
    from hypercorn.asyncio import serve as on_asyncio  # noqa: PLC0415 - the metrics extra
    from hypercorn.config import Config  # noqa: PLC0415

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    bound = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1.0
    stop = anyio.Event()
    done = anyio.Event()

    async def hypercorn() -> None:
        # hypercorn's shutdown must not be cancelled halfway: told to stop, it stops
        with anyio.CancelScope(shield=True):
            try:
                await on_asyncio(app, config, shutdown_trigger=stop.wait)
            finally:
                done.set()

    shown = f"[{host}]" if ":" in host else host
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(hypercorn)
        task_status.started(f"http://{shown}:{bound}")
        try:
            await done.wait()
        finally:
            stop.set()
