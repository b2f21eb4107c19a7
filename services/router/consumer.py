"""The router's JetStream handlers: complaint → case → destinations → escalation, and answers about cases.

Every step is idempotent, so a redelivery after a crash at any point repeats work without
repeating effects: a post joins its case once (by mention id), and so does a brand's own reply
(in the case's history only: it never founds or escalates a case), a case is created once (KV
create), a delivery request has a stable Nats-Msg-Id per destination and history length, and an
escalation's id is stable per case, step and team (JetStream drops repeats, and the case's
history is checked before publishing again).

Metrics count what a write changed, never what a handler was asked to do, so a redelivery or a
second replica repeating a step counts nothing twice: a case opened is a KV create that made the
case, a post grouped or an escalation is a history entry the case did not hold yet. Cases opened
and grouped carry the owning team, escalations the team escalated to, SLA warnings and breaches
the owning team (whose deadline it was) and the policy.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from clamor.v1 import case_pb2
from services.router.domain import (
    BRAND_REPLY,
    add_destinations,
    apply_action,
    attach_brand_reply,
    attach_post,
    case_id_for,
    describe,
    escalation_for,
    escalation_ref,
    group_keys,
    is_open,
    mark_escalated,
    new_case,
    note_breach,
    recorded,
    should_escalate,
)
from services.router.errors import CaseConflictError, CaseNotYetError
from services.router.rules import Defaults, Facts, RoutingDecision, Rule, route
from services.router.sla import deadlines
from services.shared.case_names import action_name
from services.shared.clock import Clock, system_clock
from services.shared.metric_catalogue import POLICY, TEAM

if TYPE_CHECKING:
    from collections.abc import Sequence

    from clamor.v1 import triage_pb2
    from services.router.clients import (
        CaseIndex,
        CaseStore,
        DeliveryQueue,
        EscalationPublisher,
        MentionCaseIndex,
        TriageFeedback,
    )
    from services.router.config import RouterSettings
    from services.router.sla import SlaStep
    from services.router.sla_clock import SlaClocks, SlaRecord
    from services.shared.pull_consumer import Delivery
    from services.shared.status import Counters

log = logging.getLogger(__name__)

IMMEDIATE_LEVEL = 1
# How long a post waits for the case another post of the same customer is opening, before it takes
# the group key over (that post's router died between claiming the key and creating the case).
CLAIM_GRACE_S = 30.0
# How many times a brand's post in a thread looks for the thread's case: a reply fetched in the same
# batch as the complaint it answers is handled alongside it, before the case exists.
BRAND_REPLY_LOOKS = 2


class RulesHolder:
    """The rules in force; ``ReloadRules`` swaps the list, and the next complaint uses the new one."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.current: tuple[Rule, ...] = tuple(rules)


class RouterHandler:
    def __init__(
        self,
        settings: RouterSettings,
        *,
        rules: RulesHolder,
        cases: CaseStore,
        index: CaseIndex,
        queue: DeliveryQueue,
        escalations: EscalationPublisher,
        clocks: SlaClocks,
        mentions: MentionCaseIndex,
        feedback: TriageFeedback,
        counters: Counters,
        clock: Clock = system_clock,
    ) -> None:
        self._settings = settings
        self._rules = rules
        self._cases = cases
        self._index = index
        self._queue = queue
        self._escalations = escalations
        self._clocks = clocks
        self._mentions = mentions
        self._feedback = feedback
        self._counters = counters
        self._clock = clock
        self._policies = {policy.name: policy for policy in settings.sla_policies}
        self._defaults = Defaults(
            destinations=tuple(settings.default_destinations),
            team=settings.team,
            priority=settings.default_priority,
            sla=settings.default_sla,
        )

    def now(self) -> datetime:
        return self._clock()

    async def handle(self, delivery: Delivery[triage_pb2.TriagedMention]) -> None:
        triaged = delivery.payload
        now = self._clock()
        if triaged.mention.own_account:
            # Before the rules: a rule may route noise, and a forged or mistaken verdict may say
            # complaint, but the brand's own post never founds or escalates a case.
            await self._brand_reply(triaged, now, delivery)
            return
        decision = route(self._rules.current, Facts.from_triaged(triaged), self._defaults)
        if not decision.routed:
            self._counters.inc("not_routed")
            return
        case, created = await self._place(triaged, decision, now)
        # The reputation service links this post to its case through the index. The two writes are
        # independent and each idempotent, so they go out together: a redelivery after either fails
        # repeats both harmlessly, and the index costs no extra round trip on the hot path.
        _, case = await asyncio.gather(
            self._mentions.record(triaged.mention.id, case.id, now=now),
            self._cases.update(case.id, lambda c: add_destinations(c, decision.destinations, now=now)),
        )
        if created:
            self._counters.inc("cases")
            if case.sla_policy and is_open(case):
                await self._clocks.start(
                    case_id=case.id,
                    policy=case.sla_policy,
                    opened_at=case.created_at.ToDatetime(tzinfo=UTC),
                    team=case.team,
                )
        teams = list(decision.escalate_to)
        if should_escalate(case.severity, self._settings.escalate_at):
            teams.append(self._settings.escalation_team)
        for team in dict.fromkeys(teams):
            rules = ", ".join(decision.matched) or "the defaults"
            escalation = escalation_for(
                case, team=team, level=IMMEDIATE_LEVEL, now=now, step="now", reason=f"{describe(case)} ({rules})"
            )
            case = await self._escalate(case, escalation, now, delivery)
        await self._deliver(case, reason="created" if created else "post added", now=now, delivery=delivery)

    async def _brand_reply(self, triaged: triage_pb2.TriagedMention, now: datetime, delivery: Delivery[Any]) -> None:
        """File a post by one of the brand's own accounts in its thread's open case, if there is one.

        Only the thread is looked up: the author key would find the brand's own posts, and the
        brand is not the customer. A thread without any case is looked up once more after a moment
        (``BRAND_REPLY_LOOKS``), for the complaint being placed at the same time.
        """
        keys = group_keys(triaged.mention, by_author=False, by_thread=self._settings.grouping.by_thread)
        case_id = await self._index.lookup(keys[0]) if keys else None
        found = await self._cases.get(case_id) if case_id else None
        if keys and found is None and delivery.attempt < BRAND_REPLY_LOOKS:
            raise CaseNotYetError(f"no case in {keys[0]} yet for the brand's post {triaged.mention.id}; looking again")
        if found is not None and is_open(found[0]):
            added = False

            def change(case: case_pb2.Case) -> bool:
                nonlocal added
                added = attach_brand_reply(case, triaged, now=now)
                return added

            case = await self._cases.update(found[0].id, change)
            if added:
                self._counters.inc("brand_replies")
            # Asked again on a redelivery too (a crash may have come between the write and the request):
            # the request's id is stable per history length, so JetStream drops a repeat.
            await self._deliver(case, reason=BRAND_REPLY, now=now, delivery=delivery)
        self._counters.inc("own_posts")

    async def _place(
        self, triaged: triage_pb2.TriagedMention, decision: RoutingDecision, now: datetime
    ) -> tuple[case_pb2.Case, bool]:
        """The post's case: an open one of the same thread or customer, else its own (True: it founded it).

        A redelivered founding post finds its own case again and is told True once more, so every
        step after this one (the SLA clock, escalations, deliveries) runs again, idempotently.
        """
        grouping = self._settings.grouping
        keys = group_keys(triaged.mention, by_author=grouping.by_author, by_thread=grouping.by_thread)
        own_id = case_id_for(triaged.mention.id)
        for key in keys:
            held = await self._index.lookup(key)
            joined = await self._join(held, own_id, triaged, now) if held else None
            if joined is not None:
                for other in keys:
                    await self._index.point(other, joined.id, now=now)
                return joined, False
        for key in keys:
            # Claimed with KV create: of two posts of one customer placed at once (two replicas, or one
            # batch), one founds the case and the other joins it.
            holder = await self._index.claim(key, own_id, now=now)
            if holder.case_id == own_id:
                continue
            joined = await self._join(holder.case_id, own_id, triaged, now)
            if joined is not None:
                return joined, False
            if await self._cases.get(holder.case_id) is None:
                if now.timestamp() - holder.at < CLAIM_GRACE_S:
                    raise CaseConflictError(f"case {holder.case_id} of the same customer is being opened; retrying")
                # Claimed by a post whose router died before opening the case: the key is this post's now.
                await self._index.point(key, own_id, now=now)
        policy = self._policies.get(decision.sla)
        due = deadlines(policy, opened_at=now) if policy is not None else (None, None)
        case, made = await self._cases.create_or_get(new_case(triaged, decision, keys=keys, now=now, due=due))
        if made:
            self._counters.metrics.add("clamor.router.cases.opened", 1, {TEAM: case.team})
        for key in keys:
            await self._index.point(key, case.id, now=now)
        return case, True

    async def _join(
        self, case_id: str, own_id: str, triaged: triage_pb2.TriagedMention, now: datetime
    ) -> case_pb2.Case | None:
        if case_id == own_id:
            return None
        found = await self._cases.get(case_id)
        if found is None or not is_open(found[0]):
            return None
        if len(found[0].mentions) >= self._settings.grouping.max_posts and not _holds(found[0], triaged):
            return None
        added = False

        def change(case: case_pb2.Case) -> bool:
            nonlocal added
            added = attach_post(case, triaged, now=now)
            return added

        case = await self._cases.update(case_id, change)
        self._counters.inc("posts_grouped")
        if added:
            self._counters.metrics.add("clamor.router.cases.grouped", 1, {TEAM: case.team})
        return case

    async def _escalate(
        self, case: case_pb2.Case, escalation: case_pb2.Escalation, now: datetime, delivery: Delivery[Any]
    ) -> case_pb2.Case:
        if recorded(case, escalation_ref(escalation)):
            return case  # sent before (a redelivery): JetStream's duplicate window may have passed
        await self._escalations.publish(escalation, mention_id=delivery.mention_id, context=delivery.context)
        self._counters.inc("escalations")
        marked = False

        def change(c: case_pb2.Case) -> bool:
            nonlocal marked
            marked = mark_escalated(c, escalation, now=now)
            return marked

        case = await self._cases.update(case.id, change)
        if marked:
            self._counters.metrics.add("clamor.router.cases.escalated", 1, {TEAM: escalation.team})
        return case

    async def _deliver(
        self, case: case_pb2.Case, *, reason: str, now: datetime, delivery: Delivery[Any] | None = None
    ) -> None:
        """Ask every destination of the case to catch up; the request continues the trace of ``delivery``."""
        for destination in case.destinations:
            await self._queue.request(
                case,
                destination,
                reason=reason,
                now=now,
                context=delivery.context if delivery else None,
                mention_id=delivery.mention_id if delivery else "",
            )

    async def on_sla_step(self, record: SlaRecord, step: SlaStep) -> None:
        """A due warning, breach or further level of a case's SLA clock."""
        found = await self._cases.get(record.case_id)
        if found is None:
            return
        now = self._clock()
        clock = step.clock.replace("_", " ")
        if step.kind == "warning":
            reason = f"{clock} due soon (SLA {record.policy})"
        else:
            reason = f"{clock} SLA {record.policy} breached, level {step.level}"
        escalation = escalation_for(
            found[0], team=step.team, level=step.level, now=now, reason=reason, step=f"sla:{step.id}"
        )
        if recorded(found[0], escalation_ref(escalation)):
            return  # published and written before the step was recorded (a crash): only the record is left
        await self._escalations.publish(escalation)
        self._counters.inc("sla_warnings" if step.kind == "warning" else "sla_escalations")

        marked = False

        def change(case: case_pb2.Case) -> bool:
            nonlocal marked
            marked = mark_escalated(case, escalation, now=now)
            breached = step.kind != "warning" and note_breach(case, step.clock)
            return marked or breached

        case = await self._cases.update(record.case_id, change)
        if marked:
            self._count_sla_step(record, step)
        await self._deliver(case, reason="escalated", now=now)

    def _count_sla_step(self, record: SlaRecord, step: SlaStep) -> None:
        """A warning is the owner's; a breach is both the owner's breach and an escalation to the level's team."""
        metrics = self._counters.metrics
        owner = {TEAM: record.team, POLICY: record.policy}
        if step.kind == "warning":
            metrics.add("clamor.router.sla.warnings", 1, owner)
            return
        if step.kind == "breach":
            metrics.add("clamor.router.sla.breaches", 1, owner)
        metrics.add("clamor.router.cases.escalated", 1, {TEAM: step.team})

    async def on_action(self, delivery: Delivery[case_pb2.CaseAction]) -> None:
        """An acknowledgement, resolution or "not a complaint" from a responder or a CRM."""
        action = delivery.payload
        now = self._clock()
        try:
            case = await self._cases.update(action.case_id, lambda c: apply_action(c, action, now=now))
        except CaseConflictError:
            if await self._cases.get(action.case_id) is None:
                # Nothing to record it on (a mistyped id, or a case already erased): say so, keep nothing.
                log.warning("case action %s names unknown case %s; ignored", action.id, action.case_id)
                return
            raise
        if action.kind == case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE:
            await self._clocks.acknowledged(case.id)
        else:
            await self._clocks.resolved(case.id)
        if action.kind == case_pb2.CASE_ACTION_KIND_NOT_A_COMPLAINT:
            await self._feedback.not_a_complaint(case, actor=action.actor, action_id=action.id)
        await self._deliver(case, reason=action_name(action.kind), now=now, delivery=delivery)
        self._counters.inc("case_actions")


def _holds(case: case_pb2.Case, triaged: triage_pb2.TriagedMention) -> bool:
    return any(m.mention.id == triaged.mention.id for m in case.mentions)
