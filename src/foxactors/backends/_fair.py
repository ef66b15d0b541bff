"""Fair shares across tenants: the shares (weights, limits) and deficit round robin.

A fair queue keeps one sub-queue per tenant and a ring of the tenants that have
ready work and room under their concurrency limit. `DeficitRoundRobin` is the pure
state machine that picks the next tenant: the head of the ring is served up to its
weight in a row, then goes to the back. Choosing costs O(1) whatever the number of
tenants: nothing is scanned, a tenant that ran dry or hit its limit leaves the ring
when it is met at the head and comes back (`activate`) when it has work and room
again. Every backend applies it: the memory backend in process, the Redis backend in
a Lua script over a list of active tenants (the same steps, see ``redis/lua``).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from typing import Any

import attrs

from foxactors._errors import ConfigurationError

TENANT_HEADER = "x-tenant"
"""The header that names a message's tenant; without it a message is the no-tenant's."""
NO_TENANT = ""
"""The sub-queue of messages without a tenant (a tenant name is never empty)."""
MAX_TENANT_LENGTH = 128
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")
TENANT_RULE = (
    f"a string of 1 to {MAX_TENANT_LENGTH} characters: letters, digits and . _ @ - (not first); "
    "no spaces, colons or braces, which the Redis store uses in its keys"
)
"""What a tenant name may be, in words (error messages say it)."""
MAX_WEIGHT = 1_000_000


def check_tenant(tenant: object) -> str:
    """Return ``tenant`` if it is a valid tenant name, or raise `ConfigurationError`."""
    if (
        not isinstance(tenant, str)
        or len(tenant) > MAX_TENANT_LENGTH
        or _TENANT.fullmatch(tenant) is None
    ):
        raise ConfigurationError(f"tenant must be {TENANT_RULE}; got {tenant!r}")
    return tenant


def _check_weight(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WEIGHT:
        raise ConfigurationError(
            f"{name} must be a whole number of job slots from 1 to {MAX_WEIGHT} "
            f"(a tenant that should never run gets no jobs, not weight 0); got {value!r}"
        )
    return value


def _check_limit(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an int >= 1 or None (no limit); got {value!r}")
    return value


def _tenants(name: str, value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{name} must be a mapping of tenant to value; got {value!r}")
    for tenant in value:
        if tenant != NO_TENANT:
            try:
                check_tenant(tenant)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{name}: {exc}") from None
    return dict(value)


def _weights(value: Mapping[str, int] | None) -> dict[str, int]:
    return _tenants("weights", value)


def _limits(value: Mapping[str, int | None] | None) -> dict[str, int | None]:
    return _tenants("limits", value)


@attrs.frozen
class FairShares:
    """How a fair queue shares its job slots across tenants.

    With backlogs, each tenant with ready work gets job slots in proportion to its
    weight; a tenant with a concurrency limit never has more deliveries out (across
    every worker process) than its limit.

    Attributes:
        weights: Weight per tenant (a whole number of job slots per round, >= 1);
            a tenant not named has ``default_weight``. Jobs without a tenant share
            the key ``""``.
        default_weight: The weight of tenants not in ``weights``.
        limit: Deliveries out at once per tenant, across all workers (None: no limit).
        limits: A limit per tenant, over ``limit``.
    """

    weights: Mapping[str, int] = attrs.field(factory=dict, converter=_weights)
    default_weight: int = 1
    limit: int | None = None
    limits: Mapping[str, int | None] = attrs.field(factory=dict, converter=_limits)

    def __attrs_post_init__(self) -> None:
        for tenant, weight in self.weights.items():
            _check_weight(f"weight of tenant {tenant!r}", weight)
        _check_weight("default_weight", self.default_weight)
        _check_limit("limit", self.limit)
        for tenant, limit in self.limits.items():
            _check_limit(f"limit of tenant {tenant!r}", limit)

    def weight_of(self, tenant: str) -> int:
        """The weight of ``tenant``."""
        return self.weights.get(tenant, self.default_weight)

    def limit_of(self, tenant: str) -> int | None:
        """The concurrency limit of ``tenant`` (None: none)."""
        return self.limits.get(tenant, self.limit) if self.limits else self.limit


def tenant_of(headers: Mapping[str, object]) -> str:
    """The tenant of a message with ``headers`` (`NO_TENANT` without one)."""
    tenant = headers.get(TENANT_HEADER)
    return tenant if isinstance(tenant, str) else NO_TENANT


class DeficitRoundRobin:
    """Deficit round robin over tenants, with unit cost per job: pure, no I/O.

    The caller keeps the tenants' sub-queues and their running counts; this keeps the
    ring. `choose` names the tenant to serve; after taking one job from it the caller
    reports `served` with whether that tenant can give another (work left and room
    under its limit). A tenant that gets work or room again is `activate`d; being in
    the ring twice is impossible.
    """

    __slots__ = ("_credit", "_ring", "_shares", "_unit")

    def __init__(self, shares: FairShares) -> None:
        self._shares = shares
        self._unit = _unit(shares)
        self._ring: deque[str] = deque()
        self._credit: dict[str, int] = {}  # tenants in the ring -> slots left this turn

    def __len__(self) -> int:
        return len(self._ring)

    def __contains__(self, tenant: object) -> bool:
        return tenant in self._credit

    def reshare(self, shares: FairShares) -> None:
        """Use ``shares`` from each tenant's next turn on."""
        self._shares = shares
        self._unit = _unit(shares)
        if self._unit:  # turns of one count nothing: no leftover for a later weighted turn
            for tenant in self._credit:
                self._credit[tenant] = 0

    def activate(self, tenant: str) -> None:
        """``tenant`` has work and room: join the back of the ring unless in it."""
        if tenant not in self._credit:
            self._credit[tenant] = 0
            self._ring.append(tenant)

    def choose(self) -> str | None:
        """The tenant to serve next (the head of the ring), or None if none is active."""
        if not self._ring:
            return None
        head = self._ring[0]
        if not self._unit and self._credit[head] <= 0:  # its turn begins: a quantum
            self._credit[head] = self._shares.weight_of(head)
        return head

    def served(self, tenant: str, *, more: bool) -> None:
        """One job of ``tenant`` (the head) went out; ``more``: it can give another."""
        if not more:
            self.drop()
            return
        if self._unit:  # every turn is one job: nothing to count
            self._ring.rotate(-1)
            return
        credit = self._credit[tenant] - 1
        if credit <= 0:  # its quantum is spent: to the back, a fresh one next time
            self._credit[tenant] = 0
            self._ring.rotate(-1)
        else:
            self._credit[tenant] = credit

    def drop(self) -> None:
        """The head has nothing to give (ran dry or at its limit): out of the ring."""
        del self._credit[self._ring.popleft()]


def _unit(shares: FairShares) -> bool:
    """Whether every tenant's turn is one job (no weights of their own, a default of 1)."""
    return not shares.weights and shares.default_weight == 1
