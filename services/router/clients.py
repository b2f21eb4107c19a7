"""Every outbound call the router makes: cases, their keys and the mention → case index in KV, deliveries,
escalations, triage feedback."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import grpc

from clamor.v1 import case_pb2, mention_case_pb2, triage_pb2, triage_service_pb2, triage_service_pb2_grpc
from services.router.domain import changed
from services.router.errors import CaseConflictError, PageTokenError
from services.router.records import CASE_CODEC, KEY_RECORD_CODEC, KeyRecord
from services.shared import subjects
from services.shared.errors import TransientError
from services.shared.jetstream import publish
from services.shared.kv_state import KvState, ProtoCodec
from services.shared.metrics import Metrics

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from nats.js import JetStreamContext
    from opentelemetry import trace
    from opentelemetry.context import Context

log = logging.getLogger(__name__)

# A page of ListCases when the caller names no size, and the most one page may hold.
DEFAULT_PAGE_SIZE = 100
LIST_PARALLEL_READS = 64


def _case_key(case_id: str) -> str:
    # Case ids are made to be valid KV keys (``case_id_for``), so they are their own keys.
    return case_id


class CaseStore:
    """Cases in JetStream KV, changed only through :meth:`KvState.change`, so replicas never overwrite each other.

    No mirror: the bucket holds every case with its posts, more than a replica should keep in memory.
    """

    def __init__(self, state: KvState[case_pb2.Case]) -> None:
        self._state = state

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int) -> CaseStore:
        state = await KvState.open(
            js, subjects.CASES_BUCKET, codec=CASE_CODEC, replicas=replicas, key=_case_key, mirror=False
        )
        return cls(state)

    async def get(self, case_id: str) -> tuple[case_pb2.Case, int] | None:
        """The case and its revision; None for an unknown id, or one that cannot be a key (a CRM's "ZD#4711")."""
        return await self._state.get(case_id)

    async def create_or_get(self, case: case_pb2.Case) -> tuple[case_pb2.Case, bool]:
        """Store ``case`` if its id is new (True); otherwise return the stored one (a redelivery)."""
        return await self._state.create_or_get(case.id, case)

    async def update(self, case_id: str, edit: Callable[[case_pb2.Case], bool]) -> case_pb2.Case:
        """Apply one of the domain's edits (False: nothing to do) to the stored case, as a pure change."""

        def change(found: case_pb2.Case | None) -> case_pb2.Case:
            if found is None:
                raise CaseConflictError(f"case {case_id} does not exist")
            return changed(found, edit)

        updated = await self._state.change(case_id, change)
        assert updated is not None  # ``change`` never returns None
        return updated

    async def page(self, size: int, token: str = "") -> tuple[list[case_pb2.Case], str]:
        """One page of cases, most recently changed first, and the token of the next page ("" after the last).

        Only the keys' metadata is listed; just this page's cases are read. The token is the revision
        the page ended at, so a case that changes while a caller pages moves to the front and is not
        repeated on a later page.
        """
        before = _revision(token)
        newest = await self._state.newest(before=before)
        chosen = newest[:size]
        gate = asyncio.Semaphore(LIST_PARALLEL_READS)

        async def read(case_id: str) -> case_pb2.Case | None:
            async with gate:
                found = await self.get(case_id)
            return found[0] if found is not None else None

        read_cases = await asyncio.gather(*(read(case_id) for case_id, _ in chosen))
        cases = [case for case in read_cases if case is not None]
        more = len(newest) > size
        return cases, str(chosen[-1][1]) if more else ""

    async def list(self, limit: int) -> list[case_pb2.Case]:
        """The ``limit`` most recently changed cases."""
        return (await self.page(limit))[0]


def _revision(token: str) -> int:
    if not token:
        return 0
    if not token.isdigit():
        raise PageTokenError(f"page token {token!r} was not made by ListCases")
    return int(token)


class CaseIndex:
    """Group key → open case, in a KV bucket whose entries expire after the grouping window.

    A key is claimed with KV ``create``, so two replicas placing posts of one customer at the
    same moment agree on one case. Every later post re-writes its keys, so the window slides.
    """

    def __init__(self, state: KvState[KeyRecord]) -> None:
        self._state = state

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int, window_s: float) -> CaseIndex:
        # No mirror: keys are only read one at a time, at the moment a post is placed.
        state = await KvState.open(
            js, subjects.CASE_KEYS_BUCKET, codec=KEY_RECORD_CODEC, replicas=replicas, ttl_s=window_s, mirror=False
        )
        return cls(state)

    async def claim(self, key: str, case_id: str, *, now: datetime) -> KeyRecord:
        """What ``key`` points to: ``case_id`` (claimed now) if the key was free, else the record that holds it."""
        return (await self._state.create_or_get(key, KeyRecord(case_id, now.timestamp())))[0]

    async def lookup(self, key: str) -> str | None:
        found = await self._state.get(key)
        return found[0].case_id if found is not None else None

    async def point(self, key: str, case_id: str, *, now: datetime) -> None:
        """Point ``key`` at ``case_id`` (and restart its window)."""
        await self._state.change(key, lambda _: KeyRecord(case_id, now.timestamp()))

    async def close(self) -> None:
        await self._state.close()


class MentionCaseIndex:
    """Mention → the case that holds it, for the reputation service (``router_mention_cases``).

    Written for every post placed, the founding post of a case and a post grouped into another
    customer's case alike, so an alert's sample post links to the case that really holds it. A
    redelivered post places into the same case and finds its record already there.
    """

    def __init__(self, state: KvState[mention_case_pb2.MentionCase]) -> None:
        self._state = state

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int) -> MentionCaseIndex:
        # Kept as long as the posts themselves (the TRIAGED stream), which the counters sample.
        state = await KvState.open(
            js,
            subjects.MENTION_CASES_BUCKET,
            codec=ProtoCodec(mention_case_pb2.MentionCase),
            replicas=replicas,
            ttl_s=subjects.TRIAGED.max_age_s,
            mirror=False,
        )
        return cls(state)

    async def record(self, mention_id: str, case_id: str, *, now: datetime) -> None:
        entry = mention_case_pb2.MentionCase(mention_id=mention_id, case_id=case_id)
        entry.placed_at.FromDatetime(now)
        await self._state.create_or_get(mention_id, entry)


class DeliveryQueue:
    """Asks the delivery worker to bring a destination up to date with a case (DELIVERIES stream)."""

    def __init__(self, js: JetStreamContext, tracer: trace.Tracer, *, metrics: Metrics | None = None) -> None:
        self._js = js
        self._tracer = tracer
        # messaging.client.sent.messages per publish; a no-op meter when none is handed in.
        self._metrics = metrics or Metrics()

    async def request(
        self,
        case: case_pb2.Case,
        destination: str,
        *,
        reason: str,
        now: datetime,
        context: Context | None = None,
        mention_id: str = "",
        msg_id: str = "",
    ) -> None:
        # One request per destination and history length: a redelivered complaint asks for nothing new.
        # ``mention_id`` names the post whose trace the request continues (none for clocks and actions).
        job = case_pb2.CaseDelivery(
            id=msg_id or f"{case.id}:{destination}:{len(case.history)}",
            case_id=case.id,
            destination=destination,
            reason=reason,
        )
        job.requested_at.FromDatetime(now)
        await publish(
            self._js,
            self._tracer,
            subjects.delivery_subject(destination),
            job,
            msg_id=job.id,
            mention_id=mention_id,
            context=context,
            metrics=self._metrics,
        )


class EscalationPublisher:
    def __init__(self, js: JetStreamContext, tracer: trace.Tracer, *, metrics: Metrics | None = None) -> None:
        self._js = js
        self._tracer = tracer
        # messaging.client.sent.messages per publish; a no-op meter when none is handed in.
        self._metrics = metrics or Metrics()

    async def publish(
        self, escalation: case_pb2.Escalation, *, mention_id: str = "", context: Context | None = None
    ) -> None:
        """``mention_id`` names the post whose trace this continues; empty for a clock's or an action's work."""
        await publish(
            self._js,
            self._tracer,
            subjects.escalation_subject(escalation.team),
            escalation,
            msg_id=escalation.id,
            mention_id=mention_id,
            context=context,
            metrics=self._metrics,
        )


class TriageFeedback:
    """Tells triage a case's posts were not complaints, through its ``Feedback`` RPC."""

    def __init__(self, address: str, *, timeout_s: float = 10.0) -> None:
        self._address = address
        self._timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None

    async def not_a_complaint(self, case: case_pb2.Case, *, actor: str, action_id: str) -> int:
        """One correction per post of the case; returns how many were stored anew."""
        if not self._address:
            return 0
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self._address)
        stub: Any = triage_service_pb2_grpc.TriageServiceStub(self._channel)
        stored = 0
        for triaged in case.mentions:
            request = triage_service_pb2.FeedbackRequest(
                mention_id=triaged.mention.id,
                text=triaged.mention.text,
                language=triaged.result.language,
                verdict=triage_pb2.VERDICT_NOISE,
                actor=actor or "router",
                request_id=f"{action_id}:{triaged.mention.id}",
            )
            try:
                # wait_for_ready: a triage that just restarted is reconnected to, not failed at once.
                response = await stub.Feedback(request, timeout=self._timeout_s, wait_for_ready=True)
            except grpc.aio.AioRpcError as exc:
                # Retried with the case action: the correction must reach the training data.
                raise TransientError(f"triage Feedback at {self._address}: {exc.code().name}: {exc.details()}") from exc
            stored += int(response.stored)
        return stored

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
