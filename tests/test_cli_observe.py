"""``foxactors run --http-port`` and ``foxactors top``, in subprocesses, over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from rich.console import Console

import foxactors as fa
from foxactors.observe._top import Scrape, fetch, frame, rates

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = str(Path(fa.__file__).resolve().parent.parent)  # the foxactors under test


def foxactors(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "foxactors", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), PACKAGE_DIR])},
    )


@pytest.fixture
def served() -> Iterator[str]:
    """``foxactors run tests.apps:bound_app --http-port 0``: the URL it serves."""
    with foxactors(
        "run", "tests.apps:bound_app", "--http-port", "0", "--log-format", "json"
    ) as proc:
        assert proc.stdout is not None
        url = None
        events = []
        for line in proc.stdout:
            event = json.loads(line)
            events.append(event["event"])
            if event["event"] == "http.serving":
                url = event["url"]
                break
        assert url is not None, "the server never said where it serves"
        assert "app.starting" in events  # the banner, with the server or without
        try:
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_run_serves_the_endpoints_on_loopback(served: str) -> None:
    assert served.startswith("http://127.0.0.1:")
    health = httpx.get(f"{served}/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert [i["path"] for i in health.json()["intakes"]] == ["/svc/consumer"]
    assert httpx.get(f"{served}/ready", timeout=10).json()["ready"] is True
    assert "foxactors_ready 1.0" in httpx.get(f"{served}/metrics", timeout=10).text
    tree = httpx.get(f"{served}/tree", timeout=10).json()
    assert tree["path"] == "/svc"
    assert "/svc/http" in [child["path"] for child in tree["children"]]


def test_run_binds_another_address_only_when_told() -> None:
    with foxactors(
        "run", "tests.apps:forever", "--http-port", "0", "--http-host", "127.0.0.2",
        "--log-format", "json",
    ) as proc:  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "http.serving":
                break
        assert event["url"].startswith("http://127.0.0.2:")
        assert event["actor"] == "/svc/http"  # a child of the root supervisor
        assert httpx.get(f"{event['url']}/health", timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_a_port_in_use_is_one_line_naming_the_port_and_the_option() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = foxactors("run", "tests.apps:bound_app", "--http-port", str(port))
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert len(out.strip().splitlines()) == 1, out
    assert f"127.0.0.1:{port}" in out
    assert "--http-port" in out


def test_top_once_prints_a_frame_of_a_running_app(served: str) -> None:
    proc = foxactors("top", served, "--once", "--interval", "0.05")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "READY" in out
    assert "/svc" in out
    assert "consumer Consumer running restarts 0" in out
    assert "worker-1 WorkerActor running" in out


def test_a_frame_renders_the_scraped_endpoints(served: str) -> None:
    with httpx.Client() as client:
        scrape = fetch(client, served)
    console = Console(record=True, width=160, color_system=None)
    console.print(frame(scrape, attrs.evolve(scrape, at=scrape.at - 1)))
    text = console.export_text()
    assert "status ok" in text
    assert "READY" in text
    assert "NOT READY" not in text
    assert "memory" in text  # the intake's broker
    assert "http HttpServer running restarts 0" in text


def scrape(at: float, received: float, failed: float) -> Scrape:
    labels = (("message_type", "t"), ("pipeline", "/app"), ("queue", "q"))
    samples: dict[str, Any] = {
        "foxactors_messages_received_total": {labels: received},
        "foxactors_messages_failed_total": {labels: failed},
    }
    return Scrape("http://x", at, {}, {}, samples)


def test_rates_are_counter_deltas_over_the_time_between_scrapes() -> None:
    found = rates(scrape(10.0, 100, 4), scrape(12.0, 160, 10))
    assert found[("/app", "q")] is not None
    assert (found[("/app", "q")].received, found[("/app", "q")].failed) == (30.0, 3.0)
    assert rates(scrape(10.0, 100, 4), scrape(12.0, 5, 0)) == {("/app", "q"): None}  # restarted
    assert rates(scrape(10.0, 100, 4), scrape(10.0, 100, 4)) == {("/app", "q"): None}


def test_top_on_a_closed_port_is_one_line_and_fails() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends
    proc = foxactors("top", f"127.0.0.1:{port}", "--once")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert out.strip().splitlines() == [out.strip()]
    assert f"cannot reach http://127.0.0.1:{port}" in out
