"""Pure notifier logic: what a responder reads, built from an escalation or an alert."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from google.protobuf.timestamp_pb2 import Timestamp

from clamor.v1 import alert_pb2, case_pb2, notification_pb2, triage_pb2

if TYPE_CHECKING:
    from datetime import datetime

# C0/C1 control characters (terminal escapes, CR/LF and tab injection) and Unicode line and
# paragraph separators never reach a channel: a field can never forge a line of the body.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def inert(text: str) -> str:
    return _CONTROL.sub(" ", text)


def quote(text: str, limit: int) -> str:
    """Single-line, control-free, cut on a character boundary with an ellipsis."""
    flat = " ".join(inert(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _stamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def from_escalation(
    escalation: case_pb2.Escalation, *, channel: str, quote_chars: int, now: datetime
) -> notification_pb2.Notification:
    case = escalation.case
    first = case.mentions[0].mention if case.mentions else None
    severity = triage_pb2.Severity.Name(case.severity).removeprefix("SEVERITY_")
    title = f"[{severity}] case {case.id} escalated to {escalation.team} (level {escalation.level})"
    lines = [f"Why: {escalation.reason}"]
    if first is not None:
        author = first.author
        lines.append(f"Author: @{inert(author.handle)} ({author.followers} followers) on {first.platform}")
        lines.append(f"Post: \u201c{quote(first.text, quote_chars)}\u201d")
        if first.url.startswith("https://"):
            lines.append(f"Link: {inert(first.url)}")
    return notification_pb2.Notification(
        id=f"{escalation.id}:{channel}",
        channel=channel,
        recipient=escalation.team,
        title=title,
        body="\n".join(lines),
        source_id=escalation.id,
        case_id=case.id,
        mention_id=first.id if first is not None else "",
        sent_at=_stamp(now),
    )


def from_alert(alert: alert_pb2.Alert, *, channel: str, now: datetime) -> notification_pb2.Notification:
    kind = alert_pb2.AlertKind.Name(alert.kind).removeprefix("ALERT_KIND_").lower()
    return notification_pb2.Notification(
        id=f"{alert.id}:{channel}",
        channel=channel,
        title=f"[alert] {kind}: {inert(alert.topic)}",
        body=inert(alert.summary),
        source_id=alert.id,
        mention_id=alert.sample_mention_ids[0] if alert.sample_mention_ids else "",
        sent_at=_stamp(now),
    )
