"""Lease keepers of several replicas on a real nats-server: never two holders, a fair split, quick hand-overs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NatsClient

from services.listener.clients import LeaseStore
from services.listener.lease import live_holders
from services.listener.lease_keeper import LeaseKeeper
from tests.support.clock import ManualClock
from tests.support.eventually import eventually

TTL_S = 15.0
SOURCES = tuple(f"s{n}" for n in range(6))


class Keepers:
    """One keeper per replica name, each with its own store (its own mirror), on one clock."""

    def __init__(self, nc: NatsClient) -> None:
        self._js = nc.jetstream()
        self.clock = ManualClock()
        self.stores: dict[str, LeaseStore] = {}
        self.keepers: dict[str, LeaseKeeper] = {}

    async def start(self, name: str, sources: tuple[str, ...] = SOURCES) -> LeaseKeeper:
        store = await LeaseStore.open(self._js, replicas=1)
        keeper = LeaseKeeper(store, holder=name, ttl_s=TTL_S, clock=self.clock)
        for source in sources:
            keeper.lease(source)
        self.stores[name], self.keepers[name] = store, keeper
        return keeper

    async def everyone_sees(self, alive: set[str]) -> None:
        def seen() -> bool:
            return all(live_holders(store.leases(), self.clock()) == alive for store in self.stores.values())

        await eventually(seen, what=f"every replica sees {sorted(alive)} alive")

    def holders(self, source: str) -> list[str]:
        return [name for name, keeper in self.keepers.items() if keeper.holds(source)]

    def shares(self) -> dict[str, int]:
        return {name: len(keeper.held()) for name, keeper in self.keepers.items()}

    async def close(self) -> None:
        for store in self.stores.values():
            await store.close()


@pytest.fixture
async def keepers(nc: NatsClient) -> AsyncIterator[Keepers]:
    found = Keepers(nc)
    yield found
    await found.close()


async def test_replicas_ticking_at_the_same_time_never_both_hold_a_source(keepers: Keepers) -> None:
    for name in ("a", "b", "c"):
        await keepers.start(name)
    for _ in range(4):
        await asyncio.gather(*(keeper.tick() for keeper in keepers.keepers.values()))
        assert all(len(keepers.holders(source)) <= 1 for source in SOURCES)
        keepers.clock.advance(TTL_S / 3)
    await keepers.everyone_sees({"a", "b", "c"})
    for _ in range(2):
        for keeper in keepers.keepers.values():
            await keeper.tick()
    assert all(len(keepers.holders(source)) == 1 for source in SOURCES)
    assert keepers.shares() == {"a": 2, "b": 2, "c": 2}


async def test_replicas_that_join_are_handed_their_share_by_the_one_that_held_everything(keepers: Keepers) -> None:
    first = await keepers.start("a")
    await first.tick()
    assert keepers.shares() == {"a": 6}
    for name in ("b", "c"):
        await (await keepers.start(name)).tick()
    await keepers.everyone_sees({"a", "b", "c"})
    # a hands over what is over its share; b and c take it on their next ticks.
    for name in ("a", "b", "c"):
        await keepers.keepers[name].tick()
    assert keepers.shares() == {"a": 2, "b": 2, "c": 2}


async def test_a_lease_is_renewed_before_it_lapses_and_kept_while_renewed(keepers: Keepers) -> None:
    a = await keepers.start("a")
    b = await keepers.start("b")
    await a.tick()
    await keepers.everyone_sees({"a"})
    for _ in range(10):
        keepers.clock.advance(a.renew_every_s)
        await a.tick()
        await b.tick()
        assert keepers.shares()["a"] >= 3
        assert all(len(keepers.holders(source)) == 1 for source in SOURCES)


async def test_a_removed_source_is_released_for_the_others_at_once(keepers: Keepers) -> None:
    a = await keepers.start("a", ("only",))
    b = await keepers.start("b", ("only",))
    lease = a.lease("only")
    await a.tick()
    await b.tick()
    assert keepers.holders("only") == ["a"]
    await lease.release()
    assert not lease.held()
    await eventually(lambda: b.holder_of("only") == "", what="b sees the lease released")
    await b.tick()
    assert keepers.holders("only") == ["b"]
    # a keeps it no more, whatever its ticks find.
    await a.tick()
    assert keepers.holders("only") == ["b"]


async def test_a_runner_waiting_for_its_lease_starts_when_it_is_taken_and_not_when_stopping(
    keepers: Keepers,
) -> None:
    a = await keepers.start("a", ("only",))
    stopping = asyncio.Event()
    waiting = asyncio.create_task(a.lease("only").wait_held(stopping))
    await asyncio.sleep(0)
    assert not waiting.done()
    await a.tick()
    assert await waiting
    await a.release_all()
    stopping.set()
    assert not await a.lease("only").wait_held(stopping)


async def test_a_source_added_on_a_replica_is_taken_at_once_and_kept_outside_the_share(keepers: Keepers) -> None:
    a = await keepers.start("a")
    b = await keepers.start("b")
    for keeper in (a, b):
        await keeper.tick()
    await keepers.everyone_sees({"a", "b"})
    for keeper in (a, b, a, b):
        await keeper.tick()
    assert keepers.shares() == {"a": 3, "b": 3}
    # Only a knows the new source (b learns of it when it restarts): a takes it, whatever its share.
    a.lease("added")
    await a.claim("added")
    assert keepers.holders("added") == ["a"]
    for keeper in (a, b, a, b):
        keepers.clock.advance(keeper.renew_every_s)
        await keeper.tick()
    assert keepers.holders("added") == ["a"]
    assert keepers.shares() == {"a": 4, "b": 3}
