"""`Intake`: the supervisor of a broker connection and the consumer that uses it."""

from __future__ import annotations

from foxactors._supervisor import Supervisor
from foxactors.backends import BrokerUnreachable


class Intake(Supervisor):
    """Supervises a broker's connection actor, the consumer and its helpers, rest_for_one.

    A lost connection crashes the connection actor; the actors after it are rebuilt
    on the new connection, with the reconnect backoff. A broker that cannot be
    reached when the pipeline starts (`BrokerUnreachable`: a worker that starts
    before its broker, in docker-compose or Kubernetes) is handled the same way:
    the start succeeds, the rest of the pipeline is up, and the connection is tried
    again with the backoff until the broker answers, or until the restart intensity
    (``give_up_after``) is exceeded: then the pipeline fails. Any other start
    failure, refused credentials among them, still fails the start at once. Each
    attempt logs one line, the backend's ``<broker>.connect_failed``; the
    supervisor's own events for it are at debug level.
    """

    def start_failure_is_transient(self, error: Exception) -> bool:
        """A broker that cannot be reached yet: try again with the reconnect backoff."""
        return isinstance(error, BrokerUnreachable)

    def _logged_where_raised(self, error: BaseException | None) -> bool:
        """A broker that cannot be reached was logged by the backend, in one line."""
        return isinstance(error, BrokerUnreachable)
