"""``--reload``: watch the .py files under the current directory (the reload extra)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import anyio

try:
    from watchfiles import PythonFilter, awatch
except ImportError as missing:  # pragma: no cover - the test environment has the extra
    raise ImportError(
        f"--reload needs the reload extra ({missing.name} is missing): "
        "pip install 'foxactors[reload]'"
    ) from missing


async def watch(on_change: Callable[[Sequence[str]], None], stop: anyio.Event) -> None:
    """Call ``on_change`` with the changed paths each time .py files change, until ``stop``."""
    async for changes in awatch(os.getcwd(), watch_filter=PythonFilter(), stop_event=stop):
        on_change([path for _, path in changes])
