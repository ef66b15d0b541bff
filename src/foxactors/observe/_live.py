"""`top`: the entry of ``foxactors top``, importing the ``top`` extra only when called."""

from __future__ import annotations


def top(url: str, *, interval: float = 1.0, once: bool = False) -> int:
    """Show the tree served at ``url`` live until Ctrl-C; the exit status.

    ``once`` prints one frame and returns (see docs/observability.md, "Live view").

    Raises:
        ImportError: The ``top`` extra (rich, httpx) is missing; the message says
            how to install it.
    """
    from ._top import top as live  # noqa: PLC0415 - rich and httpx: the top extra, only here

    return live(url, interval=interval, once=once)
