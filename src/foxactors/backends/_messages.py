"""The control messages between a pipeline's consumer and a backend's actors.

Frozen values, compared by type: every ``GetConnection()`` equals every other, so
the constants below and fresh instances mean the same.
"""

from __future__ import annotations

from typing import Any

import attrs

from foxactors._actor import Request

from ._contract import Source


@attrs.frozen
class GetConnection(Request[Any]):
    """Asks a backend's connection actor for its live connection (the reply).

    The actor fails the ask with `BackendError` once the connection is lost; it
    crashes then, and its rest_for_one supervisor rebuilds it and what depends on it.
    """


@attrs.frozen
class GetSource(Request[Source]):
    """Asks the consumer for its current `Source` (the reply).

    A backend's helper actors (e.g. the Redis lease keepers) work on it.
    """


CONNECTION = GetConnection()
"""The `GetConnection` request."""

SOURCE = GetSource()
"""The `GetSource` request."""
