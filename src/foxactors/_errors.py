"""The exception hierarchy: one root, shallow branches.

Every exception says in its docstring when it is raised and what to do about it.
"""

from __future__ import annotations

from anyio import WouldBlock


class FoxactorsError(Exception):
    """Root of every error foxactors raises on purpose.

    Catch it to handle any runtime failure at once; catch a branch to be specific.
    """


class ConfigurationError(FoxactorsError, ValueError):
    """A specification or option is invalid.

    Raised when a tree, a child spec, a policy or a backend is built, and by a call
    given a bad argument (a delay, a queue name, a header); a payload the codec cannot
    encode raises `EncodeError` instead. The message names the offending value and how
    to fix it; correct the call and try again.
    """


class ActorError(FoxactorsError):
    """Branch for errors about a single actor (its mailbox, its life, its replies)."""


class ActorStopped(ActorError):
    """The target actor has stopped for good, or is stopping and refuses new messages.

    Raised by ``tell``/``tell_nowait``/``ask`` on a stopped actor, and by a pending
    ``ask`` whose request was still queued when the actor stopped. The message was not
    delivered: send it elsewhere, or give up.
    """


class MailboxFull(ActorError, WouldBlock):
    """``tell_nowait`` found the mailbox at capacity.

    Nothing was enqueued. Use ``await ref.tell(...)`` to wait for room (backpressure),
    or drop or redirect the message yourself.
    """


class ActorCrashed(ActorError):
    """The actor crashed while handling an ``ask``; the original error is ``__cause__``.

    Its handler raised, or one of its background tasks did while the handler was
    awaiting.

    The actor itself goes to its supervisor's failure policy (usually a restart). Decide
    whether to retry the request once it is back.
    """


class AskTimeout(ActorError, TimeoutError):
    """No reply arrived within the ``ask`` timeout.

    The request may still be handled later; its reply is then discarded. Raise the
    timeout, or make the request idempotent and retry.
    """


class SupervisionError(FoxactorsError):
    """Branch for errors raised by supervisors about the children they manage."""


class StartError(SupervisionError):
    """A child failed to start; the message names the child, ``__cause__`` the error.

    When the tree starts, children already started are stopped (in reverse order)
    and the start of the whole tree fails. Fix the child's start hook or factory.
    """


class RestartIntensityExceeded(SupervisionError):
    """A supervisor saw more than ``max_restarts`` restarts within ``within`` seconds.

    It has stopped all its children and failed, so that its own parent decides
    (escalation). At the root, the actor system fails with this error. The child's
    last error is ``__cause__``: fix what keeps crashing, or widen the intensity.
    """


class ActorNotFound(ActorError, LookupError):
    """No actor lives at the path given to ``ActorSystem.ref``.

    Check the spelling against ``system.snapshot()``; the actor may also have stopped
    for good (temporary children, removed dynamic children).
    """


class SettlementError(FoxactorsError):
    """A delivery's ack handle was used wrongly.

    Raised by a second settlement of the same handle (ack, requeue, retry,
    dead-letter): nothing was applied twice. Settle each delivery exactly once; in
    the default stack the runtime settles from the outcome, so a handler settling by
    hand must say so (manual mode).
    """


class CodecError(FoxactorsError):
    """Branch for a codec that cannot turn a payload into a body, or a body back."""


class EncodeError(CodecError, ValueError):
    """A payload could not be encoded: not serialisable, or larger than the codec allows.

    Raised by ``publish`` at run time, before anything is sent: nothing was published.
    The message names the value and what would work (convert it to plain data, send a
    reference to a large payload, or configure the codec); fix the payload or the codec
    and publish again.
    """


class DecodeError(CodecError):
    """A message body could not be decoded, or is larger than the codec allows.

    Raised inside the pipeline, never to the caller: the message goes to the
    dead-letter queue with this error as its reason. Fix the producer.
    """


class BackendError(FoxactorsError):
    """A message backend failed or was used wrongly (unknown name, missing extra).

    Connection failures crash the consumer actor, and its supervisor reconnects.
    An unknown backend or a missing extra is a configuration problem: the message
    says what to install or name.
    """
