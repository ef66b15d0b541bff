"""Virtual time for asyncio, matching trio's ``MockClock(autojump_threshold=0)``."""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike


class _JumpingSelector(selectors.BaseSelector):
    """A selector that advances the loop's clock instead of sleeping.

    Ready I/O is still reported at once; only the idle wait for the next timer is
    replaced by a jump of the virtual clock.
    """

    def __init__(self, loop_clock: list[float]) -> None:
        self._real = selectors.DefaultSelector()
        self._offset = loop_clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._real.select(0)
        if events or timeout == 0:
            return events
        if timeout is None:  # nothing scheduled: only real I/O can wake us
            return self._real.select(None)
        self._offset[0] += timeout
        return []

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose clock jumps to the next timer whenever all tasks wait.

    Use it as ``backend_options={"loop_factory": VirtualTimeEventLoop}`` with
    ``anyio.run`` or the anyio pytest plugin. ``anyio.sleep(60)`` then returns at
    once, with ``anyio.current_time()`` 60 s later.
    """

    def __init__(self) -> None:
        self._virtual_offset = [0.0]
        super().__init__(_JumpingSelector(self._virtual_offset))

    def time(self) -> float:
        """Return the real monotonic time plus every jump made so far."""
        return super().time() + self._virtual_offset[0]


def anyio_backend_options(backend: str) -> tuple[str, dict[str, Any]]:
    """Return an ``anyio_backend`` value running ``backend`` in virtual time.

    Example (in a ``conftest.py``):
        ```python
        @pytest.fixture(params=["asyncio", "trio"])
        def anyio_backend(request):
            return anyio_backend_options(request.param)
        ```
    """
    if backend == "asyncio":
        return "asyncio", {"loop_factory": VirtualTimeEventLoop}
    if backend == "trio":
        from trio.testing import MockClock  # noqa: PLC0415 - trio is optional

        return "trio", {"clock": MockClock(autojump_threshold=0)}
    raise ValueError(f"backend must be 'asyncio' or 'trio', got {backend!r}")
