"""Which listener replica polls a source: one lease per source, and the pure rules that change it.

A lease names its holder and when it lapses. A replica takes a lease that is free or lapsed, renews
its own well before it lapses, and polls a source only while its own lease on it is live by its own
clock, so it stops by itself when it cannot renew. Every change is computed here from the lease as
stored and written by the caller with compare-and-set on the record's revision: of two replicas
racing for one lease, the second finds the first's lease live and writes nothing.

Lapse times are read on the clock of the replica that looks at them, so the replicas' clocks must
agree to well within the TTL (NTP on every node does): a lease is renewed every third of its TTL,
so a skew under two thirds of it never lets a second replica take a live lease.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Iterable


@dataclass(frozen=True)
class Lease:
    holder: str
    renewed_at: datetime
    expires_at: datetime

    def live(self, now: datetime) -> bool:
        return now < self.expires_at


def taken(current: Lease | None, *, holder: str, now: datetime, ttl_s: float) -> Lease:
    """``holder``'s lease from ``now`` for ``ttl_s`` (a take, or a renewal of its own), or ``current``
    itself when another holder's lease on it is live."""
    if current is not None and current.holder != holder and current.live(now):
        return current
    return Lease(holder=holder, renewed_at=now, expires_at=now + timedelta(seconds=ttl_s))


def released(current: Lease | None, *, holder: str, now: datetime) -> Lease | None:
    """The lease lapsed at ``now`` when ``holder`` holds it, so the next replica need not wait out
    the TTL; otherwise ``current`` itself (someone else's, or lapsed already)."""
    if current is None or current.holder != holder or not current.live(now):
        return current
    return replace(current, expires_at=now)


def holds(lease: Lease | None, holder: str, now: datetime) -> bool:
    return lease is not None and lease.holder == holder and lease.live(now)


def live_holders(leases: Iterable[Lease], now: datetime) -> set[str]:
    """The replicas alive now: every replica renews its presence lease, so each has one live."""
    return {lease.holder for lease in leases if lease.live(now)}


def fair_share(sources: int, replicas: int) -> int:
    """The most sources one replica takes while ``replicas`` share them: the rest go to the others."""
    return -(-sources // max(replicas, 1))


class SourceLease(Protocol):
    """A runner's view of its source's lease: poll only while :meth:`held`."""

    @property
    def holder(self) -> str:
        """The replica that holds the lease now; empty while none does."""
        ...

    def held(self) -> bool: ...

    async def wait_held(self, stopping: asyncio.Event) -> bool:
        """Return True once this replica holds the lease, False when ``stopping`` is set first."""
        ...

    async def release(self) -> None:
        """Give the lease up and stop keeping it (the source was removed)."""
        ...


class SoleReplica:
    """The lease of a source that this process alone runs (a bench, a test, a one-off tool): always held."""

    holder = "this process"

    def held(self) -> bool:
        return True

    async def wait_held(self, stopping: asyncio.Event) -> bool:
        return not stopping.is_set()

    async def release(self) -> None:
        return None


SOLE_REPLICA = SoleReplica()
