"""The pure lease rules: take, renew, lapse, lose, release, and the share each replica keeps."""

from __future__ import annotations

import asyncio

from services.listener.lease import SOLE_REPLICA, Lease, fair_share, holds, live_holders, released, taken
from services.listener.lease_keeper import new_holder_id
from tests.support.clock import ManualClock

TTL_S = 15.0


def test_a_free_lease_is_taken_for_one_ttl() -> None:
    clock = ManualClock()
    lease = taken(None, holder="a", now=clock(), ttl_s=TTL_S)
    assert (lease.holder, lease.renewed_at) == ("a", clock())
    assert holds(lease, "a", clock())
    clock.advance(TTL_S - 0.001)
    assert holds(lease, "a", clock())
    clock.advance(0.001)
    assert not holds(lease, "a", clock())


def test_a_renewal_moves_the_lapse_time_on() -> None:
    clock = ManualClock()
    first = taken(None, holder="a", now=clock(), ttl_s=TTL_S)
    clock.advance(TTL_S / 3)
    renewed = taken(first, holder="a", now=clock(), ttl_s=TTL_S)
    assert renewed is not first
    clock.advance(TTL_S - 1)
    assert holds(renewed, "a", clock())
    assert not holds(first, "a", clock())


def test_another_holders_live_lease_is_left_as_it_is() -> None:
    clock = ManualClock()
    held = taken(None, holder="a", now=clock(), ttl_s=TTL_S)
    clock.advance(TTL_S - 1)
    assert taken(held, holder="b", now=clock(), ttl_s=TTL_S) is held
    assert not holds(held, "b", clock())


def test_a_lapsed_lease_is_taken_by_another_holder_and_lost_to_its_old_one() -> None:
    clock = ManualClock()
    held = taken(None, holder="a", now=clock(), ttl_s=TTL_S)
    clock.advance(TTL_S)
    moved = taken(held, holder="b", now=clock(), ttl_s=TTL_S)
    assert moved.holder == "b"
    # The old holder's renewal, coming late, finds b's live lease: a has lost it.
    assert taken(moved, holder="a", now=clock(), ttl_s=TTL_S) is moved
    assert not holds(moved, "a", clock())


def test_a_holder_takes_back_its_own_lapsed_lease_when_nobody_took_it() -> None:
    clock = ManualClock()
    held = taken(None, holder="a", now=clock(), ttl_s=TTL_S)
    clock.advance(TTL_S * 2)
    again = taken(held, holder="a", now=clock(), ttl_s=TTL_S)
    assert holds(again, "a", clock())


def test_a_released_lease_is_free_at_once() -> None:
    clock = ManualClock()
    held = taken(None, holder="a", now=clock(), ttl_s=TTL_S)
    clock.advance(1)
    let_go = released(held, holder="a", now=clock())
    assert let_go is not None
    assert not let_go.live(clock())
    assert taken(let_go, holder="b", now=clock(), ttl_s=TTL_S).holder == "b"


def test_only_the_holder_releases_a_lease() -> None:
    clock = ManualClock()
    held = taken(None, holder="a", now=clock(), ttl_s=TTL_S)
    assert released(held, holder="b", now=clock()) is held
    assert released(None, holder="a", now=clock()) is None
    clock.advance(TTL_S)
    # Lapsed already: nothing to write.
    assert released(held, holder="a", now=clock()) is held


def test_the_live_holders_are_the_replicas_alive() -> None:
    clock = ManualClock()
    leases = [
        Lease("a", clock(), clock.now.replace(minute=1)),
        Lease("b", clock(), clock.now.replace(minute=1)),
        Lease("a", clock(), clock.now.replace(minute=1)),
        Lease("gone", clock.now.replace(hour=8), clock()),
    ]
    assert live_holders(leases, clock()) == {"a", "b"}


def test_the_fair_share_rounds_up_so_every_source_has_room() -> None:
    assert [fair_share(5, replicas) for replicas in (1, 2, 3, 5, 6)] == [5, 3, 2, 1, 1]
    assert fair_share(0, 3) == 0
    assert fair_share(4, 0) == 4


def test_holder_ids_name_the_host_and_differ_per_process() -> None:
    first, second = new_holder_id("listener-7c9f.example.svc"), new_holder_id("listener-7c9f.example.svc")
    assert first.startswith("listener-7c9f-example-svc-")
    assert first != second
    assert new_holder_id("").startswith("listener-")


async def test_a_process_alone_always_holds_its_sources() -> None:
    stopping = asyncio.Event()
    assert SOLE_REPLICA.held()
    assert await SOLE_REPLICA.wait_held(stopping)
    stopping.set()
    assert not await SOLE_REPLICA.wait_held(stopping)
