"""Pure router logic: case identity, new cases, escalation decisions and outbox records."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.timestamp_pb2 import Timestamp

from clamor.v1 import case_pb2, triage_pb2

if TYPE_CHECKING:
    from datetime import datetime


def case_id_for(mention_id: str) -> str:
    """A case id that is a valid KV key and the same on every replica and redelivery."""
    return "c_" + hashlib.blake2b(mention_id.encode(), digest_size=10).hexdigest()


def _stamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def new_case(triaged: triage_pb2.TriagedMention, *, team: str, now: datetime) -> case_pb2.Case:
    result = triaged.result
    return case_pb2.Case(
        id=case_id_for(triaged.mention.id),
        state=case_pb2.CASE_STATE_NEW,
        severity=result.severity,
        category=result.category,
        risk_flags=result.risk_flags,
        team=team,
        mentions=[triaged],
        history=[case_pb2.CaseEvent(at=_stamp(now), kind="created", detail=f"from mention {triaged.mention.id}")],
        created_at=_stamp(now),
        updated_at=_stamp(now),
    )


def should_escalate(severity: triage_pb2.Severity.ValueType, threshold: str) -> bool:
    return severity >= triage_pb2.Severity.Value(f"SEVERITY_{threshold}")


def escalation_for(case: case_pb2.Case, *, team: str, level: int, now: datetime) -> case_pb2.Escalation:
    severity = triage_pb2.Severity.Name(case.severity).removeprefix("SEVERITY_")
    flags = ", ".join(triage_pb2.RiskFlag.Name(f).removeprefix("RISK_FLAG_").lower() for f in case.risk_flags)
    reason = f"severity {severity}" + (f" with {flags}" if flags else "")
    return case_pb2.Escalation(
        id=f"{case.id}:{level}", case=case, team=team, level=level, reason=reason, raised_at=_stamp(now)
    )


def mark_routed(case: case_pb2.Case, *, destination: str, now: datetime) -> None:
    if destination not in case.destinations:
        case.destinations.append(destination)
    if case.state == case_pb2.CASE_STATE_NEW:
        case.state = case_pb2.CASE_STATE_ROUTED
    case.history.append(case_pb2.CaseEvent(at=_stamp(now), kind="routed", detail=destination))
    case.updated_at.CopyFrom(_stamp(now))


def mark_escalated(case: case_pb2.Case, escalation: case_pb2.Escalation, *, now: datetime) -> None:
    case.state = case_pb2.CASE_STATE_ESCALATED
    case.escalation_level = max(case.escalation_level, escalation.level)
    case.history.append(
        case_pb2.CaseEvent(
            at=_stamp(now),
            kind="escalated",
            detail=f"level {escalation.level} to {escalation.team}: {escalation.reason}",
        )
    )
    case.updated_at.CopyFrom(_stamp(now))


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
    """Record an acknowledgement or resolution once; False when it changes nothing (a repeat, or older news)."""
    target = _ACTION_STATES.get(action.kind)
    if target is None or any(event.detail.endswith(f"[{action.id}]") for event in case.history):
        return False
    kind = case_pb2.CaseActionKind.Name(action.kind).removeprefix("CASE_ACTION_KIND_").lower()
    by = f" by {action.actor}" if action.actor else ""
    via = f" via {action.via}" if action.via else ""
    case.history.append(case_pb2.CaseEvent(at=_stamp(now), kind=kind, detail=f"{kind}{by}{via} [{action.id}]"))
    if _STATE_RANK[target] > _STATE_RANK[case.state]:
        case.state = target
    case.updated_at.CopyFrom(_stamp(now))
    return True


def outbox_record(case: case_pb2.Case) -> dict[str, Any]:
    """The JSON line a CRM would receive: the case with its posts, enums as names."""
    record = MessageToDict(case, preserving_proto_field_name=True)
    record["id"] = case.id
    return record
