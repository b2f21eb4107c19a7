"""Pure router logic: case identity and grouping, routing a case, escalations, actions, outbox records.

Every edit of a case is a function that returns False when it has nothing to do, so a
redelivered complaint or a repeated action leaves the case as it was; :func:`changed` makes an
edit the pure change ``KvState`` applies (a copy, or the same case when nothing changed, which
writes nothing). Each history entry carries a typed ``ref`` (mention, escalation or action id):
recording the same thing twice is detected by comparing refs.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from clamor.v1 import case_pb2, triage_pb2
from services.shared.case_names import action_name, priority_name, priority_value, via_name

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from services.router.rules import RoutingDecision

# How each kind of history entry is named to people and CRMs (the names earlier versions stored).
EVENT_LABELS: dict[case_pb2.CaseEventKind.ValueType, str] = {
    case_pb2.CASE_EVENT_KIND_CREATED: "created",
    case_pb2.CASE_EVENT_KIND_POST_ADDED: "post added",
    case_pb2.CASE_EVENT_KIND_BRAND_REPLY: "brand reply",
    case_pb2.CASE_EVENT_KIND_ROUTED: "routed",
    case_pb2.CASE_EVENT_KIND_ESCALATED: "escalated",
    case_pb2.CASE_EVENT_KIND_SLA_WARNING: "sla warning",
    case_pb2.CASE_EVENT_KIND_ACKNOWLEDGE: "acknowledge",
    case_pb2.CASE_EVENT_KIND_RESOLVE: "resolve",
    case_pb2.CASE_EVENT_KIND_NOT_A_COMPLAINT: "not_a_complaint",
}
# History kinds a CRM is told about in an update; "routed" and the like are the router's own bookkeeping.
# (An SLA breach is an "escalated" event whose detail says so; a "brand reply" is the brand's own public
# answer in the thread, which an agent working the ticket should see.)
CRM_EVENT_KINDS = frozenset(
    {
        case_pb2.CASE_EVENT_KIND_POST_ADDED,
        case_pb2.CASE_EVENT_KIND_BRAND_REPLY,
        case_pb2.CASE_EVENT_KIND_ESCALATED,
        case_pb2.CASE_EVENT_KIND_SLA_WARNING,
        case_pb2.CASE_EVENT_KIND_ACKNOWLEDGE,
        case_pb2.CASE_EVENT_KIND_RESOLVE,
        case_pb2.CASE_EVENT_KIND_NOT_A_COMPLAINT,
    }
)
BRAND_REPLY = EVENT_LABELS[case_pb2.CASE_EVENT_KIND_BRAND_REPLY]
_ACTION_EVENTS = {
    case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE: case_pb2.CASE_EVENT_KIND_ACKNOWLEDGE,
    case_pb2.CASE_ACTION_KIND_RESOLVE: case_pb2.CASE_EVENT_KIND_RESOLVE,
    case_pb2.CASE_ACTION_KIND_NOT_A_COMPLAINT: case_pb2.CASE_EVENT_KIND_NOT_A_COMPLAINT,
}
# How much of a brand reply its history event quotes.
EXCERPT_CHARS = 160


def case_id_for(mention_id: str) -> str:
    """A case id that is a valid KV key and the same on every replica and redelivery."""
    return "c_" + hashlib.blake2b(mention_id.encode(), digest_size=10).hexdigest()


def stamp(at: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(at)
    return result


def group_keys(mention: Any, *, by_author: bool, by_thread: bool) -> list[str]:
    """The keys under which later posts find this post's case: its thread first, then its author on its watch.

    ``mention`` is a ``mention_pb2.Mention``. Platforms without a handle or a thread give fewer keys.
    """
    keys: list[str] = []
    if by_thread and mention.thread_id:
        keys.append(f"thread:{mention.platform}:{mention.thread_id}")
    if by_author and mention.author.handle:
        keys.append(f"author:{mention.platform}:{mention.author.handle.lower()}:{mention.watch}")
    return keys


def event_label(event: case_pb2.CaseEvent) -> str:
    """The name people and CRMs know a history entry's kind by ("post added", "escalated"...)."""
    return EVENT_LABELS.get(event.event_kind, "")


def recorded(case: case_pb2.Case, ref: case_pb2.CaseEventRef) -> bool:
    """Whether the history holds an entry for ``ref`` already: what makes every change idempotent."""
    return any(event.ref == ref for event in case.history)


def _event(
    case: case_pb2.Case,
    kind: case_pb2.CaseEventKind.ValueType,
    detail: str,
    now: datetime,
    ref: case_pb2.CaseEventRef | None = None,
) -> None:
    case.history.append(case_pb2.CaseEvent(at=stamp(now), event_kind=kind, detail=detail, ref=ref))
    case.updated_at.CopyFrom(stamp(now))


def new_case(
    triaged: triage_pb2.TriagedMention,
    decision: RoutingDecision,
    *,
    keys: list[str],
    now: datetime,
    due: tuple[datetime | None, datetime | None] = (None, None),
) -> case_pb2.Case:
    """A case founded by ``triaged``; ``due`` are its SLA policy's first-response and resolution deadlines."""
    result = triaged.result
    case = case_pb2.Case(
        id=case_id_for(triaged.mention.id),
        state=case_pb2.CASE_STATE_NEW,
        severity=result.severity,
        category=result.category,
        risk_flags=result.risk_flags,
        team=decision.team,
        priority_level=priority_value(decision.priority),
        sla_policy=decision.sla,
        matched_rules=decision.matched,
        group_keys=keys,
        mentions=[triaged],
        created_at=stamp(now),
    )
    first_response, resolution = due
    if first_response is not None:
        case.sla.first_response_due.CopyFrom(stamp(first_response))
    if resolution is not None:
        case.sla.resolution_due.CopyFrom(stamp(resolution))
    rules = ", ".join(decision.matched) or "the defaults"
    _event(
        case,
        case_pb2.CASE_EVENT_KIND_CREATED,
        f"from mention {triaged.mention.id}, routed by {rules}",
        now,
        case_pb2.CaseEventRef(mention_id=triaged.mention.id),
    )
    return case


def attach_post(case: case_pb2.Case, triaged: triage_pb2.TriagedMention, *, now: datetime) -> bool:
    """Add a later post of the same customer or thread; severity and flags only ever rise."""
    if any(m.mention.id == triaged.mention.id for m in case.mentions):
        return False
    case.mentions.append(triaged)
    case.severity = max(case.severity, triaged.result.severity)
    for flag in triaged.result.risk_flags:
        if flag not in case.risk_flags:
            case.risk_flags.append(flag)
    _event(
        case,
        case_pb2.CASE_EVENT_KIND_POST_ADDED,
        f"mention {triaged.mention.id}",
        now,
        case_pb2.CaseEventRef(mention_id=triaged.mention.id),
    )
    return True


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` on one line, cut at ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def attach_brand_reply(case: case_pb2.Case, triaged: triage_pb2.TriagedMention, *, now: datetime) -> bool:
    """Record a post by one of the brand's own accounts in the case's history, once per mention.

    The post is not one of the customer's: it joins no ``mentions``, and severity, flags and state
    stay as they are, whatever triage said of it.
    """
    mention = triaged.mention
    ref = case_pb2.CaseEventRef(mention_id=mention.id)
    if any(e.event_kind == case_pb2.CASE_EVENT_KIND_BRAND_REPLY and e.ref == ref for e in case.history):
        return False
    handle = mention.author.handle or "(no handle)"
    detail = f'@{handle}: "{excerpt(mention.text)}" [{mention.id}]'
    _event(case, case_pb2.CASE_EVENT_KIND_BRAND_REPLY, detail, now, ref)
    return True


def add_destinations(case: case_pb2.Case, destinations: tuple[str, ...], *, now: datetime) -> bool:
    """Record the destinations a case goes to (a later post may match rules that add one)."""
    added = [d for d in destinations if d not in case.destinations]
    if not added:
        return False
    case.destinations.extend(added)
    if case.state == case_pb2.CASE_STATE_NEW:
        case.state = case_pb2.CASE_STATE_ROUTED
    _event(case, case_pb2.CASE_EVENT_KIND_ROUTED, ", ".join(added), now)
    return True


def should_escalate(severity: triage_pb2.Severity.ValueType, threshold: str) -> bool:
    return severity >= triage_pb2.Severity.Value(f"SEVERITY_{threshold}")


def describe(case: case_pb2.Case) -> str:
    severity = triage_pb2.Severity.Name(case.severity).removeprefix("SEVERITY_")
    flags = ", ".join(triage_pb2.RiskFlag.Name(f).removeprefix("RISK_FLAG_").lower() for f in case.risk_flags)
    return f"severity {severity}" + (f" with {flags}" if flags else "")


def escalation_for(
    case: case_pb2.Case, *, team: str, level: int, now: datetime, reason: str = "", step: str = ""
) -> case_pb2.Escalation:
    """An escalation whose id is stable for (case, step, team), so a repeat is dropped by JetStream."""
    return case_pb2.Escalation(
        id=f"{case.id}:{step or level}:{team}",
        case=case,
        team=team,
        level=level,
        reason=reason or describe(case),
        raised_at=stamp(now),
    )


def escalation_ref(escalation: case_pb2.Escalation) -> case_pb2.CaseEventRef:
    return case_pb2.CaseEventRef(escalation_id=escalation.id)


def mark_escalated(case: case_pb2.Case, escalation: case_pb2.Escalation, *, now: datetime) -> bool:
    """Write the escalation into the case once; a warning (level 0) is an event, not a state."""
    ref = escalation_ref(escalation)
    if recorded(case, ref):
        return False
    if escalation.level > 0 and case.state in (
        case_pb2.CASE_STATE_NEW,
        case_pb2.CASE_STATE_ROUTED,
        case_pb2.CASE_STATE_ESCALATED,
    ):
        case.state = case_pb2.CASE_STATE_ESCALATED
    case.escalation_level = max(case.escalation_level, escalation.level)
    kind = case_pb2.CASE_EVENT_KIND_SLA_WARNING if escalation.level == 0 else case_pb2.CASE_EVENT_KIND_ESCALATED
    detail = f"level {escalation.level} to {escalation.team}: {escalation.reason} [{escalation.id}]"
    _event(case, kind, detail, now, ref)
    return True


def note_breach(case: case_pb2.Case, clock: str) -> bool:
    sla = case.sla
    if clock == "first_response" and not sla.first_response_breached:
        sla.first_response_breached = True
        return True
    if clock == "resolution" and not sla.resolution_breached:
        sla.resolution_breached = True
        return True
    return False


# The state each action leads to, and how far along the life cycle that is (no action moves a case back).
_ACTION_STATES = {
    case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE: case_pb2.CASE_STATE_ACKNOWLEDGED,
    case_pb2.CASE_ACTION_KIND_RESOLVE: case_pb2.CASE_STATE_RESOLVED,
    case_pb2.CASE_ACTION_KIND_NOT_A_COMPLAINT: case_pb2.CASE_STATE_RESOLVED,
}
_STATE_RANK = {
    case_pb2.CASE_STATE_UNSPECIFIED: 0,
    case_pb2.CASE_STATE_NEW: 1,
    case_pb2.CASE_STATE_ROUTED: 2,
    case_pb2.CASE_STATE_ESCALATED: 3,
    case_pb2.CASE_STATE_ACKNOWLEDGED: 4,
    case_pb2.CASE_STATE_RESOLVED: 5,
}


def apply_action(case: case_pb2.Case, action: case_pb2.CaseAction, *, now: datetime) -> bool:
    """Record an acknowledgement or resolution once; False for a repeat. Later news never moves the state back."""
    target = _ACTION_STATES.get(action.kind)
    ref = case_pb2.CaseEventRef(action_id=action.id)
    if target is None or recorded(case, ref):
        return False
    name = action_name(action.kind)
    by = f" by {action.actor}" if action.actor else ""
    via = f" via {via_name(action.arrived_via)}" if action.arrived_via else ""
    _event(case, _ACTION_EVENTS[action.kind], f"{name}{by}{via} [{action.id}]", now, ref)
    # The actor's words and where the action came from travel with the entry: the note to the CRMs'
    # comments, the origin so that the CRM which sent the action is not told it again.
    entry = case.history[-1]
    entry.note = action.note
    entry.arrived_via = action.arrived_via
    entry.origin_destination = action.origin_destination
    if _STATE_RANK[target] > _STATE_RANK[case.state]:
        case.state = target
    if not case.HasField("acknowledged_at"):
        # A resolution without an acknowledgement answers the customer too: the first response is given.
        case.acknowledged_at.CopyFrom(stamp(now))
        case.owner = case.owner or action.actor
    if target == case_pb2.CASE_STATE_RESOLVED and not case.HasField("resolved_at"):
        case.resolved_at.CopyFrom(stamp(now))
    return True


def changed(case: case_pb2.Case, edit: Callable[[case_pb2.Case], bool]) -> case_pb2.Case:
    """``edit`` as a pure change: the edited copy, or ``case`` itself (untouched) when it had nothing to do."""
    copy = case_pb2.Case()
    copy.CopyFrom(case)
    return copy if edit(copy) else case


def is_open(case: case_pb2.Case) -> bool:
    return case.state != case_pb2.CASE_STATE_RESOLVED


def came_from(event: case_pb2.CaseEvent, destination: str) -> bool:
    """Whether ``event`` is an action that ``destination`` itself reported through the CRM callback.

    A callback that named no destination may have come from any of them: it is sent back to none,
    since a CRM that hears of its own action as a new comment may call back again, without end.
    """
    if event.arrived_via != case_pb2.CASE_ACTION_VIA_CRM:
        return False
    return not event.origin_destination or event.origin_destination == destination


def crm_events(case: case_pb2.Case, since: int, *, destination: str = "") -> list[case_pb2.CaseEvent]:
    """History entries from position ``since`` that ``destination`` should hear about: not its own actions."""
    return [
        event
        for event in case.history[since:]
        if event.event_kind in CRM_EVENT_KINDS and not (destination and came_from(event, destination))
    ]


def event_record(event: case_pb2.CaseEvent) -> dict[str, Any]:
    """A history entry as CRMs receive it: when, the kind's name, the detail, and the actor's note if any."""
    record = {"at": event.at.ToJsonString(), "kind": event_label(event), "detail": event.detail}
    if event.note:
        record["note"] = event.note
    return record


def case_record(case: case_pb2.Case) -> dict[str, Any]:
    """The case as JSON for a CRM, enums as names, its history entries as :func:`event_record` makes them.

    The priority keeps the short name rules and CRMs use (``"priority": "urgent"``), as it had before
    the contract made it an enum: a consumer of the outbox or the webhooks sees no change.
    """
    record = MessageToDict(case, preserving_proto_field_name=True)
    if record.pop("priority_level", None) is not None:
        record["priority"] = priority_name(case.priority_level)
    if case.history:
        record["history"] = [event_record(event) for event in case.history]
    return record


def outbox_record(case: case_pb2.Case) -> dict[str, Any]:
    """The JSON line a CRM would receive: the case with its posts, enums as names."""
    record = case_record(case)
    record["id"] = case.id
    return record
