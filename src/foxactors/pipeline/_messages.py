"""Control messages between the pipeline's actors, declared once, as types.

The work itself travels as `Delivery` and `Outcome` (and the records of `_work`);
everything else one pipeline actor tells or asks another is here: frozen, slotted
records matched by type, never bare strings. A request whose reply has a known type
is a `Request`, so ``await ref.ask(STOP_INTAKE)`` is typed as the reply. Model:
pykka's ``messages`` module.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Final

import attrs

from foxactors._actor import ActorRef, Request
from foxactors._message import Delivery
from foxactors.backends import Source

from ._work import Batch

if TYPE_CHECKING:  # _breaker imports this module: at run time this would be a cycle
    from ._breaker import Breaker  # noqa: F401 - named in a base class, as a string


# -- draining a pipeline (its supervisor asks) ----------------------------------------


@attrs.frozen
class StopIntake(Request[Source]):
    """To the consumer: stop pulling deliveries; the reply is its source.

    The pipeline's supervisor then waits on the source until in-flight deliveries
    are settled (``source.wait_settled``).
    """


@attrs.frozen
class ReturnPending(Request[int]):
    """To the pool: requeue every delivery no worker has started; the reply is how many."""


@attrs.frozen
class ReturnHeld(Request[int]):
    """To a stage: return the deliveries you hold that have not gone on; the reply is how many.

    The stage hands them back as REQUEUE outcomes through the outcome route (see
    `Stage.on_drain`), so the consumer settles them while its source is still open.
    The drain asks every stage, outermost first, each after the one above it has
    answered: what a stage forwarded before answering is already in the mailbox of
    the next one when that one is asked.
    """


STOP_INTAKE: Final = StopIntake()
RETURN_PENDING: Final = ReturnPending()
RETURN_HELD: Final = ReturnHeld()


# -- the pool and its workers -----------------------------------------------------------


@attrs.frozen
class Retire:
    """Pool to worker: ask to be recycled once you have finished what you hold."""


RETIRE: Final = Retire()


@attrs.frozen
class Recycle:
    """Worker to pool: replace my instance with a fresh one (``max_messages`` reached).

    Attributes:
        worker: The worker's reference.
    """

    worker: ActorRef[Any]


@attrs.frozen
class Handback:
    """Retiring worker to pool: work it has not started, for another worker.

    Attributes:
        work: The delivery or batch handed back.
    """

    work: Delivery | Batch


# -- stages' timers (each stage tells itself) -------------------------------------------


@attrs.frozen
class ReleaseDue:
    """Rate-limit stage to itself: a token is due; release what may go now."""


RELEASE_DUE: Final = ReleaseDue()


@attrs.frozen
class FlushDue:
    """Batch stage to itself: the interval of the batch numbered ``generation`` is over.

    Attributes:
        generation: The batch the timer was armed for; a later batch ignores it.
    """

    generation: int


# -- deprecated -------------------------------------------------------------------------


@attrs.frozen
class CurrentBreaker(Request["Breaker"]):
    """To the circuit breaker stage: the reply is its current `Breaker`.

    What the deprecated ``BREAKER_STATE`` is; it goes with it in the next release.
    """


CURRENT_BREAKER: Final = CurrentBreaker()


def deprecated_breaker_state(module: str) -> CurrentBreaker:
    """``BREAKER_STATE`` looked up in ``module``: warn, and return it for one more release."""
    warnings.warn(
        f"{module}.BREAKER_STATE is deprecated: read the breaker stage's statistics "
        "without an ask, system.statistics(path) (a BreakerStatistics with the state, "
        "the failures and the next probe), or ActorSnapshot.statistics",
        DeprecationWarning,
        stacklevel=3,  # the code that looked it up, past __getattr__
    )
    return CURRENT_BREAKER
