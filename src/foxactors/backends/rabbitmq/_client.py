"""Which aio-pika errors mean what: a lost connection, a refusal, an unreachable broker."""

from __future__ import annotations

import ssl

import aiormq

CONNECTION_ERRORS = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
)
# The broker answered a connect, and said no: trying again would not help.
REFUSALS = (
    aiormq.exceptions.AuthenticationError,
    aiormq.exceptions.ProbableAuthenticationError,
    aiormq.exceptions.ConnectionNotAllowed,  # no access to the vhost
    aiormq.exceptions.IncompatibleProtocolError,  # not an AMQP 0-9-1 server
    ssl.SSLCertVerificationError,
)


def unreachable(exc: BaseException) -> bool:
    """Whether a failed connect is worth trying again (the broker was not reached).

    Network errors and timeouts are; refusals are not, nor anything outside the
    network (an unknown vhost shows as a protocol error, for instance).
    """
    return isinstance(exc, OSError | TimeoutError) and not isinstance(exc, REFUSALS)


def why(error: BaseException | None, default: str) -> str:
    """Why a connection or channel closed: the error's message, else its type."""
    if error is None:
        return default
    return str(error) or type(error).__name__
