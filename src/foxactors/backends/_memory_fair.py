"""The memory backend's fair queues: a sub-queue per tenant, deficit round robin."""

from __future__ import annotations

from collections.abc import Collection

from ._fair import DeficitRoundRobin, FairShares, tenant_of
from ._memory_queue import Entry, Ready


class FairReady(Ready):
    """Ready entries of a fair queue: per tenant by priority, tenants by weighted turns.

    Takes the place of `Ready` in a queue declared fair; ``count`` and `push` are
    the same, sources call `take` (it may find nothing to give: every tenant with
    work is at its concurrency limit, or none is one the source serves).
    """

    __slots__ = ("_drr", "_limited", "_running", "_served", "_subqueues", "shares")

    def __init__(self, shares: FairShares) -> None:
        super().__init__()  # its own lanes stay empty: the sub-queues hold the entries
        self.shares = shares
        self._subqueues: dict[str, Ready] = {}
        self._running: dict[str, int] = {}  # deliveries out per tenant (with limits only)
        self._served: dict[str, int] = {}  # jobs given to dedicated sources, per tenant
        self._drr = DeficitRoundRobin(shares)
        self._limited = _limited(shares)

    def _room(self, tenant: str) -> bool:
        if not self._limited:  # the common case costs no count at all
            return True
        limit = self.shares.limit_of(tenant)
        return limit is None or self._running.get(tenant, 0) < limit

    def push(self, entry: Entry, front: bool) -> None:
        tenant = tenant_of(entry.properties.headers)
        lane = self._subqueues.get(tenant)
        if lane is None:
            lane = self._subqueues[tenant] = Ready()
        lane.push(entry, front)
        self.count += 1
        if self._room(tenant):
            self._drr.activate(tenant)

    def _pop(self, tenant: str, lane: Ready) -> Entry:
        entry = lane.pop()
        self.count -= 1
        if not lane.count:
            del self._subqueues[tenant]
        if self._limited:
            self._running[tenant] = self._running.get(tenant, 0) + 1
        return entry

    def reshare(self, shares: FairShares) -> None:
        """Apply new shares from the next turn on.

        Limits count the deliveries taken since the queue was first declared with one.
        """
        self.shares = shares
        self._limited = self._limited or _limited(shares)
        self._drr.reshare(shares)
        for tenant in self._subqueues:
            if self._room(tenant):
                self._drr.activate(tenant)  # a raised limit may free a waiting tenant

    def pop(self) -> Entry:
        """The next entry by weighted turns (`take`); only when one can be taken."""
        entry = self.take(None)
        if entry is None:
            raise IndexError("no tenant with ready entries has room under its limit")
        return entry

    def take(self, tenants: Collection[str] | None) -> Entry | None:
        """The next entry by weighted turns, from ``tenants`` only if given; or None."""
        if tenants is not None:
            return self._take_among(tenants)
        drr = self._drr
        while (tenant := drr.choose()) is not None:
            lane = self._subqueues.get(tenant)
            if lane is None or not self._room(tenant):
                drr.drop()  # ran dry through a dedicated source, or filled its limit
                continue
            entry = self._pop(tenant, lane)
            drr.served(tenant, more=lane.count > 0 and self._room(tenant))  # an empty lane left
            return entry
        return None

    def _take_among(self, tenants: Collection[str]) -> Entry | None:
        # A dedicated source serves a few tenants named in code: looking at each is
        # cheap, and the shared ring still rotates the others for the other sources.
        best: tuple[float, str, Ready] | None = None
        for tenant in tenants:
            lane = self._subqueues.get(tenant)
            if lane is not None and self._room(tenant):
                # the one least served relative to its weight goes first
                share = self._served.get(tenant, 0) / self.shares.weight_of(tenant)
                if best is None or share < best[0]:
                    best = (share, tenant, lane)
        if best is None:
            return None
        tenant = best[1]
        self._served[tenant] = self._served.get(tenant, 0) + 1
        return self._pop(tenant, best[2])

    def release(self, entry: Entry) -> bool:
        """A delivery of ``entry`` was settled or given back; True if a tenant has room again."""
        if not self._limited:
            return False
        tenant = tenant_of(entry.properties.headers)
        running = self._running.get(tenant, 0) - 1
        if running > 0:
            self._running[tenant] = running
        else:
            self._running.pop(tenant, None)
        if tenant in self._subqueues and tenant not in self._drr and self._room(tenant):
            self._drr.activate(tenant)
            return True
        return False

    def running(self, tenant: str) -> int:
        """Deliveries of ``tenant`` out now."""
        return self._running.get(tenant, 0)

    def tenants(self) -> dict[str, int]:
        """Ready entries per tenant (`NO_TENANT` for those without one)."""
        return {tenant: lane.count for tenant, lane in self._subqueues.items()}


def _limited(shares: FairShares) -> bool:
    return shares.limit is not None or any(v is not None for v in shares.limits.values())
