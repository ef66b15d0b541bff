"""Health, readiness and the tree as JSON, from a `Reading`.

``/health`` says the tree runs (Foxtive's fields: ``status``, ``pool``, ``workers``,
``running``, plus each intake's state); ``/ready`` says every intake consumes, not
merely that a connection is open. Both are plain dicts here, made into responses by
the HTTP app; nothing in them comes from a URL, so no password can be in them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from foxactors._lifecycle import ActorState
from foxactors._snapshot import ActorSnapshot
from foxactors.pipeline import ConsumerStatistics, PoolStatistics

from ._reading import Intake, Reading


def _consuming(reading: Reading, intake: Intake) -> bool:
    """Whether ``intake`` pulls now: its consumer runs and pulls, on a live connection.

    The consumer says it does not once its source failed; the connection actor
    (on a broker) is not running from the moment it finds the connection lost until
    a new one is open: either is enough to say no, whichever notices first.
    """
    snap = reading.snapshot.find(intake.path)
    stats = snap.statistics if snap is not None else None
    link = reading.snapshot.find(intake.link) if intake.link is not None else None
    return (
        snap is not None
        and snap.state is ActorState.RUNNING
        and isinstance(stats, ConsumerStatistics)
        and stats.consuming
        and (intake.link is None or (link is not None and link.state is ActorState.RUNNING))
    )


def is_ready(reading: Reading) -> bool:
    """Whether the tree runs and every intake is consuming now."""
    running = reading.snapshot.state is ActorState.RUNNING
    return running and all(_consuming(reading, intake) for intake in reading.intakes)


def intake_state(reading: Reading, intake: Intake) -> dict[str, Any]:
    """One intake as JSON: its consumer's state, whether it consumes, its broker's counts."""
    snap = reading.snapshot.find(intake.path)
    connection = intake.connection
    return {
        "pipeline": intake.pipeline,
        "path": intake.path,
        "queue": intake.queue,
        "broker": intake.broker,
        "state": snap.state.value if snap is not None else "stopped",
        "consuming": _consuming(reading, intake),
        "restarts": snap.restarts if snap is not None else 0,
        "connection": None
        if connection is None
        else {
            "consuming": connection.consuming,
            "connects": connection.connects,
            "reconnects": connection.reconnects,
            "lost": connection.lost,
            "consecutive_failures": connection.consecutive_failures,
            "last_error": connection.last_error,  # redacted where it was recorded
        },
        "queue_depth": dict(intake.queue_depth),
    }


def health(reading: Reading) -> dict[str, Any]:
    """``/health``: whether the tree runs, its pools and workers, each intake.

    ``status`` is ``"ok"`` while the root runs, ``"stopping"`` or ``"stopped"``
    otherwise; ``pool`` sums every pipeline's pool (``in_flight``, ``waiting``,
    ``busy``, ``capacity``); ``workers`` counts the worker actors; ``running`` is
    whether the root runs.
    """
    pool = {"in_flight": 0, "waiting": 0, "busy": 0, "capacity": 0}
    workers = 0
    for snap in reading.snapshot.walk():
        stats = snap.statistics
        if isinstance(stats, PoolStatistics):
            pool["in_flight"] += stats.in_flight
            pool["waiting"] += stats.waiting
            pool["busy"] += stats.busy
            pool["capacity"] += stats.workers * stats.capacity
            workers += stats.workers
    running = reading.snapshot.state is ActorState.RUNNING
    status = "ok" if running else reading.snapshot.state.value
    return {
        "status": status,
        "pool": pool,
        "workers": workers,
        "running": running,
        "ready": is_ready(reading),
        "intakes": [intake_state(reading, intake) for intake in reading.intakes],
    }


def readiness(reading: Reading) -> dict[str, Any]:
    """``/ready``: ``ready`` and each intake's state (served as 200 or 503)."""
    return {
        "ready": is_ready(reading),
        "running": reading.snapshot.state is ActorState.RUNNING,
        "intakes": [intake_state(reading, intake) for intake in reading.intakes],
    }


def tree(snapshot: ActorSnapshot) -> dict[str, Any]:
    """``/tree``: the snapshot as JSON, each actor with its statistics."""
    return {
        "path": snapshot.path,
        "kind": snapshot.kind,
        "actor_class": snapshot.actor_class,
        "state": snapshot.state.value,
        "restarts": snapshot.restarts,
        "mailbox_depth": snapshot.mailbox_depth,
        "mailbox_capacity": snapshot.mailbox_capacity,
        "statistics": _jsonable(snapshot.statistics),
        "children": [tree(child) for child in snapshot.children],
    }


def _jsonable(value: Any) -> Any:
    """``value`` (an attrs statistics value, mostly) as plain JSON data."""
    if attrs.has(type(value)):
        fields = attrs.asdict(value, recurse=False)
        return {"type": type(value).__name__} | {k: _jsonable(v) for k, v in fields.items()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {_key(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _key(key: Any) -> str:
    if isinstance(key, tuple):
        return "/".join("" if k is None else str(_jsonable(k)) for k in key)
    return "" if key is None else str(_jsonable(key))
