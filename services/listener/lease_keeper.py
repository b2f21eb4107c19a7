"""Keeps this replica's leases: announce the replica, renew what it holds, take its share of the rest.

Each :meth:`LeaseKeeper.tick` (every third of the TTL) renews the replica's presence lease, counts
the replicas alive (the holders of live leases, presences included), and keeps the replica's fair
share of the sources, ``ceil(sources / replicas)``: it renews the leases it holds up to that share,
lets any beyond it lapse at once, then takes free or lapsed leases until it holds its share. A
source added over gRPC is known to the replica that added it only (until the others restart), so
that replica claims it outside the share (:meth:`LeaseKeeper.claim`).

Why a share, not "take any free lease": with the latter the first replica up, or the one that stays
through a rolling update, would take every source and leave the others idle. With the share,
replicas that start together split the sources, a replica that joins is handed the excess of the
others on their next tick, and a killed replica's sources go to the survivors once its leases lapse
(about one TTL). A replica sheds only when the count of replicas rises and takes only below its
share, so the split settles rather than swings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import socket
from typing import TYPE_CHECKING

from services.listener.lease import Lease, fair_share, holds, live_holders
from services.listener.records import replica_key, source_lease_key
from services.shared.clock import Clock, system_clock
from services.shared.errors import TransientError

if TYPE_CHECKING:
    from datetime import datetime

    from services.listener.clients import LeaseStore

log = logging.getLogger(__name__)


def new_holder_id(host: str | None = None) -> str:
    """A replica's id: its host name (on Kubernetes, the pod's) as a valid KV key token, and a random
    part, so two processes on one host, or a process and its restarted successor, never share one."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", host if host is not None else socket.gethostname()).strip("-")
    return f"{name[:40] or 'listener'}-{secrets.token_hex(4)}"


class LeaseKeeper:
    """This replica's leases on the sources it was given (:meth:`lease`), kept by :meth:`tick`."""

    def __init__(self, store: LeaseStore, *, holder: str, ttl_s: float, clock: Clock = system_clock) -> None:
        self.holder = holder
        self.ttl_s = ttl_s
        self._store = store
        self._clock = clock
        # The sources to lease, in the order they were given: the order they are kept and shed in.
        self._names: dict[str, None] = {}
        # This replica's leases as it last wrote them: a runner polls only while its entry is live.
        self._held: dict[str, Lease] = {}
        # Sources added over gRPC on this replica (``claim``): kept whatever the share.
        self._claimed: set[str] = set()
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def renew_every_s(self) -> float:
        return self.ttl_s / 3

    def lease(self, name: str) -> KeptLease:
        """Start keeping a lease on source ``name``; its runner asks the returned view before each poll."""
        self._names[name] = None
        return KeptLease(self, name)

    def holds(self, name: str) -> bool:
        return holds(self._held.get(name), self.holder, self._clock())

    def held(self) -> list[str]:
        """The sources this replica polls now."""
        return [name for name in self._names if self.holds(name)]

    def holder_of(self, name: str) -> str:
        """Who polls source ``name`` now, as far as this replica knows; empty when nobody does."""
        if self.holds(name):
            return self.holder
        lease = self._store.peek(source_lease_key(name))
        return lease.holder if lease is not None and lease.live(self._clock()) else ""

    async def wait_held(self, name: str, stopping: asyncio.Event) -> bool:
        """Return True once this replica holds ``name``'s lease, False when ``stopping`` is set first."""
        while not stopping.is_set():
            if self.holds(name):
                return True
            await _first_of(self._changed, stopping)
        return False

    async def tick(self) -> None:
        """Renew, shed and take leases as the module says; a NATS failure skips one write, never the rest."""
        async with self._lock:
            if self._closed:
                return
            now = self._clock()
            await self._take(replica_key(self.holder), now)
            replicas = len(live_holders(self._store.leases(), now) | {self.holder})
            # A copy: AddSource may give a new name while a write is awaited.
            names = list(self._names)
            shared = [name for name in names if name not in self._claimed]
            share = fair_share(len(shared), replicas)
            mine = [name for name in shared if name in self._held]
            for name in mine[share:]:
                log.info("source %s: handed over; %d replicas share %d sources", name, replicas, len(shared))
                await self._release(name, now)
            for name in mine[:share] + [name for name in names if name in self._claimed]:
                await self._take_source(name, now)
            kept = sum(name in self._held for name in shared)
            for name in shared:
                if kept >= share:
                    break
                if name not in self._held and not self._held_by_another(name, now):
                    await self._take_source(name, now)
                    kept += name in self._held
        self._broadcast()

    async def claim(self, name: str) -> None:
        """Take ``name``'s lease now and keep it outside the share: a source just added over gRPC.

        The other replicas know such a source only once they restart (and restore it from KV), so
        this replica keeps it rather than handing it to a replica that cannot poll it; it is still
        taken only when free, and the others may take it if this replica dies.
        """
        async with self._lock:
            self._claimed.add(name)
            if not self._closed and name in self._names and not self._held_by_another(name, self._clock()):
                await self._take_source(name, self._clock())
        self._broadcast()

    async def forget(self, name: str) -> None:
        """Stop keeping ``name``'s lease (the source was removed), releasing it if held."""
        async with self._lock:
            self._names.pop(name, None)
            self._claimed.discard(name)
            if name in self._held:
                await self._release(name, self._clock())
        self._broadcast()

    async def release_all(self) -> None:
        """On shutdown, once the sources stopped: release every lease, so the others take them at once."""
        async with self._lock:
            self._closed = True
            now = self._clock()
            for name in list(self._held):
                await self._release(name, now)
            with contextlib.suppress(TransientError):
                await self._store.release(replica_key(self.holder), holder=self.holder, now=now)
        self._broadcast()

    def _held_by_another(self, name: str, now: datetime) -> bool:
        lease = self._store.peek(source_lease_key(name))
        return lease is not None and lease.holder != self.holder and lease.live(now)

    async def _take(self, key: str, now: datetime) -> Lease | None:
        try:
            return await self._store.take(key, holder=self.holder, now=now, ttl_s=self.ttl_s)
        except TransientError as exc:
            # The lease lapses by itself if this goes on, and this replica then stops polling on its own.
            log.warning("cannot renew or take lease %s: %s", key, exc)
            return None

    async def _take_source(self, name: str, now: datetime) -> None:
        stored = await self._take(source_lease_key(name), now)
        if stored is None:
            return
        if stored.holder == self.holder:
            if name not in self._held:
                log.info("source %s: replica %s polls it now", name, self.holder)
            self._held[name] = stored
        elif self._held.pop(name, None) is not None:
            log.warning("source %s: lease lapsed and taken by replica %s; not polling it here", name, stored.holder)

    async def _release(self, name: str, now: datetime) -> None:
        # Forgotten first: the runner stops before its next poll whether or not the write succeeds.
        self._held.pop(name, None)
        try:
            await self._store.release(source_lease_key(name), holder=self.holder, now=now)
        except TransientError as exc:
            log.warning("cannot release the lease on source %s (it lapses by itself): %s", name, exc)

    def _broadcast(self) -> None:
        """Wake every runner waiting for a lease: it looks again at what this replica holds."""
        self._changed.set()
        self._changed = asyncio.Event()


class KeptLease:
    """One source's lease as its runner sees it (a :class:`services.listener.lease.SourceLease`)."""

    def __init__(self, keeper: LeaseKeeper, name: str) -> None:
        self._keeper = keeper
        self._name = name

    @property
    def holder(self) -> str:
        return self._keeper.holder_of(self._name)

    def held(self) -> bool:
        return self._keeper.holds(self._name)

    async def wait_held(self, stopping: asyncio.Event) -> bool:
        return await self._keeper.wait_held(self._name, stopping)

    async def release(self) -> None:
        await self._keeper.forget(self._name)


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
