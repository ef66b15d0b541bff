"""Virtual time for asyncio, matching trio's ``MockClock(autojump_threshold=0)``."""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio

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
        self._origin = time.monotonic()
        super().__init__(_JumpingSelector(self._virtual_offset))

    def time(self) -> float:
        """Return the loop's start plus every jump made so far.

        Real time does not leak in (as with trio's ``MockClock``, whose rate is 0):
        however slowly the machine runs the callbacks of one instant, they all see
        the same time, so timers fire in the same order on every run.
        """
        return self._origin + self._virtual_offset[0]


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


def in_virtual_time() -> bool:
    """Whether the running event loop's clock jumps (see `anyio_backend_options`)."""
    import sniffio  # noqa: PLC0415 - asked only from async code

    if sniffio.current_async_library() == "trio":
        import trio  # noqa: PLC0415 - trio is optional
        from trio.testing import MockClock  # noqa: PLC0415

        clock = trio.lowlevel.current_clock()
        return isinstance(clock, MockClock) and clock.autojump_threshold == 0
    return isinstance(asyncio.get_running_loop(), VirtualTimeEventLoop)


def require_virtual_time(what: str) -> None:
    """Raise a clear error unless the running loop is in virtual time."""
    if not in_virtual_time():
        from foxactors._errors import ConfigurationError  # noqa: PLC0415

        raise ConfigurationError(
            f"{what} runs in virtual time only, and this test runs in real time: in "
            "conftest.py, define the anyio_backend fixture to return the plugin's "
            "foxactors_anyio_backend (or foxactors.testing.anyio_backend_options(name)); "
            "see the testing guide"
        )


class VirtualClock:
    """The virtual clock of the running test: read it, or let time pass.

    Example:
        ```python
        clock = VirtualClock()
        began = clock.now()
        await clock.advance(60)  # everything due within the minute runs
        assert clock.now() - began >= 60
        ```
    """

    def __init__(self) -> None:
        self._epoch = time.time()
        self._start = anyio.current_time()

    def now(self) -> float:
        """The event loop's clock, in seconds (`anyio.current_time`)."""
        return anyio.current_time()

    def wall(self) -> float:
        """Wall-clock Unix seconds that move with virtual time.

        Pass it as ``JobQueue(clock=clock.wall)``, so that job records' times (and a
        scheduled job's due time) follow the virtual clock.
        """
        return self._epoch + (anyio.current_time() - self._start)

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass: every timer due meanwhile fires, in order."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError(f"advance() takes seconds >= 0, got {seconds!r}")
        await anyio.sleep(seconds)
