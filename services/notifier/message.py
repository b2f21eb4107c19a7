"""What a responder needs, channel-neutral: built from an escalation or an alert.

Every text field here is *untrusted* (it comes from a public post or its author). Channels
render it through their own escaping (services/notifier/render.py); nothing here is escaped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clamor.v1 import alert_pb2, case_pb2, triage_pb2

MAX_QUOTE_CHARS = 500
# Post text kept with a queued notification: enough for any quote, small enough for a KV record.
MAX_STORED_POST_CHARS = 1000


@dataclass(frozen=True)
class Message:
    # Idempotency key: the escalation or alert id, then "<that id>:<channel>" for one channel,
    # then "<group id>:<sequence>" for the message a group sends.
    id: str
    # "escalation" or "alert".
    kind: str
    title: str
    severity: str = "LOW"
    risk_flags: tuple[str, ...] = ()
    reason: str = ""
    post_text: str = ""
    author_handle: str = ""
    author_followers: int = 0
    platform: str = ""
    post_url: str = ""
    case_id: str = ""
    team: str = ""
    level: int = 0
    sla_due: datetime | None = None
    # A signed link that acknowledges the case; empty when acknowledgement links are off.
    ack_url: str = ""
    # Stable per case (or alert topic), so a paging service folds repeats into one incident.
    dedup_key: str = ""
    mention_id: str = ""
    raised_at: datetime | None = None
    # Non-empty for a digest: the grouped messages, each complete. Title and severity then summarise them.
    items: tuple[Message, ...] = field(default=())
    # For alerts: what the alert is about (a watch, a keyword, a source).
    topic: str = ""


def _severity(value: triage_pb2.Severity.ValueType) -> str:
    return triage_pb2.Severity.Name(value).removeprefix("SEVERITY_") if value else "LOW"


def message_from_escalation(escalation: case_pb2.Escalation, *, ack_url: str = "") -> Message:
    case = escalation.case
    first = case.mentions[0].mention if case.mentions else None
    severity = _severity(case.severity)
    sla = case.sla.first_response_due
    return Message(
        id=escalation.id,
        kind="escalation",
        title=f"[{severity}] case {case.id} escalated to {escalation.team} (level {escalation.level})",
        severity=severity,
        risk_flags=tuple(triage_pb2.RiskFlag.Name(f).removeprefix("RISK_FLAG_").lower() for f in case.risk_flags),
        reason=escalation.reason,
        post_text=first.text[:MAX_STORED_POST_CHARS] if first is not None else "",
        author_handle=first.author.handle if first is not None else "",
        author_followers=first.author.followers if first is not None else 0,
        platform=first.platform if first is not None else "",
        post_url=first.url if first is not None else "",
        case_id=case.id,
        team=escalation.team,
        level=escalation.level,
        sla_due=sla.ToDatetime(tzinfo=UTC) if sla.seconds else None,
        ack_url=ack_url,
        dedup_key=f"clamor-case-{case.id}",
        mention_id=first.id if first is not None else "",
        raised_at=escalation.raised_at.ToDatetime(tzinfo=UTC) if escalation.raised_at.seconds else None,
    )


def message_from_alert(alert: alert_pb2.Alert) -> Message:
    """A reputation alert carries what a PR lead needs in its reason; its most-reached post is quoted."""
    kind = alert_pb2.AlertKind.Name(alert.kind).removeprefix("ALERT_KIND_").lower()
    resolved = alert.status == alert_pb2.ALERT_STATUS_RESOLVED
    label = "resolved" if resolved else ("update" if alert.revision > 1 else "alert")
    where = f" ({alert.watch})" if alert.watch and alert.watch != alert.topic else ""
    sample = alert.samples[0] if alert.samples else None
    return Message(
        id=alert.id,
        kind="alert",
        title=f"[{label}] {kind.replace('_', ' ')}: {alert.topic}{where}",
        severity="MEDIUM" if resolved else "HIGH",
        reason="\n".join([alert.summary, *_alert_context(alert)]),
        post_text=sample.text[:MAX_STORED_POST_CHARS] if sample else "",
        author_handle=sample.author if sample else "",
        author_followers=sample.followers if sample else 0,
        post_url=sample.url if sample else "",
        dedup_key=f"clamor-alert-{kind}-{alert.id}",
        topic=alert.topic,
        mention_id=alert.sample_mention_ids[0] if alert.sample_mention_ids else "",
        raised_at=alert.raised_at.ToDatetime(tzinfo=UTC) if alert.raised_at.seconds else None,
    )


def _shares(shares: Any) -> str:
    return ", ".join(f"{s.name} {s.count}" for s in shares)


def _alert_context(alert: alert_pb2.Alert) -> list[str]:
    """One line per kind of context a reputation alert has: growth, terms, mix, reach, cases."""
    lines = []
    if alert.kind == alert_pb2.ALERT_KIND_REPUTATION_SPIKE and alert.revision:
        lines.append(
            f"{alert.count} in the window against a baseline of {alert.baseline:g} ({alert.ratio:g}x), "
            f"peak {alert.peak}, revision {alert.revision}"
        )
    if alert.top_terms:
        lines.append("top terms: " + ", ".join(alert.top_terms[:8]))
    for label, shares in (("categories", alert.categories), ("sources", alert.sources), ("languages", alert.languages)):
        if shares:
            lines.append(f"{label}: {_shares(shares)}")
    if alert.authors:
        lines.append("most reached: " + ", ".join(f"@{a.handle} ({a.followers:,})" for a in alert.authors[:3]))
    if alert.case_ids:
        lines.append("cases: " + ", ".join(alert.case_ids[:10]))
    return lines
