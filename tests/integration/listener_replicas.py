"""Listener replicas in one process: each wired as ``services.listener.__main__`` wires one, on one NATS.

A replica here is the sources part of a listener: its lease keeper, its source registry and the
factory behind it, with its own counters. The test turns the shared manual clock and calls each
keeper's ``tick`` by hand, where the service runs it every third of the TTL.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clamor.v1 import mention_pb2
from services.listener.clients import AddedSourceStore, AlertPublisher, LeaseStore, MentionPublisher, StateStore
from services.listener.factory import SourceFactory
from services.listener.lease import live_holders
from services.listener.lease_keeper import LeaseKeeper
from services.listener.registry import SourceRegistry
from services.shared import subjects
from services.shared.status import Counters
from tests.support.clock import ManualClock, tracer
from tests.support.eventually import eventually

if TYPE_CHECKING:
    from collections.abc import Sequence

    from nats.js import JetStreamContext

TTL_S = 15.0


@dataclass
class Replica:
    name: str
    keeper: LeaseKeeper
    registry: SourceRegistry
    factory: SourceFactory
    leases: LeaseStore
    counters: Counters
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: bool = False

    def held(self) -> set[str]:
        return set(self.keeper.held())

    def wake(self) -> None:
        """Wake every source loop of this replica now, rather than after its interval."""
        for status in self.registry.statuses():
            self.registry.get(status.name).resume()

    async def polls_only_what_it_holds(self) -> None:
        """Wait until no loop of this replica is polling a source whose lease it lost or handed over.

        A poll under way when the lease moved runs to its end, as in the service; the loop then notices
        before its next poll and clears its next poll time. Waking the loops makes them look at once.
        """

        def settled() -> bool:
            self.wake()
            return all(s.next_poll_at is None for s in self.registry.statuses() if s.name not in self.held())

        await eventually(settled, what=f"replica {self.name} polls only the sources it holds", every_s=0.1)

    def count(self, name: str) -> int:
        return self.counters.get(name)

    async def stop(self, *, release: bool = True) -> None:
        """Stop the sources as SIGTERM does; ``release=False`` leaves the leases to lapse, as a kill does."""
        if self.stopped:
            return
        self.stopped = True
        self.stopping.set()
        await self.registry.run()
        if release:
            await self.keeper.release_all()
        await self.factory.aclose()
        await self.leases.close()


async def start_replica(
    js: JetStreamContext,
    name: str,
    sources: Sequence[Any],
    clock: ManualClock,
    *,
    ttl_s: float = TTL_S,
    counters: Counters | None = None,
) -> Replica:
    """A replica running ``sources`` (settings, as in the config file); it holds no lease until it ticks.

    ``counters``: the replica's own, for a test that reads back what it recorded (``RecordedMetrics``).
    """
    leases = await LeaseStore.open(js, replicas=1)
    keeper = LeaseKeeper(leases, holder=name, ttl_s=ttl_s, clock=clock)
    counters = counters or Counters()
    spans = tracer()
    factory = SourceFactory(
        publisher=MentionPublisher(js, spans),
        states=await StateStore.open(js, replicas=1),
        alerts=AlertPublisher(js, spans, clock=clock),
        leases=keeper,
        watches={},
        tracer=spans,
        counters=counters,
        # A new holder polls at once: the test, not a start-up spread, decides when polls happen.
        first_poll_within_s=0,
        clock=clock,
    )
    stopping = asyncio.Event()
    registry = SourceRegistry(
        factory, await AddedSourceStore.open(js, replicas=1), stopping, holder_of=keeper.holder_of, claim=keeper.claim
    )
    for settings in sources:
        registry.start(settings)
    return Replica(name, keeper, registry, factory, leases, counters, stopping)


async def sees_alive(replica: Replica, alive: set[str], clock: ManualClock) -> None:
    """Wait until ``replica``'s mirror of the leases shows just ``alive`` alive: KV's watcher brings the
    others' writes a moment after they happen, as it does in the service between two ticks."""
    await eventually(
        lambda: live_holders(replica.leases.leases(), clock()) == alive,
        what=f"replica {replica.name} sees {sorted(alive)} alive",
    )


async def settle(*replicas: Replica, clock: ManualClock) -> None:
    """Tick every replica twice in turn: the first round announces them all, the second shares the sources."""
    for replica in replicas:
        await replica.keeper.tick()
    for replica in replicas:
        await sees_alive(replica, {r.name for r in replicas}, clock)
    for replica in replicas:
        await replica.keeper.tick()


async def stored_mention_ids(js: JetStreamContext) -> list[str]:
    """Every mention id on the MENTIONS stream, in stream order (JetStream has dropped duplicate ids)."""
    info = await js.stream_info(subjects.MENTIONS.name)
    ids = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else []:
        raw = await js.get_msg(subjects.MENTIONS.name, seq=seq)
        ids.append(mention_pb2.Mention.FromString(raw.data or b"").id)
    return ids
