"""The cases every CRM destination test sends, built once as realistic ``clamor.v1.Case`` protos.

``sample_case`` is a HIGH billing complaint with a legal threat, one post, SLA deadlines and the
history the router writes (created, routed). ``with_new_post`` and ``resolved`` move a copy of it
along its life and return the events since the last sync, as the delivery worker passes them to
``update``. ``HOSTILE_TEXT`` holds what a post must never be able to do in a CRM: markup, template
syntax, ServiceNow's ``[code]`` escape hatch and CR/LF that would forge a line of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from clamor.v1 import case_pb2, mention_pb2, triage_pb2
from services.router.domain import EVENT_LABELS
from services.shared.case_names import priority_value

CASE_ID = "c_0f1e2d3c4b5a69788796"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
POST_TEXT = "Charged twice for my March bill and support won't answer. My lawyer will hear about this."
HOSTILE_TEXT = (
    "<script>alert(1)</script> {{7*7}} ${7*7} [code]<img src=x onerror=alert(2)>[/code]"
    "\r\nStatus: solved\nPriority: low <b>bold</b> [link](https://evil.example)"
)
HOSTILE_MARKERS = ("\r", "\nStatus: solved", "\nPriority: low", "[code]", "[/code]")


def stamp(at: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(at)
    return value


def triaged(
    mention_id: str,
    *,
    text: str = POST_TEXT,
    handle: str = "ana_b",
    platform: str = "mastodon",
    url: str = "https://social.example/@ana_b/1",
    followers: int = 12000,
    at: datetime = NOW - timedelta(minutes=2),
) -> triage_pb2.TriagedMention:
    mention = mention_pb2.Mention(
        id=mention_id,
        source="mastodon-acme",
        platform=platform,
        native_id=mention_id.rsplit(":", 1)[-1],
        url=url,
        author=mention_pb2.Author(handle=handle, display_name="Ana B.", followers=followers),
        text=text,
        language="en",
        created_at=stamp(at),
        discovered_at=stamp(at + timedelta(seconds=30)),
        watch="acme",
    )
    result = triage_pb2.TriageResult(
        verdict=triage_pb2.VERDICT_COMPLAINT,
        complaint_score=0.97,
        severity=triage_pb2.SEVERITY_HIGH,
        category="billing",
        language="en",
        risk_flags=[triage_pb2.RISK_FLAG_LEGAL_THREAT],
        model_version="rules/1",
    )
    return triage_pb2.TriagedMention(mention=mention, result=result)


_KINDS = {label: kind for kind, label in EVENT_LABELS.items()}


def event(kind: str, detail: str, at: datetime) -> case_pb2.CaseEvent:
    """A history entry of ``kind``, named as CRMs know it ("post added")."""
    return case_pb2.CaseEvent(at=stamp(at), event_kind=_KINDS[kind], detail=detail)


def sample_case(
    case_id: str = CASE_ID, *, text: str = POST_TEXT, handle: str = "ana_b", priority: str = "high"
) -> case_pb2.Case:
    first = triaged("mastodon:109", text=text, handle=handle)
    return case_pb2.Case(
        id=case_id,
        state=case_pb2.CASE_STATE_ROUTED,
        severity=triage_pb2.SEVERITY_HIGH,
        category="billing",
        risk_flags=[triage_pb2.RISK_FLAG_LEGAL_THREAT],
        team="care",
        escalation_level=1,
        sla=case_pb2.SlaDeadlines(
            first_response_due=stamp(NOW + timedelta(minutes=10)), resolution_due=stamp(NOW + timedelta(hours=24))
        ),
        mentions=[first],
        history=[
            event("created", "from mention mastodon:109", NOW),
            event("routed", "zendesk-care", NOW + timedelta(seconds=1)),
        ],
        created_at=stamp(NOW),
        updated_at=stamp(NOW + timedelta(seconds=1)),
        destinations=["zendesk-care"],
        priority_level=priority_value(priority),
        sla_policy="legal",
        matched_rules=["legal-threats", "billing"],
        group_keys=["author:mastodon:ana_b:acme"],
    )


def hostile_case(case_id: str = CASE_ID) -> case_pb2.Case:
    return sample_case(case_id, text=HOSTILE_TEXT, handle="mallory\r\nX-Injected: 1")


def with_new_post(
    case: case_pb2.Case, *, text: str = "Still no refund, day three."
) -> tuple[case_pb2.Case, list[case_pb2.CaseEvent]]:
    """A copy of ``case`` with a second post attached and escalated a level: the events since the last sync."""
    later = case_pb2.Case()
    later.CopyFrom(case)
    at = NOW + timedelta(minutes=30)
    later.mentions.append(triaged("reddit:t3_2", text=text, platform="reddit", url="https://reddit.example/r/acme/2"))
    events = [
        event("post added", "mention reddit:t3_2", at),
        event("escalated", "level 2 to escalations: first response SLA breached", at + timedelta(seconds=5)),
    ]
    later.history.extend(events)
    later.state = case_pb2.CASE_STATE_ESCALATED
    later.escalation_level = 2
    later.priority_level = case_pb2.CASE_PRIORITY_URGENT
    later.updated_at.CopyFrom(events[-1].at)
    return later, events


def resolved(case: case_pb2.Case) -> tuple[case_pb2.Case, list[case_pb2.CaseEvent]]:
    """A copy of ``case`` resolved by an agent: the one event since the last sync."""
    later = case_pb2.Case()
    later.CopyFrom(case)
    at = NOW + timedelta(hours=2)
    events = [event("resolve", "resolve by maria via crm [c_0f1e:resolve:1]", at)]
    later.history.extend(events)
    later.state = case_pb2.CASE_STATE_RESOLVED
    later.owner = "maria"
    later.resolved_at.CopyFrom(stamp(at))
    later.updated_at.CopyFrom(stamp(at))
    return later, events
