"""The router's JetStream handler: complaint → case → destinations → escalation.

Every step is idempotent, so a redelivery after a crash at any point repeats work without
repeating effects: the case is created once (KV create), the outbox writes a case id once,
and the escalation's Nats-Msg-Id makes JetStream drop a repeat.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from services.router.domain import (
    apply_action,
    escalation_for,
    mark_escalated,
    mark_routed,
    new_case,
    should_escalate,
)
from services.router.errors import CaseConflictError

if TYPE_CHECKING:
    from opentelemetry import trace

    from clamor.v1 import case_pb2, triage_pb2
    from services.router.clients import CaseStore, EscalationPublisher, Outbox
    from services.router.config import RouterSettings
    from services.shared.pull_consumer import Delivery
    from services.shared.status import Counters

log = logging.getLogger(__name__)

FIRST_ESCALATION_LEVEL = 1


class RouterHandler:
    def __init__(
        self,
        settings: RouterSettings,
        *,
        cases: CaseStore,
        outbox: Outbox,
        escalations: EscalationPublisher,
        tracer: trace.Tracer,
        counters: Counters,
    ) -> None:
        self._settings = settings
        self._cases = cases
        self._outbox = outbox
        self._escalations = escalations
        self._tracer = tracer
        self._counters = counters

    async def handle(self, delivery: Delivery[triage_pb2.TriagedMention]) -> None:
        triaged = delivery.payload
        now = datetime.now(UTC)
        case = await self._cases.create_or_get(new_case(triaged, team=self._settings.team, now=now))
        with self._tracer.start_as_current_span(
            f"deliver {self._outbox.name}", context=delivery.context, attributes={"clamor.case.id": case.id}
        ):
            written = await asyncio.to_thread(self._outbox.deliver, case)
        if written:
            self._counters.inc("cases")
        await self._cases.update(case.id, lambda c: _routed_once(c, self._outbox.name, now))
        if should_escalate(case.severity, self._settings.escalate_at):
            escalation = escalation_for(
                case, team=self._settings.escalation_team, level=FIRST_ESCALATION_LEVEL, now=now
            )
            await self._escalations.publish(escalation, mention_id=triaged.mention.id, context=delivery.context)
            await self._cases.update(case.id, lambda c: _escalated_once(c, escalation, now))
            self._counters.inc("escalations")

    async def on_action(self, delivery: Delivery[case_pb2.CaseAction]) -> None:
        """An acknowledgement or resolution from a responder or a CRM, written into the case's history."""
        action = delivery.payload
        now = datetime.now(UTC)
        try:
            await self._cases.update(action.case_id, lambda case: apply_action(case, action, now=now))
        except CaseConflictError:
            if await self._cases.get(action.case_id) is None:
                # Nothing to record it on (a mistyped id, or a case already erased): say so, keep nothing.
                log.warning("case action %s names unknown case %s; ignored", action.id, action.case_id)
                return
            raise
        self._counters.inc("case_actions")


def _routed_once(case: case_pb2.Case, destination: str, now: datetime) -> bool:
    if destination in case.destinations:
        return False
    mark_routed(case, destination=destination, now=now)
    return True


def _escalated_once(case: case_pb2.Case, escalation: case_pb2.Escalation, now: datetime) -> bool:
    if case.escalation_level >= escalation.level:
        return False
    mark_escalated(case, escalation, now=now)
    return True
