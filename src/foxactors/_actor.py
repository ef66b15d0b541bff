"""`Actor`, the base class of user code, and `ActorRef`, the handle others hold."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, final, overload

import anyio
import attrs

from ._errors import AskTimeout
from ._lifecycle import ActorState, Exit
from ._mailbox import Mailbox, MailboxStatistics

if TYPE_CHECKING:
    import structlog

M = TypeVar("M")
M_contra = TypeVar("M_contra", contravariant=True)
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Host(Protocol):
    """What an `Actor` and its `ActorRef` use of the cell that keeps the actor.

    Declared here, where it is used, so that this module needs nothing of the cell's
    (``_cell.Cell`` implements it); the actor core has no import cycle.
    """

    @property
    def path(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def state(self) -> ActorState: ...
    @property
    def ref(self) -> ActorRef[Any]: ...
    @property
    def mailbox(self) -> Mailbox[Any]: ...
    @property
    def log(self) -> structlog.typing.FilteringBoundLogger: ...

    def resolve(self, path: str) -> Host: ...
    def request_self_stop(self) -> None: ...
    def watch(self, other: Any) -> None: ...
    def unwatch(self, other: Any) -> None: ...
    def start_task(
        self, func: Callable[..., Awaitable[object]], args: tuple[object, ...]
    ) -> None: ...
    async def wait_stopped(self) -> Exit: ...


class Actor(Generic[M]):
    """Base class for actors: state plus a handler that sees one message at a time.

    Subclass it and override `receive`; the other hooks are optional. An actor is
    created by its `ChildSpec` factory and run by its supervisor. Messages are
    handled one at a time, in order. If `receive` raises, the actor *crashes*: its
    supervisor decides what happens next (usually a restart, with a fresh instance
    from the factory). The mailbox and the `ActorRef` survive restarts; only the
    message being handled goes to `on_crash`.

    Example:
        ```python
        class Counter(Actor[int]):
            def __init__(self) -> None:
                self.total = 0

            async def receive(self, message: int) -> int:
                self.total += message
                return self.total  # the reply, if the sender used ask()
        ```
    """

    _cell: Host
    #: ``"supervisor"`` for actors that keep children, as snapshots report it.
    kind: ClassVar[str] = "actor"
    #: Run ``on_start`` inside the actor's own life task (needed by supervisors,
    #: which start children in their own task group); plain actors start inline.
    _starts_in_life: ClassVar[bool] = False

    # -- hooks ---------------------------------------------------------------------

    async def on_start(self) -> None:
        """Prepare the actor before its first message (after each restart too).

        Raising here is a failed start: at tree start it fails the whole start; on a
        restart it counts as another crash. Background tasks may be started here.
        """

    async def receive(self, message: M) -> Any:
        """Handle one message; the return value is the reply to an ``ask``.

        Raising crashes the actor (see the class docstring).
        """
        raise NotImplementedError(f"{type(self).__qualname__} must override receive()")

    async def on_crash(self, message: M | None, error: Exception) -> None:
        """Take care of the message that was being handled when the actor crashed.

        Called on the crashed instance, before `on_stop`, whatever crashed it: when a
        background task crashes the actor while a handler is awaiting, ``message`` is
        the message that handler had (its cancelled handler will not finish it);
        ``message`` is None only when the actor crashed between messages. The default
        does nothing (the crash is logged by the runtime). Errors raised here are
        logged and ignored.
        """

    async def on_stop(self, exit: Exit) -> None:
        """Release resources when this life of the actor ends (any reason but a kill).

        Background tasks are still running and are cancelled right after. Errors
        raised here are logged and do not stop the rest of the shutdown.
        """

    def on_undelivered(self, message: M) -> None:
        """Take care of a message left in the mailbox when the actor stopped for good.

        Called once per message, on the last instance; pending asks are failed with
        `ActorStopped` instead. The default does nothing; the runtime logs the count.
        """

    def statistics(self) -> object | None:
        """Return a snapshot of what this actor is doing, or None (the default).

        Override it to return a frozen value (an attrs class): supervisors return a
        `SupervisorStatistics`, the pipeline's pool, circuit breaker and rate limiter
        their own. Others read it without an ask, as it is at that moment, through
        ``system.statistics(path)`` and in `ActorSnapshot.statistics`; it is only
        asked of a running instance. Keep it cheap and free of side effects; an
        error raised here is logged and reads as None.
        """
        return None

    # -- services for subclasses ---------------------------------------------------

    @property
    def ref(self) -> ActorRef[M]:
        """This actor's own reference (stable across restarts)."""
        return self._cell.ref

    @property
    def path(self) -> str:
        """This actor's path in the tree, such as ``/app/pool/worker-3``."""
        return self._cell.path

    @property
    def log(self) -> structlog.typing.FilteringBoundLogger:
        """A structlog logger bound with this actor's path."""
        return self._cell.log

    @property
    def mailbox_depth(self) -> int:
        """Messages waiting in this actor's mailbox, not counting the one in hand.

        For actors that gather work while more messages wait and send it on once
        their mailbox is empty (the pool sends outcomes back together this way).
        """
        return len(self._cell.mailbox.items)

    def _take_queued(self, kind: type[Any]) -> list[Any]:
        """Take the messages of type ``kind`` queued next in the mailbox, in order.

        For actors that handle a run of messages of one kind in one call (the pool
        books the outcomes its workers sent in one go): they are taken exactly as
        the message loop would hand them over, only without a loop turn each, and
        not while a control message waits.
        """
        return self._cell.mailbox.take_leading(kind)

    def find(self, path: str) -> ActorRef[Any]:
        """Return the reference of another actor by path.

        ``path`` is absolute (``/app/ledger``) or relative to this actor, with
        ``..`` for the parent (``../ledger`` is a sibling).

        Raises:
            ActorNotFound: No actor lives there now.
        """
        return self._cell.resolve(path).ref

    def stop(self) -> None:
        """End this actor normally after the current message.

        Whether it is restarted depends on its restart type: permanent children are,
        transient and temporary ones are not.
        """
        self._cell.request_self_stop()

    def watch(self, ref: ActorRef[Any]) -> None:
        """Be told when ``ref`` stops for good: a `Terminated` message arrives.

        Restarts are not reported, only the final stop. Watching an actor that has
        already stopped delivers the notice at once.
        """
        self._cell.watch(ref._cell)

    def unwatch(self, ref: ActorRef[Any]) -> None:
        """Stop watching ``ref``; a notice already queued is still delivered."""
        self._cell.unwatch(ref._cell)

    def start_task(self, func: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run ``func(*args)`` as a background task of this life of the actor.

        The task is cancelled when the actor stops or restarts. If it raises, the
        actor crashes with that error, like a failing handler. Tasks started from
        ``on_start`` begin once ``on_start`` has returned.

        Raises:
            ActorError: Called outside ``on_start``/``receive``.
        """
        self._cell.start_task(func, args)


@attrs.frozen
class Terminated:
    """Death-watch notice: a watched actor stopped for good.

    Attributes:
        ref: The actor that stopped.
        exit: How its last life ended.
    """

    ref: ActorRef[Any]
    exit: Exit


class Request(Generic[R_co]):
    """Base of a message whose reply has a known type: ``ask`` is then typed.

    ``await ref.ask(message)`` returns ``R_co`` for a ``Request[R_co]`` (as type
    checkers see it; the actor's `receive` still returns the reply at run time), and
    ``Any`` for other messages. Subclass it with an attrs class.

    Example:
        ```python
        @attrs.frozen
        class Balance(fa.Request[int]):
            pass  # the reply is an int


        cents = await account.ask(Balance())  # an int, for mypy too
        ```
    """

    __slots__ = ()


class Ask:
    """A request waiting for its reply (internal envelope of `ActorRef.ask`)."""

    __slots__ = ("error", "event", "message", "value")

    def __init__(self, message: object) -> None:
        self.message = message
        self.event = anyio.Event()
        self.value: Any = None
        self.error: BaseException | None = None

    def resolve(self, value: Any) -> None:
        """Deliver the reply (first answer wins)."""
        if not self.event.is_set():
            self.value = value
            self.event.set()

    def fail(self, error: BaseException) -> None:
        """Deliver an error instead of a reply (first answer wins)."""
        if not self.event.is_set():
            self.error = error
            self.event.set()


@final
class ActorRef(Generic[M]):
    """The address of an actor: send it messages, ask it questions, watch it stop.

    A reference stays valid across restarts of the actor behind it, and so does its
    mailbox. Once the actor has stopped for good, sending raises `ActorStopped`.
    """

    __slots__ = ("_cell", "_mailbox")

    def __init__(self, cell: Host) -> None:
        self._cell = cell
        self._mailbox = cell.mailbox

    @property
    def path(self) -> str:
        """The actor's path, such as ``/app/pool/worker-3``."""
        return self._cell.path

    @property
    def name(self) -> str:
        """The last segment of the path: the child id."""
        return self._cell.name

    @property
    def state(self) -> ActorState:
        """The actor's current state."""
        return self._cell.state

    async def tell(self, message: M) -> None:
        """Send ``message``, waiting while the mailbox is full (backpressure).

        Returns as soon as the message is queued; it does not yield to the event loop
        when there is room.

        Raises:
            ActorStopped: The actor has stopped for good (or is draining to stop).
        """
        mailbox = self._mailbox
        if mailbox.open and len(mailbox.items) < mailbox.capacity:
            mailbox.items.append(message)
            if mailbox.waiter is not None:
                mailbox.wake()
            return
        await mailbox.put(message)

    def tell_nowait(self, message: M) -> None:
        """Send ``message`` if there is room, without waiting.

        Raises:
            MailboxFull: The mailbox is at capacity; nothing was sent.
            ActorStopped: The actor has stopped for good.
        """
        mailbox = self._mailbox
        if mailbox.open and len(mailbox.items) < mailbox.capacity:  # as put_nowait, inline
            mailbox.items.append(message)
            if mailbox.waiter is not None:
                mailbox.wake()
            return
        mailbox.put_nowait(message)  # raises

    @overload
    async def ask(self, message: Request[R], *, timeout: float | None = 5.0) -> R: ...
    @overload
    async def ask(self, message: M, *, timeout: float | None = 5.0) -> Any: ...

    async def ask(self, message: M | Request[Any], *, timeout: float | None = 5.0) -> Any:
        """Send ``message`` and wait for the reply (the value `receive` returns).

        Args:
            message: The request; a `Request` types the reply.
            timeout: Seconds to wait for room and for the reply; None waits for ever.

        Raises:
            AskTimeout: No reply within ``timeout``.
            ActorCrashed: The actor crashed while handling the request (its handler
                or one of its background tasks raised).
            ActorStopped: The actor stopped before handling it.
        """
        request = Ask(message)
        with anyio.move_on_after(timeout) as scope:
            await self._mailbox.put(request)
            await request.event.wait()
        if scope.cancelled_caught:
            raise AskTimeout(f"no reply from {self.path} within {timeout} s")
        if request.error is not None:
            raise request.error
        return request.value

    async def wait_stopped(self) -> Exit:
        """Wait until the actor stops for good and return how its last life ended."""
        return await self._cell.wait_stopped()

    def retract(self, message: M) -> bool:
        """Take back ``message`` if it is still queued: the actor has not started it.

        ``message`` is the very object that was sent (compared by identity, not by
        equality), so only its sender can retract it. Returns True if it was taken
        out of the mailbox (the actor will never see it), False if the actor has
        already started it or it is not there. A sender blocked on the full mailbox
        gets the freed room. The pool uses this to move a delivery waiting behind a
        busy worker to one that went idle.
        """
        return self._mailbox.retract(message)

    def statistics(self) -> MailboxStatistics:
        """Return a snapshot of the mailbox (depth, capacity, waiting senders)."""
        return self._mailbox.statistics()

    def __repr__(self) -> str:
        return f"<ActorRef {self.path} {self._cell.state.value}>"
