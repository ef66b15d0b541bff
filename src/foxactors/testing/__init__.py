"""Tools for testing code built on foxactors: virtual time on both event loops.

``anyio_backend_options(name)`` gives the ``anyio_backend`` parameters that run a test on asyncio
and on trio, both in virtual time: whenever every task waits, the clock jumps to the
next deadline, so backoff delays and timeouts cost no wall-clock time.
"""

from __future__ import annotations

from ._clock import VirtualTimeEventLoop as VirtualTimeEventLoop
from ._clock import anyio_backend_options as anyio_backend_options
