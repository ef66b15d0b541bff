"""Small actors and helpers shared by the tests."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio

import foxactors as fa


class Recorder:
    """Collects what happens, in order, across actors and restarts."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def add(self, *event: str) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[str]:
        return [e[1] for e in self.events if e[0] == kind]

    def count(self, kind: str, name: str) -> int:
        return sum(1 for e in self.events if e[0] == kind and e[1] == name)


class Crash(Exception):
    """The error test actors raise on purpose."""


class Worker(fa.Actor[Any]):
    """Records its life; "crash" raises, "exit" stops normally, others are echoed."""

    def __init__(self, name: str, rec: Recorder) -> None:
        self.name = name
        self.rec = rec

    async def on_start(self) -> None:
        self.rec.add("start", self.name)

    async def receive(self, message: Any) -> Any:
        if message == "crash":
            raise Crash(self.name)
        if message == "exit":
            self.stop()
            return None
        self.rec.add("got", self.name, str(message))
        return message

    async def on_crash(self, message: Any, error: Exception) -> None:
        self.rec.add("crash", self.name, str(message))

    async def on_stop(self, exit: fa.Exit) -> None:
        self.rec.add("stop", self.name, exit.kind.value)


def worker(
    name: str,
    rec: Recorder,
    restart: fa.Restart = fa.Restart.PERMANENT,
    **options: Any,
) -> fa.ChildSpec:
    """A ChildSpec for a `Worker` named ``name``, restarting at once by default."""
    options.setdefault("backoff", fa.Backoff.none())
    return fa.ChildSpec(name, lambda: Worker(name, rec), restart=restart, **options)


def tree(children: list[fa.ChildSpec], name: str = "app", **options: Any) -> fa.ChildSpec:
    """A root supervisor spec that escalates only when asked to."""
    options.setdefault("max_restarts", 100)
    return fa.Supervisor.spec(name, children, **options)


def ending_with(name: str, actor: type[fa.Actor[Any]]) -> fa.ChildSpec:
    """A tree that ends (normally) when its one child ``actor`` stops itself."""
    child = fa.ChildSpec(name, actor, restart="transient", significant=True)
    return fa.Supervisor.spec("job", [child], auto_shutdown="any_significant")


class Gate(fa.Actor[Any]):
    """Handles each message only once its gate opens; records what it handled."""

    def __init__(self, gate: Callable[[], anyio.Event], seen: list[Any]) -> None:
        self.gate = gate
        self.seen = seen

    async def receive(self, message: Any) -> Any:
        await self.gate().wait()
        self.seen.append(message)
        return message


class KeptSources(fa.MemoryBackend):
    """A memory backend that keeps the sources it opens (to cut or close them in a test)."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[Any] = []

    async def open_source(self, queue: str, *, prefetch: int) -> Any:
        source = await super().open_source(queue, prefetch=prefetch)
        self.sources.append(source)
        return source


async def receive_one(source: Any) -> fa.Delivery:
    """The next delivery of a backend's source (brokers may take a moment)."""
    with anyio.fail_after(60):
        (delivery,) = await source.receive(1)
    assert isinstance(delivery, fa.Delivery)
    return delivery


async def until(what: str, check: Callable[[], Any], seconds: float = 30) -> Any:
    """Poll ``check`` (another process's files or a broker; it may be async) until truthy.

    For what nothing in this process can signal: a subprocess's output, a server's
    state. Fails naming ``what`` after ``seconds``.
    """
    with anyio.move_on_after(seconds):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await anyio.sleep(0.02)  # polling other processes: nothing to wait on here
    raise AssertionError(f"waited {seconds} s for {what}")


def foxactors_run(target: str, out: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """``foxactors run target`` in a process of its own, its output in ``out``.

    As another host would run it: this machine's ``FOXACTORS_*`` variables left out,
    ``env`` added, the foxactors under test and then the tests package importable.
    """
    root = Path(__file__).resolve().parent.parent
    with out.open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "foxactors", "run", target],
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("FOXACTORS_")},
                "PYTHONPATH": os.pathsep.join([str(Path(fa.__file__).parents[1]), str(root)]),
                **env,
            },
        )


def props(tenant: str | None) -> fa.MessageProperties:
    """Message properties of ``tenant``'s message (None: no tenant)."""
    return fa.MessageProperties(headers={} if tenant is None else {"x-tenant": tenant})


def tenant_of(delivery: fa.Delivery) -> str:
    """The tenant a delivery's message carries ("" for none)."""
    tenant = delivery.message.properties.headers.get("x-tenant", "")
    assert isinstance(tenant, str)
    return tenant


async def take_all(
    source: Any, count: int, settle: Callable[[fa.Delivery], object], seconds: float = 30
) -> list[fa.Delivery]:
    """Take ``count`` deliveries from ``source``, settling each with ``settle``; them."""
    taken: list[fa.Delivery] = []
    with anyio.fail_after(seconds):
        while len(taken) < count:
            for delivery in await source.receive(count - len(taken)):
                settle(delivery)
                taken.append(delivery)
    return taken


def ack(delivery: fa.Delivery) -> None:
    """Settle ``delivery`` as handled (for `take_all`)."""
    delivery.handle.ack()


async def read_beside_a_claim(source: Any, monkeypatch: Any, count: int) -> list[fa.Delivery]:
    """What a reader of ``source`` gets when it starts while a claim is on its way.

    The keeper's next claim that takes something is held once Redis has made it,
    until the reader, started then, waits; a source that counts the claim against
    its credit makes the reader wait for it rather than read beside it.
    """
    from foxactors.backends.redis import _leases as redis_leases  # noqa: PLC0415 - Redis tests

    claimed, gate = anyio.Event(), anyio.Event()
    real = redis_leases.reclaim

    async def held_back(*args: Any, **options: Any) -> Any:
        reply = await real(*args, **options)  # claimed on the server, the reply on its way
        if reply[1]:
            claimed.set()
            await gate.wait()
        return reply

    monkeypatch.setattr(redis_leases, "reclaim", held_back)
    got: list[fa.Delivery] = []

    async def reader() -> None:
        got.extend(await source.receive(count))

    async with anyio.create_task_group() as tasks:
        with anyio.fail_after(10):
            await claimed.wait()
        tasks.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        gate.set()
    return got
