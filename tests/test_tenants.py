"""Tenants on the memory backend: isolation, fair shares, limits, dedicated workers.

The deficit round robin is checked as a pure state machine first, then through the
memory backend's sources (several consumers sharing one fair queue), then end to end
with job worker apps in virtual time, on asyncio and trio.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import foxactors as fa
from foxactors.backends import FairQueues, FairShares
from foxactors.backends._fair import DeficitRoundRobin
from foxactors.jobs import JobContext, JobNotFound, JobQueue, JobState, TenantJobs
from foxactors.testing import anyio_backend_options

from .helpers import props, tenant_of

pytestmark = pytest.mark.anyio

QUEUE = "jobs"
TENANTS = ["acme", "globex", "initech", "umbrella"]


# -- the pure state machine ------------------------------------------------------------


def drain(drr: DeficitRoundRobin, backlog: dict[str, int], steps: int) -> list[str]:
    """Serve ``steps`` jobs from ``backlog`` (tenant -> jobs left) by ``drr``'s turns."""
    for tenant, left in backlog.items():
        if left:
            drr.activate(tenant)
    served = []
    for _ in range(steps):
        chosen = drr.choose()
        if chosen is None:
            break
        backlog[chosen] -= 1
        served.append(chosen)
        drr.served(chosen, more=backlog[chosen] > 0)
    return served


weights_st = st.dictionaries(st.sampled_from(TENANTS), st.integers(1, 5), min_size=1)


@settings(max_examples=60, deadline=None)
@given(weights=weights_st, rounds=st.integers(1, 20))
def test_with_backlogs_each_tenant_gets_exactly_its_weight_per_round(
    weights: dict[str, int], rounds: int
) -> None:
    drr = DeficitRoundRobin(FairShares(weights=weights))
    per_round = sum(weights.values())
    served = drain(drr, dict.fromkeys(weights, 10_000), rounds * per_round)
    assert Counter(served) == {tenant: weight * rounds for tenant, weight in weights.items()}


@settings(max_examples=60, deadline=None)
@given(weights=weights_st, before=st.integers(0, 30), weight=st.integers(1, 5))
def test_a_tenant_that_gets_work_waits_at_most_one_turn_of_each_other_tenant(
    weights: dict[str, int], before: int, weight: int
) -> None:
    late = "latecomer"
    drr = DeficitRoundRobin(FairShares(weights={**weights, late: weight}))
    backlog = dict.fromkeys(weights, 10_000)
    drain(drr, backlog, before)  # the others are part-way through their turns
    backlog[late] = 1
    drr.activate(late)
    served = drain(drr, backlog, 10_000)
    # ahead of it: at most the rest of the current turn and one turn of every other
    assert served.index(late) <= sum(weights.values())


def test_a_turn_cut_short_by_unit_shares_leaves_no_credit_for_later_weights() -> None:
    drr = DeficitRoundRobin(FairShares(weights={"a": 5}))
    drr.activate("a")
    drr.activate("b")
    for _ in range(2):  # two of a's five
        assert drr.choose() == "a"
        drr.served("a", more=True)
    drr.reshare(FairShares())  # every turn one job now
    drr.reshare(FairShares(weights={"a": 1}))  # and weighted again, a's weight one
    assert drain(drr, {"a": 10, "b": 10}, 4) == ["a", "b", "a", "b"]


def test_choosing_costs_the_same_with_ten_thousand_tenants() -> None:
    drr = DeficitRoundRobin(FairShares())
    backlog = {f"t{n}": 2 for n in range(10_000)}
    served = drain(drr, backlog, 20_000)
    # each tenant once per round, in the order they came: a ring, nothing scanned
    assert served[:10_000] == list(backlog)
    assert served[10_000:] == list(backlog)
    assert drr.choose() is None


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"default_weight": 0}, "default_weight must be a whole number .* got 0"),
        ({"default_weight": -2}, "default_weight .* got -2"),
        ({"default_weight": 1.5}, "default_weight .* got 1.5"),
        ({"default_weight": True}, "default_weight .* got True"),
        ({"weights": {"acme": 0}}, "weight of tenant 'acme' .* got 0"),
        ({"weights": {"a b": 1}}, "weights: tenant must be .* got 'a b'"),
        ({"weights": [("acme", 1)]}, "weights must be a mapping"),
        ({"limit": 0}, "limit must be an int >= 1 or None .* got 0"),
        ({"limits": {"acme": -1}}, "limit of tenant 'acme' .* got -1"),
    ],
)
def test_bad_shares_are_refused_by_name(options: dict[str, Any], words: str) -> None:
    with pytest.raises(fa.ConfigurationError, match=words):
        FairShares(**options)


BAD_TENANTS = ["", "a" * 129, "a b", "acme:eu", "{acme}", "acme\x00", "-acme", "Zoë", 7]


async def test_bad_tenant_names_are_refused_at_enqueue_and_nothing_is_kept() -> None:
    jobs = JobQueue(fa.MemoryBackend(), queue=QUEUE)

    @jobs.task
    async def send(to: str) -> None: ...

    for tenant in BAD_TENANTS:
        with pytest.raises(fa.ConfigurationError, match="tenant must be a string of 1 to 128"):
            await send.options(tenant=tenant).enqueue("ada")  # type: ignore[arg-type]
        with pytest.raises(fa.ConfigurationError, match="tenant must be") as caught:
            jobs.for_tenant(tenant)  # type: ignore[arg-type]
        assert repr(tenant) in str(caught.value)
    assert sum((await jobs.counts()).values()) == 0
    assert fa.MemoryBackend().queue_statistics(QUEUE).ready == 0
    ok = await send.options(tenant="acme-eu_1.x@corp").enqueue("ada")
    assert (await ok.status()).tenant == "acme-eu_1.x@corp"


async def test_a_dedicated_worker_needs_a_fair_queue_and_good_tenants() -> None:
    jobs = JobQueue(fa.MemoryBackend(), queue=QUEUE)

    @jobs.task
    async def send(to: str) -> None: ...

    with pytest.raises(fa.ConfigurationError, match="queue 'jobs' is not fair"):
        jobs.worker(tenants={"acme"})
    jobs.share_fairly()
    with pytest.raises(fa.ConfigurationError, match=r"tenant must be .* got 'a b'"):
        jobs.worker(tenants={"a b"})
    with pytest.raises(fa.ConfigurationError, match="non-empty collection"):
        jobs.worker(tenants="acme")
    with pytest.raises(fa.ConfigurationError, match="weight of tenant 'acme'"):
        jobs.share_fairly(weights={"acme": 0})
    jobs.worker(tenants={"acme"})  # fine now


# -- isolation -------------------------------------------------------------------------


async def test_a_tenant_view_never_answers_with_another_tenants_job() -> None:
    jobs = JobQueue(fa.MemoryBackend(), queue=QUEUE)

    @jobs.task
    async def send(to: str) -> str:
        return f"sent to {to}"

    acme, globex = jobs.for_tenant("acme"), jobs.for_tenant("globex")
    assert isinstance(acme, TenantJobs)
    mine = await acme.task(send).enqueue("ada")
    theirs = await globex.enqueue("send", {"to": "bob"})
    assert (await acme.get(mine.id)).tenant == "acme"
    for call in (
        lambda: acme.get(theirs.id),
        lambda: acme.cancel(theirs.id),
        lambda: acme.retry(theirs.id),
        lambda: acme.result(theirs.id, timeout=1),
        lambda: acme.handle(theirs.id).status(),
    ):
        with pytest.raises(JobNotFound, match="for tenant 'acme'") as caught:
            await call()
        assert "bob" not in str(caught.value)
    assert [r.id for r in (await acme.list()).jobs] == [mine.id]
    assert (await acme.counts())[JobState.PENDING] == 1
    assert (await jobs.counts())[JobState.PENDING] == 2  # the operator sees both
    assert (await globex.get(theirs.id)).state is JobState.PENDING  # untouched
    with pytest.raises(fa.ConfigurationError, match="for tenant 'acme' only"):
        await acme.enqueue("send", {"to": "eve"}, tenant="globex")


async def test_idempotency_keys_are_each_tenants_own() -> None:
    jobs = JobQueue(fa.MemoryBackend(), queue=QUEUE)

    @jobs.task
    async def send(to: str) -> None: ...

    acme, globex = jobs.for_tenant("acme"), jobs.for_tenant("globex")
    first = await acme.task(send, key="daily").enqueue("ada")
    again = await acme.task(send, key="daily").enqueue("ada")
    other = await globex.task(send, key="daily").enqueue("ada")
    assert (first.created, again.created, again.id) == (True, False, first.id)
    assert other.created
    assert other.id != first.id


# -- fair shares through the memory backend ---------------------------------------------


async def fair_backend(shares: FairShares) -> fa.MemoryBackend:
    backend = fa.MemoryBackend()
    assert isinstance(backend, FairQueues)
    backend.share_fairly(QUEUE, shares)
    return backend


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
@settings(max_examples=30, deadline=None)
@given(
    backlogs=st.dictionaries(st.sampled_from(TENANTS), st.integers(1, 40), min_size=1),
    weights=st.dictionaries(st.sampled_from(TENANTS), st.integers(1, 4)),
    late_at=st.integers(0, 60),
)
def test_a_tenant_with_work_waits_at_most_one_turn_of_each_tenant_with_a_backlog(
    loop: str,
    backlogs: dict[str, int],
    weights: dict[str, int],
    late_at: int,
) -> None:
    shares = FairShares(weights=weights)

    async def run() -> None:
        backend = await fair_backend(shares)
        for tenant, count in backlogs.items():
            for n in range(count):
                await backend.publish(QUEUE, n, properties=props(tenant))
        source = await backend.open_source(QUEUE, prefetch=1)
        order: list[str] = []
        left = sum(backlogs.values()) + 1
        while left:
            if len(order) == late_at or (late_at > len(order) and left == 1):
                await backend.publish(QUEUE, "late", properties=props(None))
            (delivery,) = await source.receive(1)
            order.append(tenant_of(delivery))
            delivery.handle.ack()
            left -= 1
        late = order.index("")
        bound = sum(shares.weight_of(t) for t in backlogs)
        assert late - min(late_at, late) <= bound
        assert Counter(order) == {**backlogs, "": 1}  # nothing lost, nothing twice
        await source.close()

    name, options = anyio_backend_options(loop)
    anyio.run(run, backend=name, backend_options=options)


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
@settings(max_examples=30, deadline=None)
@given(
    limit=st.integers(1, 3),
    jobs_per_tenant=st.integers(1, 8),
    steps=st.lists(st.tuples(st.integers(0, 1), st.booleans()), min_size=1, max_size=120),
)
def test_no_tenant_ever_has_more_out_than_its_limit_across_two_consumers(
    loop: str,
    limit: int,
    jobs_per_tenant: int,
    steps: list[tuple[int, bool]],
) -> None:
    async def run() -> None:
        backend = await fair_backend(FairShares(limit=limit))
        for tenant in TENANTS[:3]:
            for n in range(jobs_per_tenant):
                await backend.publish(QUEUE, n, properties=props(tenant))
        sources = [await backend.open_source(QUEUE, prefetch=4) for _ in range(2)]
        held: list[list[fa.Delivery]] = [[], []]
        done = 0

        def out() -> Counter[str]:
            return Counter(tenant_of(d) for both in held for d in both)

        async def take(which: int) -> None:
            with anyio.move_on_after(0.01):  # virtual: nothing more for it is a timeout
                held[which].extend(await sources[which].receive(4))

        for which, settle in [*steps, *[(n % 2, True) for n in range(200)]]:
            if settle and held[which]:
                held[which].pop(0).handle.ack()
                done += 1
            else:
                await take(which)
            assert max(out().values(), default=0) <= limit
            if done == 3 * jobs_per_tenant:
                break
        assert done == 3 * jobs_per_tenant  # and the limit never held anything forever
        for source in sources:
            await source.close()

    name, options = anyio_backend_options(loop)
    anyio.run(run, backend=name, backend_options=options)


async def test_a_dedicated_source_takes_only_its_tenants_and_gives_back_on_close() -> None:
    backend = await fair_backend(FairShares())
    for tenant in [*TENANTS, None]:
        await backend.publish(QUEUE, tenant, properties=props(tenant))
    source = await backend.for_tenants({"globex", "umbrella"}).open_source(QUEUE, prefetch=10)
    got = await source.receive(10)
    assert sorted(tenant_of(d) for d in got) == ["globex", "umbrella"]
    with anyio.move_on_after(1):
        await source.receive(10)
        pytest.fail("a dedicated source took another tenant's message")
    await source.close()  # unsettled: back to their tenants' sub-queues
    everyone = await backend.open_source(QUEUE, prefetch=10)
    assert sorted(tenant_of(d) for d in await everyone.receive(10)) == sorted([*TENANTS, ""])
    await everyone.close()


async def test_declaring_a_queue_fair_keeps_what_was_ready() -> None:
    backend = fa.MemoryBackend()
    for n in range(3):
        await backend.publish(QUEUE, n, properties=props("acme"))
    await backend.publish(QUEUE, "b", properties=props("globex"))
    backend.share_fairly(QUEUE, FairShares())
    assert backend.fair_shares(QUEUE) == FairShares()
    assert backend.queue_statistics(QUEUE).ready == 4
    source = await backend.open_source(QUEUE, prefetch=10)
    assert [tenant_of(d) for d in await source.receive(10)] == [
        "acme",
        "globex",
        "acme",
        "acme",
    ]
    await source.close()


# -- end to end: job worker apps --------------------------------------------------------


async def test_a_lone_tenants_job_starts_after_about_one_job_behind_a_backlog() -> None:
    jobs = JobQueue(fa.MemoryBackend(), queue=QUEUE)
    jobs.share_fairly()
    started: list[str | None] = []
    late_started = anyio.Event()

    @jobs.task
    async def work(ctx: JobContext, n: int) -> None:
        started.append(ctx.tenant)
        if len(started) == 5:
            await jobs.for_tenant("globex").enqueue("work", {"n": 0})
        if ctx.tenant == "globex":
            late_started.set()
        await anyio.sleep(1)

    await work.options(tenant="acme").enqueue_many([{"n": n} for n in range(300)])
    async with fa.open_system(jobs.worker(concurrency=1, prefetch=1).build()):
        with anyio.fail_after(60):
            await late_started.wait()
    # enqueued while the 5th ran, with one more fetched: it starts 7th at the latest
    assert started.index("globex") <= 6


async def test_a_dedicated_worker_only_ever_runs_its_tenants_jobs() -> None:
    jobs = JobQueue(fa.MemoryBackend(), queue=QUEUE)
    jobs.share_fairly(weights={"acme": 2})
    ran: list[str] = []

    @jobs.task
    async def work(ctx: JobContext, n: int) -> int:
        ran.append(ctx.tenant or "")
        return n

    handles = {
        tenant: await work.options(tenant=tenant).enqueue_many([{"n": n} for n in range(5)])
        for tenant in TENANTS
    }
    app = jobs.worker(tenants={"acme", "initech"}, name="dedicated")
    async with fa.open_system(app.build()):
        for tenant in ("acme", "initech"):
            for handle in handles[tenant]:
                assert await handle.result(timeout=30) is not None
    assert Counter(ran) == {"acme": 5, "initech": 5}
    for tenant in ("globex", "umbrella"):
        assert (await jobs.for_tenant(tenant).counts())[JobState.PENDING] == 5
