"""`QueueDepth`: one job queue's depth, as the job store and the broker each count it.

The store counts jobs by state and by tenant (pending, scheduled, running, retrying,
dead...): what operators mean by "how far behind are we". The broker counts messages
(ready, delayed, in flight, dead): what workers will be handed. The two move together
but are not the same figure (a job record is written before its message is published,
a retrying job's message waits in the broker's delay), so both are shown. Brokers do
not key messages by tenant: the broker's view is always the whole queue's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from foxactors.backends import QueueStatistics

from ._record import JobState

#: The broker's states, in the order they are shown.
BROKER_STATES = ("ready", "delayed", "in_flight", "dead")


@attrs.frozen
class QueueDepth:
    """One queue's depth: its jobs by state in the store, its messages in the broker.

    Attributes:
        queue: The queue counted.
        tenant: The tenant whose jobs ``jobs`` counts (None: every tenant's).
        jobs: Jobs in each state (every `JobState`, zeros included), from the store.
        broker: The broker's counts of the queue's messages (every tenant's: brokers
            do not key messages by tenant), or None when they were not asked for.
    """

    queue: str
    tenant: str | None
    jobs: Mapping[JobState, int]
    broker: QueueStatistics | None

    @property
    def ready(self) -> int:
        """Jobs waiting for a worker (`JobState.PENDING`)."""
        return self.jobs.get(JobState.PENDING, 0)

    @property
    def scheduled(self) -> int:
        """Jobs enqueued to run later (`JobState.SCHEDULED`)."""
        return self.jobs.get(JobState.SCHEDULED, 0)

    @property
    def running(self) -> int:
        """Jobs a worker runs now (`JobState.RUNNING`)."""
        return self.jobs.get(JobState.RUNNING, 0)

    @property
    def retrying(self) -> int:
        """Jobs waiting to run again after a failed attempt (`JobState.RETRYING`)."""
        return self.jobs.get(JobState.RETRYING, 0)

    @property
    def dead(self) -> int:
        """Jobs that failed for good (`JobState.DEAD`)."""
        return self.jobs.get(JobState.DEAD, 0)

    def to_dict(self) -> dict[str, Any]:
        """This depth as plain JSON values: ``queue``, ``tenant``, ``jobs``, ``broker``.

        ``jobs`` maps each state's value to its count; ``broker`` the four broker
        states to theirs (a broker's extra figures left out), or None.
        """
        return {
            "queue": self.queue,
            "tenant": self.tenant,
            "jobs": {state.value: self.jobs.get(state, 0) for state in JobState},
            "broker": broker_counts(self.broker),
        }


def broker_counts(stats: QueueStatistics | None) -> dict[str, int] | None:
    """The four broker states of ``stats`` as ``{state: count}`` (None stays None)."""
    if stats is None:
        return None
    return {state: int(getattr(stats, state)) for state in BROKER_STATES}
