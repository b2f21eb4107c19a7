"""The delivery worker: brings each destination up to date with a case, never twice, never lost.

A CaseDelivery names a case and a destination. The worker reads the case as it is now and the
destination's ticket record (KV ``router_tickets``): no ticket yet → ``create`` (idempotent at the
CRM, by external id); a ticket → ``update`` with the history entries the CRM has not seen. The
record is written only after the CRM said 2xx, so a crash in between repeats the call, and the
CRM's external-id lookup turns the repeated create into the existing ticket.

That existing ticket may have been made from an older history than the one the repeated create
carries (a post joined the case while the answer was lost): each create attempt therefore notes
in the record the history length it carries, and a create that did not make the ticket itself
counts as synced only the shortest of them, then sends the rest as an update
(docs/adr/0013-crm-sync-after-a-lost-answer.md).

Failures, by class:
- a transient one (network, 408/429/5xx) is retried with equal-jitter exponential backoff, never
  sooner than the ``Retry-After`` the CRM asked for, which also pauses the destination's budget;
- once the destination's ``retry_for_s`` since the first request is spent, or at once for a
  permanent refusal (401, 400…), the delivery goes to dead letters, from where it is replayed;
- 410 Gone disables the destination (KV ``router_destinations``) until a replay re-enables it.

Every attempt counts once in ``clamor.router.crm.requests`` and ``clamor.router.crm.duration`` by
destination and outcome: ``delivered`` (the destination is up to date with the case), ``retried``
(the attempt failed and the delivery goes back to JetStream for another) or ``failed`` (given up:
the delivery goes to dead letters, also counted in ``clamor.router.dead_letters``). An attempt the
budget or another replica's claim turned back before any call counts as retried too: the case still
waits for its destination.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, replace
from datetime import UTC
from typing import TYPE_CHECKING

from clamor.v1 import router_state_pb2
from services.router.delivery.destinations.base import DestinationGoneError, DestinationUnavailableError, Ticket
from services.router.domain import crm_events
from services.router.errors import RouterError
from services.shared import subjects
from services.shared.budget import RateBudget
from services.shared.clock import Clock, system_clock
from services.shared.errors import PermanentError, TransientError
from services.shared.kv_state import KvState, MappedCodec
from services.shared.metric_catalogue import DESTINATION_NAME, OUTCOME

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from nats.js import JetStreamContext
    from opentelemetry import trace

    from clamor.v1 import case_pb2
    from services.router.clients import CaseStore
    from services.router.config import DeliverySettings
    from services.router.delivery.destinations.base import Destination
    from services.shared.pull_consumer import Delivery
    from services.shared.status import Counters

log = logging.getLogger(__name__)

# A replica that claimed a ticket's creation and died is taken over after this long.
CREATE_LEASE_S = 60.0
# Longer waits for a destination's budget are spent back in JetStream (nak with delay), not in memory.
MAX_BUDGET_WAIT_S = 2.0
# Outcomes of one delivery attempt, as the metrics name them.
DELIVERED = "delivered"
RETRIED = "retried"
FAILED = "failed"


class RetryDeliveryError(TransientError, RouterError):
    """Try again after ``retry_after_s``: the backoff, or longer when the CRM asked for it."""


class DeliveryExpiredError(PermanentError, RouterError):
    """The destination's retry period is over: the delivery goes to dead letters."""


@dataclass(frozen=True)
class DestinationPolicy:
    rate_per_s: float
    burst: int
    retry_for_s: float


@dataclass(frozen=True)
class TicketRecord:
    """What one destination holds of one case; ``claim`` is set while a replica creates the ticket."""

    remote_id: str = ""
    url: str = ""
    synced: int = 0
    claim: str = ""
    claimed_at: float = 0.0
    # The shortest history a create attempt carried, 0 when none did: see ``claim_creation``.
    attempted: int = 0


def claim_creation(
    found: TicketRecord | None, *, token: str, now_s: float, carried: int, lease_s: float = CREATE_LEASE_S
) -> TicketRecord | None:
    """The record once job ``token`` claims the ticket's creation for a case of ``carried`` history entries.

    A ticket already made, or a live claim of another job, is left as it is. A claim taken keeps the
    shortest history any earlier attempt carried: an attempt whose answer was lost may have made the
    ticket from it, and nothing tells which attempt did.
    """
    if found is not None and found.remote_id:
        return found
    if found is not None and found.claim != token and now_s - found.claimed_at < lease_s:
        return found
    attempted = min(found.attempted, carried) if found is not None and found.attempted else carried
    return TicketRecord(claim=token, claimed_at=now_s, attempted=attempted)


def release_claim(found: TicketRecord | None, *, token: str) -> TicketRecord | None:
    """The record once job ``token`` gives its claim up after a failed create; the attempts stay noted."""
    if found is None or found.claim != token:
        return None
    return replace(found, claim="", claimed_at=0.0)


def created_record(found: TicketRecord | None, ticket: Ticket, *, carried: int) -> TicketRecord:
    """The record once a create answered with ``ticket`` for a case of ``carried`` history entries.

    A ticket this very create made holds the history it carried. One it found was made by an
    earlier attempt, from no less than the shortest history any attempt carried: the entries
    after that are sent as an update, and at worst one of them reaches the CRM twice, never not at all.
    """
    if ticket.created:
        synced = carried
    else:
        noted = found.attempted if found is not None else 0
        synced = min(noted, carried) if noted else 0
    if found is not None and found.remote_id == ticket.remote_id:
        synced = max(synced, found.synced)  # another job's sync to this very ticket already went through
    return TicketRecord(remote_id=ticket.remote_id, url=ticket.url, synced=synced)


TICKET_CODEC = MappedCodec(
    router_state_pb2.DeliveryTicket,
    to_proto=lambda r: router_state_pb2.DeliveryTicket(
        remote_id=r.remote_id,
        url=r.url,
        synced=r.synced,
        claim=r.claim,
        claimed_at=r.claimed_at,
        attempted=r.attempted,
    ),
    from_proto=lambda m: TicketRecord(
        remote_id=m.remote_id,
        url=m.url,
        synced=m.synced,
        claim=m.claim,
        claimed_at=m.claimed_at,
        attempted=m.attempted,
    ),
)


@dataclass(frozen=True)
class Disabled:
    reason: str
    at: str


DISABLED_CODEC = MappedCodec(
    router_state_pb2.DisabledDestination,
    to_proto=lambda r: router_state_pb2.DisabledDestination(reason=r.reason, at=r.at),
    from_proto=lambda m: Disabled(m.reason, m.at),
)


async def open_tickets(js: JetStreamContext, *, replicas: int) -> KvState[TicketRecord]:
    # No mirror: a ticket record is read when its case is delivered, never scanned.
    return await KvState.open(js, subjects.ROUTER_TICKETS_BUCKET, codec=TICKET_CODEC, replicas=replicas, mirror=False)


async def open_disabled(js: JetStreamContext, *, replicas: int) -> KvState[Disabled]:
    return await KvState.open(js, subjects.ROUTER_DESTINATIONS_BUCKET, codec=DISABLED_CODEC, replicas=replicas)


class DeliveryWorker:
    def __init__(
        self,
        destinations: Mapping[str, Destination],
        policies: Mapping[str, DestinationPolicy],
        *,
        cases: CaseStore,
        tickets: KvState[TicketRecord],
        disabled: KvState[Disabled],
        settings: DeliverySettings,
        counters: Counters,
        tracer: trace.Tracer,
        clock: Clock = system_clock,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._tracer = tracer
        self._destinations = destinations
        self._policies = policies
        self._cases = cases
        self._tickets = tickets
        self._disabled = disabled
        self._settings = settings
        self._counters = counters
        self._clock = clock
        self._jitter = jitter
        self._budgets = {name: RateBudget(p.rate_per_s, burst=p.burst) for name, p in policies.items()}
        for name, destination in destinations.items():
            # Spent per request the destination makes (a Zendesk create is a lookup and a POST).
            destination.budget = self._budgets.get(name)
        # One sync per (destination, case) at a time in this replica; the claim covers other replicas.
        self._locks: dict[str, asyncio.Lock] = {}

    def backoff_s(self, attempt: int) -> float:
        """Equal jitter: half the exponential step, plus up to the other half at random."""
        step = min(self._settings.max_retry_s, self._settings.first_retry_s * 2 ** max(0, attempt - 1))
        return float(step / 2 + self._jitter() * step / 2)

    async def handle(self, delivery: Delivery[case_pb2.CaseDelivery]) -> None:
        name = delivery.payload.destination
        started = time.perf_counter()
        try:
            await self._attempt(delivery)
        except Exception as exc:
            # Dead-lettered by the consumer: a permanent error, or a last allowed delivery.
            given_up = (
                isinstance(exc, PermanentError) or delivery.attempt >= subjects.ROUTER_DELIVERY_CONSUMER.max_deliver
            )
            self._measure(name, FAILED if given_up else RETRIED, started)
            if given_up:
                self._counters.metrics.add("clamor.router.dead_letters", 1, {DESTINATION_NAME: name})
            raise
        self._measure(name, DELIVERED, started)

    def _measure(self, name: str, outcome: str, started: float) -> None:
        attributes = {DESTINATION_NAME: name, OUTCOME: outcome}
        self._counters.metrics.add("clamor.router.crm.requests", 1, attributes)
        self._counters.metrics.record("clamor.router.crm.duration", time.perf_counter() - started, attributes)

    async def _attempt(self, delivery: Delivery[case_pb2.CaseDelivery]) -> None:
        job = delivery.payload
        name = job.destination
        destination = self._destinations.get(name)
        if destination is None:
            raise PermanentError(f"no destination named {name!r} (removed from the config?); replay it once it is back")
        off = self._disabled.peek(name)
        if off is not None:
            raise PermanentError(
                f"destination {name!r} is disabled since {off.at} ({off.reason}); replay re-enables it"
            )
        policy = self._policies[name]
        now = self._clock()
        budget = self._budgets[name]
        try:
            wait = budget.wait_s()
            if wait > MAX_BUDGET_WAIT_S:
                # Paused by a Retry-After, or far over budget: hand the message back rather than hold it.
                raise RetryDeliveryError(f"{name} is paused for {wait:.0f}s", retry_after_s=wait)
            attributes: dict[str, str | int] = {
                "clamor.case.id": job.case_id,
                "clamor.destination": name,
                "clamor.attempt": delivery.attempt,
            }
            with self._tracer.start_as_current_span(f"deliver {name}", context=delivery.context, attributes=attributes):
                # The message's stream sequence names this job across redeliveries (see _create's claim).
                await self._sync(destination, job.case_id, job_token=str(delivery.msg.metadata.sequence.stream))
        except DestinationGoneError as exc:
            off = Disabled(str(exc)[:300], now.isoformat(timespec="seconds"))
            await self._disabled.change(name, lambda _: off)
            log.error("destination %s disabled: %s", name, exc)
            raise
        except PermanentError:
            raise
        except Exception as exc:
            asked = exc.retry_after_s if isinstance(exc, TransientError) else None
            asked_s = asked if asked is not None and asked > 0 else 0.0
            if asked_s and isinstance(exc, DestinationUnavailableError):
                # Only the CRM's own "come back later" pauses the destination; waiting for another
                # delivery's claim, or for the budget itself, holds up this case alone.
                budget.pause(asked_s)
            delay = max(self.backoff_s(delivery.attempt), asked_s)
            elapsed = (now - job.requested_at.ToDatetime(tzinfo=UTC)).total_seconds()
            if elapsed + delay > policy.retry_for_s:
                raise DeliveryExpiredError(
                    f"{name}: gave up on case {job.case_id} after {delivery.attempt} attempts over {elapsed:.0f}s "
                    f"(retry period {policy.retry_for_s:.0f}s): {exc}"
                ) from exc
            raise RetryDeliveryError(f"{name}: case {job.case_id}: {exc}", retry_after_s=delay) from exc
        self._counters.inc(f"delivered:{name}")

    async def _sync(self, destination: Destination, case_id: str, *, job_token: str) -> None:
        key = f"{destination.name}/{case_id}"
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                await self._sync_locked(destination, case_id, key, job_token)
        finally:
            if not lock.locked() and self._locks.get(key) is lock:
                del self._locks[key]

    async def _sync_locked(self, destination: Destination, case_id: str, key: str, job_token: str) -> None:
        found = await self._cases.get(case_id)
        if found is None:
            raise PermanentError(f"case {case_id} does not exist")
        case = found[0]
        record = await self._tickets.get(key)
        current = record[0] if record is not None else None
        if current is None or not current.remote_id:
            current = await self._create(destination, case, key, job_token)
            if current is None:
                return  # another job made the ticket meanwhile; the next request syncs the rest
        if current.synced >= len(case.history):
            return  # an older request, already covered by a later sync
        events = crm_events(case, current.synced, destination=destination.name)
        ticket = Ticket(current.remote_id, current.url)
        if events:
            ticket = await destination.update(case, ticket, events)
        synced = len(case.history)
        await self._tickets.change(key, lambda r: replace(r or current, synced=max((r or current).synced, synced)))

    async def _create(
        self, destination: Destination, case: case_pb2.Case, key: str, job_token: str
    ) -> TicketRecord | None:
        """Create the ticket under a claim, so two replicas never create one case's ticket at once.

        The claim is held by the job (its stream sequence), not the process: the same job
        redelivered after a crash takes its own claim over at once, and the CRM's external-id
        lookup turns its repeated create into the ticket the crashed attempt made. Another job
        waits for the claim's lease.

        Returns the ticket's record, whose ``synced`` may fall short of the case (the ticket was
        made by an earlier attempt), or None when another job made the ticket meanwhile.
        """
        now_s = self._clock().timestamp()
        carried = len(case.history)
        held = await self._tickets.change(
            key, lambda found: claim_creation(found, token=job_token, now_s=now_s, carried=carried)
        )
        if held is not None and held.remote_id:
            return None
        if held is None or held.claim != job_token:
            raise RetryDeliveryError(f"another delivery is creating the ticket for {case.id}", retry_after_s=5.0)
        try:
            ticket = await destination.create(case)
        except BaseException:
            # A failed create gives the claim up: the next job (a retry, a replay) must not wait out the
            # lease for a ticket nobody is creating. The CRM's external-id lookup keeps a retry safe.
            await self._tickets.change(key, lambda found: release_claim(found, token=job_token))
            raise
        done = await self._tickets.change(key, lambda found: created_record(found, ticket, carried=carried))
        self._counters.inc("tickets")
        return done
