"""Fair queues on a real redis-server (asyncio, real time): turns, limits, dedication.

Two `RedisBackend` objects with consumer names of their own stand for two worker
processes: they share nothing but the server.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import foxactors as fa
from foxactors.backends import FairShares, Leases, RedisBackend, Source
from foxactors.backends.redis import _fair as fair
from foxactors.backends.redis import _leases as redis_leases
from foxactors.jobs import JobContext, JobQueue, JobState
from foxactors.testing.servers import RedisServer

from .helpers import ack, props, read_beside_a_claim, take_all, tenant_of, until

pytestmark = pytest.mark.anyio

TENANTS = ["acme", "globex", "initech"]
BACKLOG = 100_000


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {})


def fair_backend(url: str, queue: str, shares: FairShares, name: str = "one") -> RedisBackend:
    backend = RedisBackend(url, consumer=name, block=0.05, poll_interval=0.02)
    backend.share_fairly(queue, shares)
    return backend


async def take(source: Source, count: int, wait: float = 0.3) -> list[fa.Delivery]:
    """What ``source`` hands out within ``wait`` seconds (nothing: an empty list)."""
    with anyio.move_on_after(wait):
        return await source.receive(count)
    return []


@contextlib.asynccontextmanager
async def opened(
    url: str, shares: FairShares, acme: Sequence[Any] = (), *, prefetch: int = 5
) -> AsyncIterator[tuple[str, RedisBackend, Source, Any]]:
    """A fair queue with ``acme``'s payloads published, a source of it, a raw client."""
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    backend = fair_backend(url, queue, shares)
    for payload in acme:
        await backend.publish(queue, payload, properties=props("acme"))
    source = await backend.open_source(queue, prefetch=prefetch)
    client = backend.client()
    try:
        yield queue, backend, source, client
    finally:
        await client.aclose()
        await source.close()
        await backend.close()


@settings(max_examples=8, deadline=None)
@given(
    backlogs=st.dictionaries(st.sampled_from(TENANTS), st.integers(1, 30), min_size=1),
    weights=st.dictionaries(st.sampled_from(TENANTS), st.integers(1, 3)),
    late_at=st.integers(0, 20),
)
def test_a_tenant_with_work_waits_at_most_one_turn_of_each_backlogged_tenant(
    redis: RedisServer, backlogs: dict[str, int], weights: dict[str, int], late_at: int
) -> None:
    shares = FairShares(weights=weights)
    queue = f"fair-{uuid.uuid4().hex[:8]}"

    async def run() -> None:
        backend = fair_backend(redis.url, queue, shares)
        for tenant, count in backlogs.items():
            for n in range(count):
                await backend.publish(queue, n, properties=props(tenant))
        source = await backend.open_source(queue, prefetch=1)
        order: list[str] = []
        total = sum(backlogs.values())
        late_sent = False
        while len(order) < total + 1:
            if not late_sent and len(order) >= min(late_at, total):
                await backend.publish(queue, "late", properties=props(None))
                sent_at, late_sent = len(order), True
            with anyio.fail_after(10):
                (delivery,) = await source.receive(1)
            order.append(tenant_of(delivery))
            delivery.handle.ack()
        assert order.index("") - sent_at <= sum(shares.weight_of(t) for t in backlogs)
        assert Counter(order) == {**backlogs, "": 1}
        await source.close()
        await backend.close()

    anyio.run(run)


@settings(max_examples=8, deadline=None)
@given(
    limit=st.integers(1, 3),
    per_tenant=st.integers(1, 6),
    steps=st.lists(st.tuples(st.integers(0, 1), st.booleans()), min_size=1, max_size=40),
)
def test_no_tenant_has_more_out_than_its_limit_across_two_processes(
    redis: RedisServer, limit: int, per_tenant: int, steps: list[tuple[int, bool]]
) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    shares = FairShares(limit=limit)

    async def run() -> None:
        backends = [fair_backend(redis.url, queue, shares, name) for name in ("p1", "p2")]
        for tenant in TENANTS:
            for n in range(per_tenant):
                await backends[n % 2].publish(queue, n, properties=props(tenant))
        sources = [await b.open_source(queue, prefetch=4) for b in backends]
        held: list[list[fa.Delivery]] = [[], []]
        done = settles = 0
        for which, settle in [*steps, *[(n % 2, n % 3 != 0) for n in range(300)]]:
            if settle and held[which]:
                delivery = held[which].pop(0)
                settles += 1
                if settles % 4 == 3:  # some go back (requeue): they still come out once
                    delivery.handle.requeue()
                else:
                    delivery.handle.ack()
                    done += 1
            else:
                held[which].extend(await take(sources[which], 4, wait=0.05))
            out = Counter(tenant_of(d) for both in held for d in both)
            assert max(out.values(), default=0) <= limit
            if done == len(TENANTS) * per_tenant:
                break
        assert done == len(TENANTS) * per_tenant
        for source in sources:
            await source.close()
        for backend in backends:
            await backend.close()

    anyio.run(run)


async def test_a_dedicated_source_takes_only_its_tenants(redis: RedisServer) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    backend = fair_backend(redis.url, queue, FairShares())
    for tenant in [*TENANTS, None]:
        await backend.publish(queue, tenant, properties=props(tenant))
    assert (await backend.queue_statistics(queue)).ready == 4  # in the tenants' lists
    dedicated = await backend.for_tenants({"globex"}).open_source(queue, prefetch=10)
    mine = await take(dedicated, 10)  # held (a dropped handle would requeue it)
    assert [tenant_of(d) for d in mine] == ["globex"]
    assert await take(dedicated, 10) == []
    everyone = await backend.open_source(queue, prefetch=10)
    got = await take(everyone, 10)
    assert sorted(tenant_of(d) for d in got) == ["", "acme", "initech"]
    for delivery in got:
        delivery.handle.ack()
    await dedicated.close()  # its unsettled one goes back to its tenant's list
    back = await take(everyone, 10)
    assert [tenant_of(d) for d in back] == ["globex"]
    back[0].handle.ack()
    await everyone.wait_settled()
    counted = await backend.queue_statistics(queue)
    assert (counted.ready, counted.in_flight) == (0, 0)
    await everyone.close()
    await backend.close()


async def test_a_retry_comes_back_through_its_tenants_list(redis: RedisServer) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    backend = fair_backend(redis.url, queue, FairShares(limit=1))
    await backend.publish(queue, "first", properties=props("acme"))
    await backend.publish(queue, "second", properties=props("acme"))
    source = await backend.open_source(queue, prefetch=10)
    (first,) = await take(source, 10)
    assert await take(source, 10, wait=0.1) == []  # acme is at its limit of one
    first.handle.retry(0.05)
    with anyio.fail_after(10):
        (second,) = await source.receive(10)  # the slot is free: the next in line
    assert second.message.payload == "second"
    second.handle.ack()
    with anyio.fail_after(10):
        (again,) = await source.receive(10)
    assert (again.message.payload, again.message.attempt) == ("first", 2)
    again.handle.ack()
    await source.close()
    await backend.close()


async def test_a_dedicated_job_worker_on_redis_runs_only_its_tenants_jobs(
    redis: RedisServer,
) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    backend = RedisBackend(redis.url, block=0.05, poll_interval=0.02)
    jobs = JobQueue(backend, queue=queue)
    jobs.share_fairly(weights={"acme": 2})
    ran: list[str] = []

    @jobs.task
    async def work(ctx: JobContext, n: int) -> int:
        ran.append(ctx.tenant or "")
        return n

    mine = await jobs.for_tenant("acme").task(work).enqueue_many([{"n": n} for n in range(4)])
    await jobs.for_tenant("globex").task(work).enqueue_many([{"n": n} for n in range(3)])
    async with fa.open_system(jobs.worker(tenants={"acme"}).build()):
        for handle in mine:
            await handle.result(timeout=30)
    assert ran == ["acme"] * 4
    assert (await jobs.for_tenant("globex").counts())[JobState.PENDING] == 3
    await backend.close()


async def test_a_lone_tenant_starts_within_a_turn_behind_another_tenants_backlog_of_100_000(
    redis: RedisServer,
) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    shares = FairShares()
    backend = fair_backend(redis.url, queue, shares)
    client = backend.client()
    keys = fair.FairKeys.of(queue)
    await fair.write_conf(client, keys, shares)
    body = backend.codec.encode("a")
    backlog = (
        backend.fields(body, props("acme"), f"a{n}") for n in range(BACKLOG)
    )  # as publish writes them, in a hundred script runs
    assert await fair.push_many(client, keys, backlog) == BACKLOG
    source = await backend.open_source(queue, prefetch=1)
    started: list[str] = []
    for _ in range(3):  # acme's backlog is under way
        with anyio.fail_after(10):
            (delivery,) = await source.receive(1)
        started.append(tenant_of(delivery))
        delivery.handle.ack()
    await backend.publish(queue, "b", properties=props("globex"))
    while "globex" not in started[3:]:
        with anyio.fail_after(10):
            (delivery,) = await source.receive(1)
        started.append(tenant_of(delivery))
        delivery.handle.ack()
    # one turn of each tenant with work (acme, then globex), not 99,997 of acme's
    assert len(started) - 3 <= 2
    await source.wait_settled()
    left = await backend.queue_statistics(queue)
    assert (left.ready, left.in_flight) == (BACKLOG - (len(started) - 1), 0)
    await client.delete(keys.list_of("acme"))
    await client.aclose()
    await source.close()
    await backend.close()


async def test_one_read_takes_a_turn_of_each_of_10_000_tenants(redis: RedisServer) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    shares = FairShares()
    backend = fair_backend(redis.url, queue, shares)
    client = backend.client()
    keys = fair.FairKeys.of(queue)
    await fair.write_conf(client, keys, shares)
    body = backend.codec.encode("x")
    tenants = [f"t{n}" for n in range(10_000)]
    entries = [backend.fields(body, props(t), f"{t}-{k}") for k in range(2) for t in tenants]
    await fair.push_many(client, keys, entries)
    source = await backend.open_source(queue, prefetch=24_000)  # a pull takes half of it
    with anyio.fail_after(10):
        got = await source.receive(12_000)  # one read: more tenants than Lua unpacks at once
    counts = Counter(tenant_of(d) for d in got)
    assert len(got) == 12_000
    assert set(counts) == set(tenants)  # everyone's first turn before anyone's second
    assert sum(1 for n in counts.values() if n == 2) == 2_000
    for delivery in got:
        delivery.handle.ack()
    await source.wait_settled()
    left = await backend.queue_statistics(queue)
    assert (left.ready, left.in_flight) == (8_000, 0)
    await client.delete(*(keys.list_of(t) for t in tenants))
    await client.aclose()
    await source.close()
    await backend.close()


def two_groups(url: str, queue: str) -> tuple[RedisBackend, RedisBackend]:
    """Backends of two consumer groups ("one", "two") on the fair queue ``queue``."""
    backends = (
        RedisBackend(url, group="one", block=0.05),
        RedisBackend(url, group="two", block=0.05),
    )
    for backend in backends:
        backend.share_fairly(queue, FairShares())
    return backends


def leased(url: str, queue: str, shares: FairShares) -> RedisBackend:
    """A backend ("live") of a fair queue whose leases run out in a tenth of a second."""
    backend = RedisBackend(url, consumer="live", block=0.05, leases=Leases(claim_min_idle=0.1))
    backend.share_fairly(queue, shares)
    return backend


async def dead_consumer_takes(client: Any, backend: RedisBackend, queue: str, count: int) -> None:
    """A consumer named "dead" pulls up to ``count`` entries of ``queue``, never to settle them."""
    await backend.ensure_group(client, queue)
    keys = fair.FairKeys.of(queue)
    await fair.pull(
        client, keys, queue, count=count, group=backend.group, consumer="dead", tenants=None
    )


async def test_a_dead_consumers_entry_taken_over_frees_its_tenants_slot_when_acked(
    redis: RedisServer,
) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    backend = leased(redis.url, queue, FairShares(limit=1))
    for payload in ("first", "second"):
        await backend.publish(queue, payload, properties=props("acme"))
    source = await backend.open_source(queue, prefetch=5)
    client = backend.client()
    await dead_consumer_takes(client, backend, queue, 5)  # acme's first: its one slot
    assert await take(source, 5, wait=0.1) == []  # acme is at its limit

    async def reclaimed() -> bool:  # the dead one's lease runs out on the Redis clock
        await source.reclaim()
        return backend.statistics().reclaimed > 0

    await until("the dead consumer's entry reclaimed", reclaimed, seconds=10)
    (taken,) = await take(source, 5)
    assert (taken.message.payload, taken.message.attempt) == ("first", 2)
    taken.handle.ack()  # this source never read it: the entry says whose slot it holds
    with anyio.fail_after(10):
        (second,) = await source.receive(5)
    assert second.message.payload == "second"
    second.handle.ack()
    await source.wait_settled()
    assert (await backend.queue_statistics(queue)).in_flight == 0
    await client.aclose()
    await source.close()
    await backend.close()


async def test_a_dedicated_source_gives_back_another_tenants_entry_it_took_over(
    redis: RedisServer,
) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    backend = leased(redis.url, queue, FairShares(limit=1))
    await backend.publish(queue, "acme's", properties=props("acme"))
    dedicated = await backend.for_tenants({"globex"}).open_source(queue, prefetch=5)
    client = backend.client()
    keys = fair.FairKeys.of(queue)
    await dead_consumer_takes(client, backend, queue, 5)  # acme's entry: its one slot
    await backend.publish(queue, "acme's next", properties=props("acme"))

    async def given_back() -> bool:  # the dead one's lease runs out on the Redis clock
        await dedicated.reclaim()
        return bool(await client.llen(keys.list_of("acme")) == 2)

    await until("acme's entry taken over and given back", given_back, seconds=10)
    assert await take(dedicated, 5, wait=0.1) == []  # never delivered here
    assert await slots(client, queue) == {}  # it holds no slot while it waits
    everyone = await backend.open_source(queue, prefetch=5)
    with anyio.fail_after(10):
        (again,) = await everyone.receive(5)
    # first in its tenant's list; the dead consumer's attempt counts, the taking-over not
    assert (again.message.payload, again.message.attempt) == ("acme's", 2)
    again.handle.ack()
    with anyio.fail_after(10):
        (after,) = await everyone.receive(5)  # acme's one slot came back
    assert after.message.payload == "acme's next"
    after.handle.ack()
    await everyone.wait_settled()
    assert await slots(client, queue) == {}
    await client.aclose()
    await everyone.close()
    await dedicated.close()
    await backend.close()


async def slots(client: Any, queue: str) -> dict[str, int]:
    """The slots each tenant holds, as the queue's out hash counts them."""
    out = await client.hgetall(fair.FairKeys.of(queue).out)
    return {k.decode(): int(v) for k, v in out.items() if not k.startswith(b":") and int(v)}


async def test_entries_hold_slots_only_where_a_limit_counts_them(redis: RedisServer) -> None:
    async with opened(redis.url, FairShares(), ["a", "b"]) as (queue, _, source, client):
        got = await take(source, 5)
        assert [d.message.payload for d in got] == ["a", "b"]
        assert "x-slot" not in got[0].message.properties.headers
        (entry,) = await client.xrange(queue, count=1)
        assert b"x-slot" not in entry[1]
        assert await slots(client, queue) == {}  # nothing counted: an ack is a plain XACK
        for delivery in got:
            delivery.handle.ack()
        await source.wait_settled()
        assert (await client.xpending(queue, "foxactors"))["pending"] == 0
    limited = FairShares(limit=2)
    async with opened(redis.url, limited, ["a", "b", "c"]) as (queue, _, source, client):
        first, second = await take(source, 5)
        assert await take(source, 5, wait=0.1) == []  # acme holds both its slots
        assert "x-slot" not in first.message.properties.headers  # the field is no header
        assert all(b"x-slot" in fields for _, fields in await client.xrange(queue))
        assert await slots(client, queue) == {"acme": 2}
        first.handle.requeue()  # back to the front of acme's list, holding nothing there
        second.handle.ack()
        with anyio.fail_after(10):
            again = await source.receive(5)
        assert [d.message.payload for d in again] == ["a", "c"]
        assert await slots(client, queue) == {"acme": 2}  # the requeue took a slot again
        for delivery in again:
            delivery.handle.ack()
        await source.wait_settled()
        assert await slots(client, queue) == {}


async def test_a_slot_is_freed_by_the_entry_even_when_the_limit_changed_meanwhile(
    redis: RedisServer,
) -> None:
    shares = FairShares()
    async with opened(redis.url, shares, ["a", "b"], prefetch=2) as (queue, _, source, client):
        (unlimited,) = await take(source, 2)  # read before any limit: holds no slot
        await fair.write_conf(client, fair.FairKeys.of(queue), FairShares(limit=2))
        with anyio.fail_after(10):  # another process declared a limit of two meanwhile
            (limited,) = await source.receive(2)
        assert [unlimited.message.payload, limited.message.payload] == ["a", "b"]
        assert await slots(client, queue) == {"acme": 1}  # both out, one counted
        unlimited.handle.ack()

        async def applied() -> bool:
            return bool((await client.xpending(queue, "foxactors"))["pending"] == 1)

        await until("the ack applied", applied)
        assert await slots(client, queue) == {"acme": 1}  # its ack freed nothing it held
        await fair.write_conf(client, fair.FairKeys.of(queue), FairShares())
        limited.handle.ack()  # the limit is gone; the slot its entry holds goes too
        await source.wait_settled()
        assert await slots(client, queue) == {}


async def test_a_header_named_like_the_slot_field_is_refused(redis: RedisServer) -> None:
    async with opened(redis.url, FairShares()) as (queue, backend, _, client):
        headers = {"x-tenant": "acme", "x-slot": "1"}
        with pytest.raises(fa.ConfigurationError, match="x-slot"):
            await backend.publish(queue, "a", properties=fa.MessageProperties(headers=headers))
        assert await client.llen(fair.FairKeys.of(queue).list_of("acme")) == 0


async def test_a_dedicated_source_beside_a_busy_ring_source_sees_only_its_tenant(
    redis: RedisServer,
) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    backend = fair_backend(redis.url, queue, FairShares())
    for n in range(600):
        await backend.publish(queue, n, properties=props(TENANTS[n % 3]))
    ring = await backend.open_source(queue, prefetch=7)
    dedicated = await backend.for_tenants({"globex"}).open_source(queue, prefetch=3)
    seen: dict[str, list[str]] = {"ring": [], "dedicated": []}

    async def drain(name: str, source: Source) -> None:
        while True:  # each read is a pull and a read in one MULTI: none of them interleave
            for delivery in await source.receive(10):
                seen[name].append(tenant_of(delivery))
                delivery.handle.ack()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(drain, "ring", ring)
        tasks.start_soon(drain, "dedicated", dedicated)
        await until("all 600 taken", lambda: len(seen["ring"]) + len(seen["dedicated"]) == 600)
        tasks.cancel_scope.cancel()
    assert set(seen["dedicated"]) == {"globex"}
    assert Counter(seen["ring"] + seen["dedicated"]) == dict.fromkeys(TENANTS, 200)
    await ring.close()
    await dedicated.close()
    await backend.close()


async def test_a_reclaim_beside_a_pull_in_flight_takes_no_more_than_the_credit(
    redis: RedisServer,
) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    backend = leased(redis.url, queue, FairShares())
    for n in range(8):
        await backend.publish(queue, n, properties=props("acme"))
    source: Any = await backend.open_source(queue, prefetch=4)  # pulls take 2 at a time
    client = backend.client()
    await dead_consumer_takes(client, backend, queue, 4)
    gate, pulling = anyio.Event(), anyio.Event()
    real = source._transaction

    async def held_back(commands: Any) -> Any:  # the reader's pull, out until the gate opens
        pulling.set()
        await gate.wait()
        return await real(commands)

    source._transaction = held_back
    got: list[fa.Delivery] = []

    async def reader() -> None:
        got.extend(await source.receive(4))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(reader)
        await pulling.wait()

        async def reclaimed() -> bool:  # the dead one's lease runs out on the Redis clock
            await source.reclaim()
            return backend.statistics().reclaimed > 0

        await until("the dead consumer's entries reclaimed", reclaimed, seconds=10)
        assert backend.statistics().reclaimed == 2  # the pull out holds the other two
        gate.set()
    held = await client.xpending_range(queue, backend.group, "-", "+", 100, "live")
    assert len(held) == len(got) == 4  # read and unsettled: never more than the prefetch
    await client.aclose()
    await source.close()
    await backend.close()


async def test_a_pull_whose_script_was_refused_keeps_what_its_read_took(
    redis: RedisServer,
) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    one, two = two_groups(redis.url, queue)
    first = await one.open_source(queue, prefetch=10)
    second = await two.open_source(queue, prefetch=10)
    for n in range(3):
        await one.publish(queue, n, properties=props("acme"))
    got = await take(first, 10)  # moved into the stream: unread by group two
    assert [d.message.payload for d in got] == [0, 1, 2]
    client = one.client()
    await client.script_flush()  # group two's pull: its script refused, its read not
    with anyio.fail_after(10):
        again = await second.receive(10)
    assert [d.message.payload for d in again] == [0, 1, 2]  # kept, not left pending
    for delivery in (*got, *again):
        delivery.handle.ack()
    await client.aclose()
    for source in (first, second):
        await source.close()
    for backend in (one, two):
        await backend.close()


async def test_a_consumer_that_stopped_waiting_for_credit_pulls_no_more(
    redis: RedisServer,
) -> None:
    eight = [f"m{n}" for n in range(8)]
    async with opened(redis.url, FairShares(), eight, prefetch=4) as (queue, backend, source, _):
        got = await take_all(source, 4, lambda delivery: None)
        with anyio.move_on_after(0.1):  # the intake stops while the reader waits for credit
            await source.receive(4, 4)
        for delivery in got:
            delivery.handle.ack()  # the drain settles what ran: no pull rides on it
        await source.wait_settled()
        await source.close()
        again = await backend.open_source(queue, prefetch=4)
        with anyio.fail_after(10):
            more = await again.receive(4)
        # none of them was read and given back by the closing source
        assert [(d.message.payload, d.message.attempt) for d in more] == [("m4", 1), ("m5", 1)]
        await again.close()


async def test_a_starting_consumer_counts_the_slots_an_earlier_version_left(
    redis: RedisServer,
) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    backend = RedisBackend(redis.url, consumer="w1", block=0.05)
    backend.share_fairly(queue, FairShares(limit=1))
    for n in range(2):
        await backend.publish(queue, f"m{n}", properties=props("acme"))
    client = backend.client()
    keys = fair.FairKeys.of(queue)
    await backend.ensure_group(client, queue)
    # an earlier version's pull: m0 read by w1, acme's slot counted, no x-slot on it
    await fair.write_conf(client, keys, FairShares())
    await fair.pull(client, keys, queue, count=1, group=backend.group, consumer="w1", tenants=None)
    await client.hincrby(keys.out, "acme", 1)
    source = await backend.open_source(queue, prefetch=5)  # w1 upgraded, started again
    assert await slots(client, queue) == {}  # m0 holds no slot this version can free
    with anyio.fail_after(10):
        (first,) = await source.receive(5)
    assert first.message.payload == "m0"
    first.handle.ack()
    with anyio.fail_after(10):
        (second,) = await source.receive(5)  # not blocked for good behind a lost slot
    assert second.message.payload == "m1"
    assert await slots(client, queue) == {"acme": 1}
    second.handle.ack()
    await source.wait_settled()
    assert await slots(client, queue) == {}
    await client.aclose()
    await source.close()
    await backend.close()


async def test_a_reclaim_in_flight_holds_its_credit_from_the_reader(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    backend = leased(redis.url, queue, FairShares())
    for n in range(8):
        await backend.publish(queue, n, properties=props("acme"))
    source = await backend.open_source(queue, prefetch=4)  # its keeper reclaims
    client = backend.client()
    await dead_consumer_takes(client, backend, queue, 4)
    got = await read_beside_a_claim(source, monkeypatch, 4)
    held = await client.xpending_range(queue, backend.group, "-", "+", 100, "live")
    assert len(got) == len(held) == 4  # the claimed four, and no pull past the credit
    assert {d.message.attempt for d in got} == {2}
    await client.aclose()
    await source.close()
    await backend.close()


async def test_a_reader_whose_pull_found_nothing_takes_what_a_pull_with_the_acks_brought(
    redis: RedisServer,
) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    backend = RedisBackend(redis.url, consumer="live", block=60.0)  # a wait would show
    backend.share_fairly(queue, FairShares())
    for n in range(4):
        await backend.publish(queue, n, properties=props("acme"))
    source: Any = await backend.open_source(queue, prefetch=4)  # pulls of two
    first = await source.receive(4)
    assert [d.message.payload for d in first] == [0, 1]
    gate, pulling = anyio.Event(), anyio.Event()
    real = source._transaction

    async def held_back(commands: Any) -> Any:
        commands = list(commands)
        if len(commands) == 2 and not gate.is_set():  # the reader's own pull
            pulling.set()
            await gate.wait()
        return await real(commands)

    source._transaction = held_back
    got: list[fa.Delivery] = []
    done = anyio.Event()

    async def reader() -> None:
        got.extend(await source.receive(4))
        done.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(reader)
        await pulling.wait()
        for delivery in first:
            delivery.handle.ack()  # their batch pulls the other two, before the reader's
        await until("the acks' pull back", lambda: len(source._buffer) == 2)
        gate.set()  # the reader's pull finds nothing left: it takes the buffer, no wait
        with anyio.fail_after(10):  # (not the minute its wait for publishes would take)
            await done.wait()
    assert [d.message.payload for d in got] == [2, 3]
    for delivery in got:
        delivery.handle.ack()
    await source.close()
    await backend.close()


async def test_a_recount_acks_a_pending_entry_whose_data_is_gone(redis: RedisServer) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    one = RedisBackend(redis.url, consumer="one", block=0.05)
    two = RedisBackend(redis.url, consumer="two", block=0.05)
    for backend in (one, two):
        backend.share_fairly(queue, FairShares(limit=2))
    for n in range(4):
        await one.publish(queue, f"m{n}", properties=props("acme"))
    first = await one.open_source(queue, prefetch=2)
    got = await take_all(first, 2, lambda delivery: None)
    client = one.client()
    assert await slots(client, queue) == {"acme": 2}
    await client.xdel(queue, cast(bytes, got[0].handle.tag))  # m0 deleted by hand, pending
    second = await two.open_source(queue, prefetch=5)  # its start recounts
    assert await slots(client, queue) == {"acme": 1}  # m1's, held by the first
    got[0].handle.ack()  # m0 is no longer pending: this frees nothing a second time

    async def applied() -> bool:
        return bool((await client.xpending(queue, one.group))["pending"] == 1)

    await until("the ack applied", applied)
    assert await slots(client, queue) == {"acme": 1}
    assert len(await take(second, 5, wait=0.2)) == 1  # one more, to acme's limit of two
    await client.aclose()
    for source in (first, second):
        await source.close()
    for backend in (one, two):
        await backend.close()


async def test_a_dedicated_source_gives_back_what_its_name_held_of_other_tenants(
    redis: RedisServer,
) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    backend = RedisBackend(redis.url, consumer="w1", block=0.05)
    backend.share_fairly(queue, FairShares())
    await backend.publish(queue, "acme's", properties=props("acme"))
    client = backend.client()
    keys = fair.FairKeys.of(queue)
    await backend.ensure_group(client, queue)
    # w1's previous life, a ring consumer, left acme's entry pending under its name
    await fair.pull(client, keys, queue, count=5, group=backend.group, consumer="w1", tenants=None)
    dedicated = await backend.for_tenants({"globex"}).open_source(queue, prefetch=5)
    assert await take(dedicated, 5, wait=0.2) == []
    assert await client.llen(keys.list_of("acme")) == 1  # back in acme's list
    await client.aclose()
    await dedicated.close()
    await backend.close()


async def test_a_reader_waiting_for_a_claim_in_flight_ends_when_the_source_fails(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    backend = leased(redis.url, queue, FairShares())
    await backend.publish(queue, "a", properties=props("acme"))
    source: Any = await backend.open_source(queue, prefetch=4)  # its keeper reclaims
    client = backend.client()
    await dead_consumer_takes(client, backend, queue, 4)
    claimed = anyio.Event()
    real = redis_leases.reclaim

    async def hung(*args: Any, **options: Any) -> Any:  # its reply never comes
        reply = await real(*args, **options)
        if reply[1]:
            claimed.set()
            await anyio.sleep_forever()
        return reply

    monkeypatch.setattr(redis_leases, "reclaim", hung)
    failed = anyio.Event()

    async def reader() -> None:
        with pytest.raises(fa.BackendError, match="gone"):
            await source.receive(4)  # waits for the claim's entries, not a pull of its own
        failed.set()

    async with anyio.create_task_group() as tasks:
        with anyio.fail_after(10):
            await claimed.wait()
        tasks.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        source._fail("the connection is gone")
        with anyio.fail_after(10):
            await failed.wait()
    await client.aclose()
    await source.close()
    await backend.close()


async def test_a_fair_source_loads_its_scripts_again_when_the_server_lost_them(
    redis: RedisServer,
) -> None:
    shares = FairShares(limit=1)
    async with opened(redis.url, shares, ["first", "second"]) as (queue, backend, source, client):
        (first,) = await take(source, 5)
        await client.script_flush()  # as a restarted server: no scripts
        first.handle.ack()  # settled by a script run again once loaded
        with anyio.fail_after(10):
            (second,) = await source.receive(5)  # acme's slot was freed: the next pulled
        assert second.message.payload == "second"
        await client.script_flush()
        second.handle.ack()
        await backend.publish(queue, "third", properties=props("acme"))  # push: loaded again
        with anyio.fail_after(10):
            (third,) = await source.receive(5)
        assert third.message.payload == "third"
        third.handle.ack()
        await source.wait_settled()
        counted = await backend.queue_statistics(queue)
        assert (counted.ready, counted.in_flight) == (0, 0)


async def test_an_entry_trimmed_while_pending_still_frees_its_tenants_slot(
    redis: RedisServer,
) -> None:
    shares = FairShares(limit=1)
    async with opened(redis.url, shares, ["first", "second"]) as (queue, backend, source, client):
        (first,) = await take(source, 5)
        await client.xtrim(queue, maxlen=0, approximate=False)  # by hand: first's data goes
        first.handle.requeue()  # nothing left to copy; acme's one slot must still come back
        with anyio.fail_after(10):
            (second,) = await source.receive(5)
        assert second.message.payload == "second"
        second.handle.ack()
        await source.wait_settled()
        assert backend.statistics().trimmed == 1


async def test_a_buffered_entry_trimmed_while_pending_frees_its_slot_too(
    redis: RedisServer,
) -> None:
    shares = FairShares(limit=2)
    async with opened(redis.url, shares, "abc", prefetch=4) as (queue, _, source, client):
        (first,) = await source.receive(1)  # a pull of two: the second waits in the buffer
        assert await slots(client, queue) == {"acme": 2}
        await client.xtrim(queue, maxlen=0, approximate=False)  # by hand: both go
        # a renewal looks at what is buffered: the second is gone (the keeper's reclaim
        # may find both first: either way each slot is freed once)
        await cast(Any, source).renew()
        first.handle.ack()
        with anyio.fail_after(10):
            rest = await take_all(source, 2, ack)  # the buffered one, then "c"
        assert [d.message.payload for d in rest] == ["b", "c"]
        await source.wait_settled()
        assert await slots(client, queue) == {}  # the buffered one's slot was not kept


async def test_the_fair_stream_is_trimmed_below_its_oldest_pending_entry(
    redis: RedisServer,
) -> None:
    async with opened(redis.url, FairShares(), prefetch=50) as (queue, backend, source, client):
        await trim_below_pending(queue, backend, source, client)


async def trim_below_pending(
    queue: str, backend: RedisBackend, source: Source, client: Any
) -> None:
    for n in range(600):
        await backend.publish(queue, n, properties=props(TENANTS[n % 3]))
    await take_all(source, 600, ack)
    await source.wait_settled()
    # acked entries go as the stream grows (whole nodes of 100 at a time, `MINID ~`)
    assert await client.xlen(queue) < 300
    await backend.publish(queue, "held", properties=props("acme"))
    (held,) = await take(source, 1)
    for n in range(600):
        await backend.publish(queue, n, properties=props(TENANTS[n % 3]))
    await take_all(source, 600, ack)

    async def only_held_pending() -> bool:
        return bool((await client.xpending(queue, backend.group))["pending"] == 1)

    await until("the acks applied", only_held_pending)
    (pending,) = await client.xpending_range(queue, backend.group, "-", "+", 10)
    assert await client.xrange(queue, pending["message_id"], pending["message_id"])  # kept
    assert await client.xlen(queue) > 600  # nothing at or after it was trimmed
    held.handle.ack()
    await source.wait_settled()


async def test_scripts_lost_mid_batch_run_again_only_where_they_did_not_run(
    redis: RedisServer,
) -> None:
    async with opened(redis.url, FairShares(), "abcd", prefetch=2) as opening:
        await lose_scripts_mid_batch(*opening)


async def lose_scripts_mid_batch(
    queue: str, backend: RedisBackend, source: Source, client: Any
) -> None:
    (one,) = await source.receive(2)  # a pull takes half the prefetch
    (two,) = await source.receive(2)
    # a flush, then another client loads two of the scripts back: in the next batch
    # the ack and the pull run, the requeue does not
    await client.script_flush()
    await client.script_load(fair.ACK)
    await client.script_load(fair.PULL)
    seen: Counter[tuple[str, int]] = Counter({(one.message.payload, 1): 1})
    done = anyio.Event()

    async def rest() -> None:
        while True:
            for delivery in await source.receive(2):  # first parked on the credit
                seen[(delivery.message.payload, delivery.message.attempt)] += 1
                delivery.handle.ack()
                if len(seen) == 4:
                    done.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(rest)
        await anyio.wait_all_tasks_blocked()
        one.handle.ack()
        two.handle.requeue()  # one batch with the ack, and the reader's pull
        with anyio.fail_after(10):
            await done.wait()
        tasks.cancel_scope.cancel()
    await source.wait_settled()
    # every entry once, the requeued one twice; nothing orphaned by a pull run twice
    assert seen == {("a", 1): 1, ("b", 2): 1, ("c", 1): 1, ("d", 1): 1}
    assert await client.script_exists(fair.SETTLE_SHA) == [True]  # loaded again
    counted = await backend.queue_statistics(queue)
    assert (counted.ready, counted.in_flight) == (0, 0)


async def test_dead_letters_replayed_into_a_fair_queue_are_read_and_trim_nothing_pending(
    redis: RedisServer,
) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    backend = RedisBackend(redis.url, consumer="one", block=0.05, maxlen=10)
    backend.share_fairly(queue, FairShares())
    high = fa.MessageProperties(priority=fa.Priority.HIGH, headers={"x-tenant": "acme"})
    for n in range(30):
        await backend.publish(queue, n, properties=high if n % 2 else props("acme"))
    source = await backend.open_source(queue, prefetch=50)
    await take_all(source, 30, lambda delivery: delivery.handle.dead_letter("later"))
    await source.wait_settled()
    await backend.publish(queue, "held", properties=props("globex"))
    (held,) = await take(source, 1)
    assert await backend.replay_dead_letters(queue) == 30  # the high ones too: one stream
    replayed = [d.message.payload for d in await take_all(source, 30, ack)]
    assert sorted(replayed) == list(range(30))  # none trimmed before it was read
    held.handle.requeue()  # its data is still there: it goes back, not lost
    with anyio.fail_after(10):
        (again,) = await source.receive(1)
    assert (again.message.payload, again.message.attempt) == ("held", 2)
    again.handle.ack()
    await source.wait_settled()
    await source.close()
    await backend.close()


async def test_a_second_group_of_a_fair_queue_still_reads_every_entry(
    redis: RedisServer,
) -> None:
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    first, second = two_groups(redis.url, queue)
    late = await second.open_source(queue, prefetch=100)  # its group exists, it reads later
    for n in range(300):
        await first.publish(queue, n, properties=props(TENANTS[n % 3]))
    async with opened_source(first, queue) as early:
        await take_all(early, 300, ack)  # g1's reads move every entry and trim behind them
        await early.wait_settled()
    await take_all(late, 300, ack)  # g2 had read none: trimming left them all
    await late.wait_settled()
    await late.close()
    for backend in (first, second):
        await backend.close()


@contextlib.asynccontextmanager
async def opened_source(backend: RedisBackend, queue: str) -> AsyncIterator[Source]:
    source = await backend.open_source(queue, prefetch=100)
    try:
        yield source
    finally:
        await source.close()


async def test_dead_letters_replayed_into_a_fair_queue_wait_for_their_tenants_turn(
    redis: RedisServer,
) -> None:
    async with opened(redis.url, FairShares(limit=1), ["a", "b", "c"]) as opening:
        queue, backend, source, _ = opening
        for _ in range(3):  # one at a time: acme's limit is one
            with anyio.fail_after(10):
                (delivery,) = await source.receive(5)
            delivery.handle.dead_letter("later")
        await source.wait_settled()
        await backend.publish(queue, "busy", properties=props("acme"))
        with anyio.fail_after(10):
            (busy,) = await source.receive(5)  # acme's one slot is out
        assert await backend.replay_dead_letters(queue) == 3
        counted = await backend.queue_statistics(queue)
        assert (counted.ready, counted.in_flight, counted.dead) == (3, 1, 0)  # in its list
        busy.handle.ack()
        replayed = []
        for _ in range(3):  # the slot frees: the replayed letters come one at a time
            with anyio.fail_after(10):
                (delivery,) = await source.receive(5)
            replayed.append((delivery.message.payload, delivery.message.attempt))
            delivery.handle.ack()
        assert replayed == [("a", 1), ("b", 1), ("c", 1)]  # in order, attempts anew
        await source.wait_settled()
