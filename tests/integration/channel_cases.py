"""The sample notifications every channel test sends, written once for all of them.

Each function takes the message id (channels suffix theirs, ``esc-1:pd``) and keyword changes
applied with :func:`dataclasses.replace`, so a test whose expected payload spells out its own
values passes them here rather than depending on a sample it does not show.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from services.notifier.message import Message

INJECTED = "\r\nBcc: victim@example.com"
HOSTILE_TEXT = (
    "<!channel> <@U123> <https://evil|bank> <script>alert(1)</script> "
    "line1\r\nBcc: victim@example.com [bank](https://evil.example) javascript:alert(1)"
)
# Case c-42 a level further up, for the tests whose expected payloads were written against it.
CASE_C42: dict[str, Any] = {
    "title": "[HIGH] case c-42 escalated to social-care (level 2)",
    "risk_flags": ("legal_threat", "outage"),
    "reason": "no first response within 30 minutes",
    "post_text": "Acme ate my deposit & nobody answers. Lawyers next.",
    "author_handle": "angry_ann",
    "author_followers": 12345,
    "post_url": "https://social.example/@angry_ann/1",
    "case_id": "c-42",
    "team": "social-care",
    "level": 2,
    "sla_due": datetime(2026, 3, 1, 13, 30, tzinfo=UTC),
    "ack_url": "https://clamor.example/ack?case=c-42&sig=abc",
    "dedup_key": "clamor-case-c-42",
    "mention_id": "",
    "raised_at": None,
}


def escalation(id: str, **changes: Any) -> Message:
    """Case c-1 escalated to care: every field a channel shows is set."""
    message = Message(
        id=id,
        kind="escalation",
        title="[HIGH] case c-1 escalated to care (level 1)",
        severity="HIGH",
        risk_flags=("legal_threat", "viral"),
        reason="legal threat from a large account",
        post_text="I will sue you if my refund is not here by Friday",
        author_handle="ana",
        author_followers=12000,
        platform="mastodon",
        post_url="https://social.example/@ana/1",
        case_id="c-1",
        team="care",
        level=1,
        sla_due=datetime(2026, 3, 1, 13, 0, tzinfo=UTC),
        ack_url="https://clamor.example/ack/c-1?sig=abc",
        dedup_key="clamor-case-c-1",
        mention_id="m-1",
        raised_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    )
    return replace(message, **changes)


def alert(id: str, **changes: Any) -> Message:
    """A volume alert: no post, author or case."""
    message = Message(id=id, kind="alert", title="[alert] volume_spike: acme", severity="HIGH", reason="5x")
    return replace(message, **changes)


def hostile_escalation(id: str, **changes: Any) -> Message:
    """The sample escalation with markup, mentions, header injection and a javascript: link in its untrusted fields."""
    return escalation(
        id,
        **{
            "title": "Refund now" + INJECTED,
            "author_handle": "mallory" + INJECTED,
            "post_text": HOSTILE_TEXT,
            "post_url": "javascript:alert(1)",
        }
        | changes,
    )


# Item severities in turn, so a digest's items differ and its most severe is not its first.
DIGEST_SEVERITIES = ("HIGH", "CRITICAL", "MEDIUM", "LOW")
_RANK = {"CRITICAL": 3, "HIGH": 2, "MEDIUM": 1, "LOW": 0}


def digest_item(id: str, number: int, *, hostile: bool = False) -> Message:
    """Item ``number`` of a digest: the sample escalation (or the hostile one) for case c-<number>."""
    channel = id.partition(":")[2]
    severity = DIGEST_SEVERITIES[(number - 1) % len(DIGEST_SEVERITIES)]
    sample = hostile_escalation if hostile else escalation
    values: dict[str, Any] = {
        "severity": severity,
        "case_id": f"c-{number}",
        "ack_url": f"https://clamor.example/ack/c-{number}?sig=abc",
        "dedup_key": f"clamor-case-c-{number}",
        "mention_id": f"m-{number}",
    }
    if hostile:
        values["title"] = f"[{severity}] c-{number} <!here> refund now" + INJECTED
    else:
        values |= {
            "title": f"[{severity}] case c-{number} escalated to care (level 1)",
            "post_url": f"https://social.example/@ana/{number}",
        }
    return sample(f"esc-{number}:{channel}" if channel else f"esc-{number}", **values)


def _digest(id: str, items: tuple[Message, ...], **changes: Any) -> Message:
    severity = max((item.severity for item in items), key=lambda s: _RANK[s], default="LOW")
    message = Message(
        id=id,
        kind="digest",
        title=f"{len(items)} notifications for care ({severity})",
        severity=severity,
        dedup_key="clamor-group-care",
        raised_at=datetime(2026, 3, 1, 12, 5, tzinfo=UTC),
        items=items,
    )
    return replace(message, **changes)


def digest(id: str, n: int = 3, **changes: Any) -> Message:
    """``n`` escalations of cases c-1 … c-<n> grouped for care; item severities go HIGH, CRITICAL, MEDIUM, LOW."""
    return _digest(id, tuple(digest_item(id, number) for number in range(1, n + 1)), **changes)


def hostile_digest(id: str, n: int = 3, **changes: Any) -> Message:
    """A digest of hostile escalations under a hostile title; the last item's ack link is javascript:."""
    items = [digest_item(id, number, hostile=True) for number in range(1, n + 1)]
    items[-1] = replace(items[-1], ack_url="javascript:alert(2)")
    title = "<!channel> <script>alert(1)</script> [bank](https://evil.example)" + INJECTED
    return _digest(id, tuple(items), **{"title": title} | changes)
