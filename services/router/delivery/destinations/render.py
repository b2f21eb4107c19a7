"""Plain-text subject, description and update comment of a case, the same for every CRM.

Posts are written by the public, so everything taken from them (text, handle, URL, watch) and
every free-text history detail is untrusted. It is kept as literal plain text, never turned into
markup, and made inert on the way:

- ``inert`` puts it on one line (CR, LF, other control characters and bidirectional overrides
  become spaces), so a post cannot forge a line such as ``Status: solved`` in a comment;
- ServiceNow renders ``[code]…[/code]`` in journal fields as HTML, so those markers are broken
  up wherever they appear;
- nothing is evaluated: ``{{7*7}}`` or ``<script>`` reach the CRM as the characters they are;
- links are shown only when they are plain https URLs;
- every piece is cut to a length, and the whole to the field's limit in the CRM.

No Markdown or HTML is produced here either: lines are separated by newlines and indented
with spaces (fewer than four, which Markdown would read as code). An adapter whose field is
HTML (HubSpot's notes) escapes the result itself.
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from clamor.v1 import case_pb2, triage_pb2
from services.router.domain import event_label
from services.shared.case_names import priority_name

if TYPE_CHECKING:
    from collections.abc import Sequence

    from google.protobuf.timestamp_pb2 import Timestamp

Priority = Literal["urgent", "high", "normal", "low"]

# Priority when the routing rules set none, from the case's severity.
PRIORITY_BY_SEVERITY: dict[int, Priority] = {
    triage_pb2.SEVERITY_CRITICAL: "urgent",
    triage_pb2.SEVERITY_HIGH: "high",
    triage_pb2.SEVERITY_MEDIUM: "normal",
    triage_pb2.SEVERITY_LOW: "low",
}
PRIORITIES: tuple[Priority, ...] = ("urgent", "high", "normal", "low")

SUBJECT_CHARS = 150
DESCRIPTION_CHARS = 4000
COMMENT_CHARS = 4000
POST_CHARS = 1000
# The actor's note on an acknowledgement or resolution (the APIs take 1000 characters).
NOTE_CHARS = 1000
FIELD_CHARS = 120
MAX_POSTS = 10

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CODE_TAG = re.compile(r"\[(/?)(code)\]", re.IGNORECASE)
_UNSAFE_IN_URL = re.compile(r"[\s<>\"'`|\\^{}\[\]]")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


def inert(text: object, limit: int = FIELD_CHARS) -> str:
    """Untrusted text as one inert line of at most ``limit`` characters."""
    line = " ".join(_CONTROL.sub(" ", str(text)).split())
    # "[ code]" reads the same to a person and is no longer ServiceNow's HTML escape hatch.
    line = _CODE_TAG.sub(lambda match: f"[{match.group(1)} {match.group(2)}]", line)
    return clip(line, limit)


def https_link(url: str) -> str:
    """The URL when it is a plain https URL with a host, else empty (no javascript:, data:, spoofing)."""
    value = url.strip()
    if not value or _UNSAFE_IN_URL.search(value) or _CONTROL.search(value) or len(value) > 500:
        return ""
    try:
        parts = urlsplit(value)
    except ValueError:
        return ""
    return value if parts.scheme == "https" and parts.hostname else ""


def priority_of(case: case_pb2.Case) -> Priority:
    """The routing rules' priority, or one derived from severity when they set none."""
    for priority in PRIORITIES:
        if priority_name(case.priority_level) == priority:
            return priority
    return PRIORITY_BY_SEVERITY.get(case.severity, "normal")


def severity_name(case: case_pb2.Case) -> str:
    return triage_pb2.Severity.Name(case.severity).removeprefix("SEVERITY_")


def state_name(case: case_pb2.Case) -> str:
    return case_pb2.CaseState.Name(case.state).removeprefix("CASE_STATE_").lower()


def is_resolved(case: case_pb2.Case) -> bool:
    return case.state == case_pb2.CASE_STATE_RESOLVED


def rfc3339(stamp: Timestamp) -> str:
    """``2026-03-01T12:00:00Z``, or empty for an unset timestamp."""
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _flags(case: case_pb2.Case) -> str:
    return ", ".join(triage_pb2.RiskFlag.Name(f).removeprefix("RISK_FLAG_").lower() for f in case.risk_flags)


def subject(case: case_pb2.Case, *, limit: int = SUBJECT_CHARS) -> str:
    """One line: severity, category, author, platform and the start of the first post."""
    topic = inert(case.category, 40) or "complaint"
    head = f"[{severity_name(case)}] {topic}"
    if case.mentions:
        mention = case.mentions[0].mention
        handle = inert(mention.author.handle, 40).lstrip("@")
        where = inert(mention.platform, 20)
        head += f" from @{handle}" if handle else ""
        head += f" on {where}" if where else ""
        text = inert(mention.text, limit)
        if text:
            head += f": {text}"
    return clip(head, limit)


def _post(index: int, triaged: triage_pb2.TriagedMention) -> list[str]:
    mention = triaged.mention
    handle = inert(mention.author.handle, 60).lstrip("@") or "unknown"
    facts = [f"Post {index}: @{handle}"]
    if mention.author.followers:
        facts.append(f"({mention.author.followers} followers)")
    if mention.platform:
        facts.append(f"on {inert(mention.platform, 30)}")
    if created := rfc3339(mention.created_at):
        facts.append(f"at {created}")
    if mention.watch:
        facts.append(f"(watch {inert(mention.watch, 60)})")
    lines = [" ".join(facts)]
    link = https_link(mention.url)
    lines.append(f"   Link: {link}" if link else "   Link: (none that is plain https)")
    lines.append(f"   Text: {inert(mention.text, POST_CHARS)}")
    return lines


def description(case: case_pb2.Case, *, limit: int = DESCRIPTION_CHARS) -> str:
    """The case's facts and its posts, oldest first, as plain lines of at most ``limit`` characters."""
    lines = [
        f"Clamor case {case.id}",
        f"Severity: {severity_name(case)}. Priority: {priority_of(case)}. State: {state_name(case)}.",
    ]
    if case.category:
        lines.append(f"Category: {inert(case.category, 60)}")
    if case.team:
        lines.append(f"Team: {inert(case.team, 60)}. Escalation level: {case.escalation_level}.")
    if flags := _flags(case):
        lines.append(f"Risk flags: {flags}")
    if case.matched_rules:
        lines.append(f"Matched rules: {inert(', '.join(case.matched_rules), 300)}")
    if due := rfc3339(case.sla.first_response_due):
        lines.append(f"First response due: {due}")
    if due := rfc3339(case.sla.resolution_due):
        lines.append(f"Resolution due: {due}")
    lines += ["", f"Posts ({len(case.mentions)}), quoted as plain text; their authors are members of the public:"]
    for index, triaged in enumerate(case.mentions[:MAX_POSTS], start=1):
        lines += _post(index, triaged)
    if len(case.mentions) > MAX_POSTS:
        lines.append(f"… and {len(case.mentions) - MAX_POSTS} more posts in Clamor.")
    return clip("\n".join(lines), limit)


def update_comment(case: case_pb2.Case, events: Sequence[case_pb2.CaseEvent], *, limit: int = COMMENT_CHARS) -> str:
    """One comment for ``events``: a line per event, and the post an event attached when it names one."""
    lines = [f"Clamor case {case.id}: {state_name(case)}, priority {priority_of(case)}, severity {severity_name(case)}"]
    quoted: set[str] = set()
    for event in events:
        at = rfc3339(event.at) or "(no time)"
        lines.append(f"{at} {inert(event_label(event), 40)}: {inert(event.detail, 300)}")
        if event.note:
            # The actor's own words, inert like a post: a note cannot forge a line of the comment.
            lines.append(f"  Note: {inert(event.note, NOTE_CHARS)}")
        for index, triaged in enumerate(case.mentions, start=1):
            mention_id = triaged.mention.id
            # Events about a post name its id in their detail ("attached mention reddit:t3_x").
            if mention_id and mention_id not in quoted and mention_id in event.detail.split():
                quoted.add(mention_id)
                lines += _post(index, triaged)
    return clip("\n".join(lines), limit)
