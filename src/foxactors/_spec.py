"""How a supervisor is told to run a child: `ChildSpec` and the option enums."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from ._errors import ConfigurationError
from ._policy import Backoff
from ._validate import coerce_enum, require_int

if TYPE_CHECKING:
    from ._actor import Actor


class Restart(enum.Enum):
    """When a supervisor restarts a child that ended (OTP restart types)."""

    PERMANENT = "permanent"
    """Always, whatever the reason (the default)."""
    TRANSIENT = "transient"
    """Only after a crash or a kill; a normal exit ends it for good."""
    TEMPORARY = "temporary"
    """Never; not even when a sibling's crash restarts the group."""


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them crashes."""

    ONE_FOR_ONE = "one_for_one"
    """Only the child that crashed."""
    ONE_FOR_ALL = "one_for_all"
    """All children: the others are stopped (in reverse order), then all restarted."""
    REST_FOR_ONE = "rest_for_one"
    """The child and every child started after it."""


class AutoShutdown(enum.Enum):
    """When the exit of *significant* children shuts their supervisor down (OTP 24)."""

    NEVER = "never"
    """Significant children are not allowed; the supervisor runs until stopped."""
    ANY_SIGNIFICANT = "any_significant"
    """As soon as one significant child ends for good."""
    ALL_SIGNIFICANT = "all_significant"
    """Once every significant child has ended for good."""


def _valid_id(value: object) -> bool:
    return isinstance(value, str) and bool(value) and "/" not in value and value.strip() == value


@attrs.frozen(init=False)
class ChildSpec:
    """How a supervisor starts, restarts and stops one child.

    Validated when built: a bad value raises `ConfigurationError` naming the child.

    Attributes:
        id: Name of the child, unique among its siblings; the last segment of its
            path (``/app/pool/worker-3``). No ``/``, no surrounding spaces.
        factory: Zero-argument callable returning a fresh `Actor` (an Actor subclass
            works). Called again for every restart.
        restart: Restart type (default ``Restart.PERMANENT``); strings accepted.
        shutdown: Seconds a stop may take before the child is cancelled; None waits
            for ever (the default for supervisors). Default 5.
        significant: With the parent's ``auto_shutdown``, this child ending for good
            shuts the parent down. Only transient or temporary children may be.
        backoff: Restart delay policy for this child (default ``Backoff()``).
        mailbox_size: Capacity of the child's mailbox (default 1000).
    """

    id: str
    factory: Callable[[], Actor[Any]]
    restart: Restart
    shutdown: float | None
    significant: bool
    backoff: Backoff
    mailbox_size: int

    def __init__(
        self,
        id: str,
        factory: Callable[[], Actor[Any]],
        *,
        restart: Restart | str = Restart.PERMANENT,
        shutdown: float | None = 5.0,
        significant: bool = False,
        backoff: Backoff | None = None,
        mailbox_size: int = 1000,
    ) -> None:
        where = f"child {id!r}"
        self.__attrs_init__(
            id,
            factory,
            coerce_enum(Restart, restart, f"{where}: restart"),
            shutdown,
            significant,
            backoff if backoff is not None else Backoff(),
            mailbox_size,
        )

    def __attrs_post_init__(self) -> None:
        if not _valid_id(self.id):
            raise ConfigurationError(
                f"child id must be a non-empty string without '/' or surrounding spaces, "
                f"got {self.id!r}"
            )
        where = f"child {self.id!r}"
        if not callable(self.factory):
            raise ConfigurationError(
                f"{where}: factory must be a callable returning an Actor (for example the "
                f"Actor subclass itself, or functools.partial(MyActor, arg)), "
                f"got {self.factory!r}"
            )
        if self.shutdown is not None and (
            not isinstance(self.shutdown, int | float)
            or not math.isfinite(self.shutdown)
            or self.shutdown < 0
        ):
            raise ConfigurationError(
                f"{where}: shutdown must be seconds >= 0 or None (wait for ever), "
                f"got {self.shutdown!r}"
            )
        if self.significant and self.restart is Restart.PERMANENT:
            raise ConfigurationError(
                f"{where}: a permanent child cannot be significant (it is always "
                "restarted); make it transient or temporary"
            )
        if not isinstance(self.backoff, Backoff):
            raise ConfigurationError(
                f"{where}: backoff must be a Backoff, such as Backoff(min_delay=0.5) or "
                f"Backoff.none(), got {self.backoff!r}"
            )
        require_int("mailbox_size", self.mailbox_size, 1, f"{where}: ")
