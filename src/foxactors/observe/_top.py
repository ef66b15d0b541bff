"""``foxactors top URL``: a live view of a running tree, from its HTTP endpoints.

Each refresh is a `Scrape` of ``/tree``, ``/health`` and ``/metrics`` (one process,
or the parent of several); `frame` turns the latest scrape, and the one before it
for the rates, into a rich renderable: whether the tree is ready, each intake with
its messages per second (counter deltas between the two scrapes), in flight,
failures and queue depth, then the tree with every actor's state and restarts.
`top` is the small loop that refreshes it (rich's `Live`). Needs the ``top`` extra.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import attrs

try:
    import httpx
    from rich.console import Console, Group, RenderableType
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text
    from rich.tree import Tree
except ImportError as missing:  # pragma: no cover - the test environment has the extra
    raise ImportError(
        f"foxactors top needs the top extra ({missing.name} is missing): "
        "pip install 'foxactors[top]'"
    ) from missing
from prometheus_client.parser import text_string_to_metric_families

#: Samples of an exposition: sample name -> {sorted labels: value}.
Samples = Mapping[str, Mapping[tuple[tuple[str, str], ...], float]]

#: Children shown under one actor; the rest are summed up in one line.
MAX_CHILDREN = 12
#: Seconds a refresh may take.
TIMEOUT = 5.0

_DEPTHS = ("ready", "delayed", "in_flight", "dead")
_STATE_STYLES = {"running": "green", "starting": "yellow", "stopping": "yellow"}


class Unreachable(Exception):
    """The URL did not answer as a foxactors HTTP server does; the message says why."""


@attrs.frozen
class Scrape:
    """One look at a running tree through its endpoints.

    Attributes:
        url: The base URL scraped.
        at: When (seconds of a monotonic clock): rates divide by the difference.
        tree: ``/tree`` as JSON.
        health: ``/health`` as JSON (with ``ready`` and the intakes).
        samples: ``/metrics``, parsed (see `parse_samples`).
    """

    url: str
    at: float
    tree: Mapping[str, Any]
    health: Mapping[str, Any]
    samples: Samples


@attrs.frozen
class Rates:
    """Per second, between two scrapes, for one pipeline's queue.

    Attributes:
        received: Deliveries pulled per second.
        failed: Failed attempts per second.
    """

    received: float
    failed: float


def parse_samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The samples of a Prometheus exposition, by sample name, then sorted labels."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            found.setdefault(sample.name, {})[labels] = sample.value
    return found


def normalize(url: str) -> str:
    """``url`` with a scheme (``http://`` if none) and without a trailing slash."""
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


def fetch(client: httpx.Client, url: str) -> Scrape:
    """Scrape ``url``'s ``/tree``, ``/health`` and ``/metrics``.

    Raises:
        Unreachable: A request failed, or an answer is not what the endpoints give.
    """
    answers: dict[str, httpx.Response] = {}
    try:
        for path in ("/tree", "/health", "/metrics"):
            answers[path] = response = client.get(f"{url}{path}", timeout=TIMEOUT)
            if response.status_code != 200:
                raise Unreachable(
                    f"{url}{path} answered {response.status_code}: is it the address "
                    "served by foxactors run --http-port?"
                )
        return Scrape(
            url,
            time.monotonic(),
            answers["/tree"].json(),
            answers["/health"].json(),
            parse_samples(answers["/metrics"].text),
        )
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise Unreachable(
            f"cannot reach {url}: {reason} (is a tree running there with --http-port?)"
        ) from None
    except ValueError as exc:  # not JSON, not Prometheus text
        raise Unreachable(
            f"{url} does not answer as foxactors run --http-port does: {exc}"
        ) from None


def _by_queue(samples: Samples, name: str) -> dict[tuple[str, str], float]:
    """The sample ``name`` summed over message types, by (pipeline, queue)."""
    sums: dict[tuple[str, str], float] = {}
    for labels, value in samples.get(name, {}).items():
        named = dict(labels)
        key = (named.get("pipeline", ""), named.get("queue", ""))
        sums[key] = sums.get(key, 0.0) + value
    return sums


def rates(previous: Scrape, current: Scrape) -> dict[tuple[str, str], Rates | None]:
    """Messages and failures per second by (pipeline, queue), between two scrapes.

    A queue counted in neither scrape has none yet (0 per second); one whose counter
    went down (the process restarted) has no rate (None), nor has any when the
    scrapes were taken at the same moment.
    """
    elapsed = current.at - previous.at
    names = ("foxactors_messages_received_total", "foxactors_messages_failed_total")
    before = [_by_queue(previous.samples, name) for name in names]
    after = [_by_queue(current.samples, name) for name in names]
    found: dict[tuple[str, str], Rates | None] = {}
    for key in {*before[0], *after[0]}:
        deltas = [
            new.get(key, 0.0) - old.get(key, 0.0) for old, new in zip(before, after, strict=True)
        ]
        usable = elapsed > 0 and min(deltas) >= 0
        found[key] = Rates(deltas[0] / elapsed, deltas[1] / elapsed) if usable else None
    return found


def _one(samples: Samples, name: str, **labels: str) -> float | None:
    for key, value in samples.get(name, {}).items():
        if all(dict(key).get(k) == v for k, v in labels.items()):
            return value
    return None


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _intakes(current: Scrape, previous: Scrape | None) -> Table:
    table = Table(expand=False)
    for column in ("pipeline", "queue", "broker", "consuming", "msg/s", "failed/s"):
        table.add_column(column, justify="right" if "/" in column else "left")
    for column in ("in flight", "failed", "dead", "queue depth"):
        table.add_column(column, justify="left" if column == "queue depth" else "right")
    per_second = rates(previous, current) if previous is not None else {}
    idle = Rates(0.0, 0.0) if previous is not None else None
    failed = _by_queue(current.samples, "foxactors_messages_failed_total")
    dead = _by_queue(current.samples, "foxactors_messages_dead_lettered_total")
    for intake in current.health.get("intakes", []):
        key = (str(intake.get("pipeline", "")), str(intake.get("queue", "")))
        rate = per_second.get(key, idle)
        in_flight = _one(current.samples, "foxactors_in_flight", pipeline=key[0])
        counts = intake.get("queue_depth", {})
        order = dict.fromkeys((*_DEPTHS, *sorted(counts)))
        depth = " ".join(f"{k} {counts[k]}" for k in order if k in counts)
        consuming = bool(intake.get("consuming"))
        table.add_row(
            key[0],
            key[1],
            str(intake.get("broker", "")),
            Text("yes" if consuming else "no", style="green" if consuming else "bold red"),
            "-" if rate is None else f"{rate.received:.1f}",
            "-" if rate is None else f"{rate.failed:.1f}",
            _count(in_flight),
            _count(failed.get(key, 0.0)),
            _count(dead.get(key, 0.0)),
            depth or "-",
        )
    return table


def _label(node: Mapping[str, Any]) -> Text:
    name = str(node.get("path", "")).rpartition("/")[2] or str(node.get("path", "/"))
    state = str(node.get("state", "?"))
    restarts = int(node.get("restarts", 0))
    text = Text(name, style="bold" if node.get("kind") == "supervisor" else "")
    text.append(f" {node.get('actor_class', '')} ", style="dim")
    text.append(state, style=_STATE_STYLES.get(state, "bold red"))
    text.append(f" restarts {restarts}", style="bold yellow" if restarts else "dim")
    depth, capacity = node.get("mailbox_depth", 0), node.get("mailbox_capacity", 0)
    text.append(f" mailbox {depth}/{capacity}", style="dim")
    return text


def _grow(branch: Tree, node: Mapping[str, Any]) -> None:
    children = list(node.get("children", []))
    for child in children[:MAX_CHILDREN]:
        _grow(branch.add(_label(child)), child)
    rest = children[MAX_CHILDREN:]
    if rest:
        states: dict[str, int] = {}
        for child in rest:
            states[str(child.get("state"))] = states.get(str(child.get("state")), 0) + 1
        restarts = sum(int(child.get("restarts", 0)) for child in rest)
        summary = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        branch.add(Text(f"... {len(rest)} more: {summary}, restarts {restarts}", style="dim"))


def actor_tree(tree: Mapping[str, Any]) -> Tree:
    """``/tree`` as a rich tree: each actor's state, restarts and mailbox."""
    root = Tree(_label(tree))
    _grow(root, tree)
    return root


def frame(current: Scrape, previous: Scrape | None = None) -> RenderableType:
    """One frame of the live view; rates need the ``previous`` scrape (else ``-``)."""
    health = current.health
    ready = bool(health.get("ready"))
    head = Text(f"{current.url}  ", style="bold")
    head.append(f"status {health.get('status', '?')}  ")
    head.append("READY" if ready else "NOT READY", style="bold green" if ready else "bold red")
    pool = health.get("pool", {})
    head.append(
        f"  workers {health.get('workers', 0)}  in flight {pool.get('in_flight', 0)}"
        f"  waiting {pool.get('waiting', 0)}"
    )
    return Group(head, _intakes(current, previous), actor_tree(current.tree))


def top(
    url: str, *, interval: float = 1.0, once: bool = False, console: Console | None = None
) -> int:
    """Show ``url``'s tree live, refreshed every ``interval`` seconds, until Ctrl-C.

    With ``once``, print one frame (two scrapes ``interval`` apart, for the rates)
    and return. Returns the exit status: 1, with one line on stderr, if the URL
    cannot be reached at first; later failures are shown in the frame.
    """
    if not interval > 0:
        print(f"foxactors top: --interval must be above 0 seconds, got {interval}", file=sys.stderr)
        return 1
    url = normalize(url)
    console = console if console is not None else Console()
    with httpx.Client() as client:
        try:
            previous = fetch(client, url)
            time.sleep(interval)  # the rates need a second scrape
            current = fetch(client, url)
        except (Unreachable, httpx.InvalidURL) as exc:
            print(f"foxactors top: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
        if once:
            console.print(frame(current, previous))
            return 0
        try:
            with Live(frame(current, previous), console=console, auto_refresh=False) as live:
                while True:
                    time.sleep(interval)
                    try:
                        previous, current = current, fetch(client, url)
                        live.update(frame(current, previous), refresh=True)
                    except Unreachable as exc:
                        shown = Group(Text(str(exc), style="bold red"), frame(current))
                        live.update(shown, refresh=True)
        except KeyboardInterrupt:
            return 0
