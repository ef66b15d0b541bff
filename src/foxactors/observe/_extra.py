"""The metrics extra, checked first: a missing one fails with the line that installs it."""

from __future__ import annotations

try:
    import hypercorn
    import prometheus_client
    import starlette
except ImportError as missing:  # pragma: no cover - the test environment has the extra
    raise ImportError(
        f"foxactors.observe needs the metrics extra ({missing.name} is missing): "
        "pip install 'foxactors[metrics]'"
    ) from missing

__all__ = ["hypercorn", "prometheus_client", "starlette"]
