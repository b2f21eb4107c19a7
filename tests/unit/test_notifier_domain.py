"""Notifier domain: what a responder reads is quoted, single-line where it should be, and inert."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from clamor.v1 import alert_pb2, case_pb2, mention_pb2, notification_pb2, triage_pb2
from services.notifier.domain import inert, notification_for, quote
from services.notifier.message import message_from_alert, message_from_escalation


def from_escalation(
    escalation: case_pb2.Escalation, *, channel: str, quote_chars: int, now: datetime
) -> notification_pb2.Notification:
    """The log record the notifier keeps for an escalation sent through ``channel``."""
    message = replace(message_from_escalation(escalation), id=f"{escalation.id}:{channel}")
    return notification_for(message, channel=channel, quote_chars=quote_chars, now=now)


def from_alert(alert: alert_pb2.Alert, *, channel: str, now: datetime) -> notification_pb2.Notification:
    return notification_for(
        replace(message_from_alert(alert), id=f"{alert.id}:{channel}"), channel=channel, quote_chars=280, now=now
    )


NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def escalation(
    *,
    text: str = "The charger caught fire on my desk",
    url: str = "https://microblog.example/annie/status/1",
    handle: str = "annie",
    mentions: bool = True,
) -> case_pb2.Escalation:
    mention = mention_pb2.Mention(
        id="sample:p0001",
        platform="x",
        text=text,
        url=url,
        author=mention_pb2.Author(handle=handle, followers=1200),
    )
    case = case_pb2.Case(
        id="c_0123456789abcdef0123",
        severity=triage_pb2.SEVERITY_CRITICAL,
        mentions=[triage_pb2.TriagedMention(mention=mention)] if mentions else [],
    )
    return case_pb2.Escalation(
        id="c_0123456789abcdef0123:1", case=case, team="escalations", level=1, reason="severity CRITICAL with safety"
    )


def notify(esc: case_pb2.Escalation, *, quote_chars: int = 280) -> str:
    return from_escalation(esc, channel="console", quote_chars=quote_chars, now=NOW).body


# --- inert and quote ----------------------------------------------------------------------


def test_inert_removes_terminal_escape_sequences() -> None:
    assert "\x1b" not in inert("\x1b[2J\x1b]0;pwned\x07refund please")


def test_inert_removes_carriage_returns() -> None:
    assert "\r" not in inert("all good\rREFUND DENIED")


def test_inert_removes_c1_controls_and_nul() -> None:
    cleaned = inert("a\x00b\x9bc\x85d\x7fe")
    assert not any(ch in cleaned for ch in "\x00\x9b\x85\x7f")


def test_inert_keeps_printable_text() -> None:
    text = "退款 — Возврат 🙃 <script>alert(1)</script> <!channel>"
    assert inert(text) == text


def test_quote_keeps_short_text() -> None:
    assert quote("Refund never arrived", 280) == "Refund never arrived"


def test_quote_flattens_whitespace() -> None:
    assert quote("Refund\n\n  never\tarrived ", 280) == "Refund never arrived"


def test_quote_truncates_with_an_ellipsis_within_the_limit() -> None:
    text = "word " * 100
    quoted = quote(text, 40)
    assert len(quoted) <= 40
    assert quoted.endswith("…")
    assert " ".join(text.split()).startswith(quoted.removesuffix("…"))


def test_quote_at_exactly_the_limit_is_not_cut() -> None:
    assert quote("x" * 40, 40) == "x" * 40


def test_quote_output_has_no_control_characters() -> None:
    quoted = quote("line one\r\nline two\x1b[31m red", 280)
    assert not any(ord(ch) < 0x20 for ch in quoted)


# --- from_escalation ----------------------------------------------------------------------


def test_notification_id_is_escalation_id_and_channel() -> None:
    esc = escalation()
    note = from_escalation(esc, channel="file", quote_chars=280, now=NOW)
    assert note.id == f"{esc.id}:file"
    assert note.channel == "file"


def test_notification_points_at_case_mention_and_team() -> None:
    esc = escalation()
    note = from_escalation(esc, channel="console", quote_chars=280, now=NOW)
    assert (note.recipient, note.case_id, note.mention_id, note.source_id) == (
        "escalations",
        esc.case.id,
        "sample:p0001",
        esc.id,
    )


def test_notification_title_names_severity_and_case() -> None:
    esc = escalation()
    title = from_escalation(esc, channel="console", quote_chars=280, now=NOW).title
    assert "CRITICAL" in title
    assert esc.case.id in title


def test_notification_body_gives_the_reason() -> None:
    assert "severity CRITICAL with safety" in notify(escalation())


def test_notification_quotes_the_post() -> None:
    assert "The charger caught fire on my desk" in notify(escalation())


def test_notification_quote_is_cut_to_quote_chars() -> None:
    body = notify(escalation(text="fire " * 200), quote_chars=50)
    post_line = next(line for line in body.splitlines() if "fire" in line)
    assert "…" in post_line
    assert post_line.count("fire") < 20


def test_notification_keeps_an_https_link() -> None:
    assert "https://microblog.example/annie/status/1" in notify(escalation())


@pytest.mark.parametrize("url", ["http://microblog.example/annie/1", "javascript:alert(1)", "ftp://x/y", ""])
def test_notification_omits_a_link_that_is_not_https(url: str) -> None:
    body = notify(escalation(url=url))
    assert "Link:" not in body
    if url:
        assert url not in body


@pytest.mark.parametrize("text", ["<script>alert(1)</script>", "<!channel> refund now", "*bold* _it_ `code` @here"])
def test_notification_keeps_markup_in_the_post_literal(text: str) -> None:
    assert text in notify(escalation(text=text))


def test_notification_flattens_newlines_in_the_post() -> None:
    body = notify(escalation(text="first line\nLink: https://evil.example"))
    assert not any(line.startswith("Link: https://evil") for line in body.splitlines())


def test_notification_strips_escape_sequences_from_the_post() -> None:
    assert "\x1b" not in notify(escalation(text="\x1b[2Jcleared your terminal"))


def test_notification_author_handle_cannot_add_a_body_line() -> None:
    body = notify(escalation(handle="annie\nLink: https://evil.example"))
    assert not any(line.startswith("Link: https://evil") for line in body.splitlines())


def test_escalation_without_mentions_still_notifies() -> None:
    note = from_escalation(escalation(mentions=False), channel="console", quote_chars=280, now=NOW)
    assert note.mention_id == ""
    assert "severity CRITICAL with safety" in note.body


# --- from_alert ---------------------------------------------------------------------------


def test_alert_notification_id_and_sample_mention() -> None:
    alert = alert_pb2.Alert(
        id="a_1",
        kind=alert_pb2.ALERT_KIND_REPUTATION_SPIKE,
        topic="refunds",
        summary="complaints about refunds tripled",
        sample_mention_ids=["sample:p0003", "sample:p0004"],
    )
    note = from_alert(alert, channel="console", now=NOW)
    assert (note.id, note.mention_id) == ("a_1:console", "sample:p0003")
    assert "reputation spike" in note.title


def test_alert_title_is_inert() -> None:
    alert = alert_pb2.Alert(id="a_2", kind=alert_pb2.ALERT_KIND_SOURCE_HEALTH, topic="feed\x1b[31m down")
    assert "\x1b" not in from_alert(alert, channel="console", now=NOW).title


def test_a_reputation_alert_carries_its_context_and_says_when_it_is_resolved() -> None:
    alert = alert_pb2.Alert(
        id="acme:2992806",
        kind=alert_pb2.ALERT_KIND_REPUTATION_SPIKE,
        topic="product quality",
        watch="acme",
        summary="14 complaints about acme: product quality in the last 60 minutes, 7.0x the usual 2.0",
        count=14,
        baseline=2.0,
        ratio=7.0,
        peak=14,
        revision=2,
        status=alert_pb2.ALERT_STATUS_FIRING,
        top_terms=["recipe", "odd"],
        categories=[alert_pb2.Share(name="product quality", count=14)],
        sources=[alert_pb2.Share(name="mastodon", count=14)],
        languages=[alert_pb2.Share(name="en", count=14)],
        authors=[alert_pb2.AuthorReach(handle="big", platform="mastodon", followers=250000)],
        samples=[
            alert_pb2.SamplePost(
                mention_id="m:1",
                text="tastes odd",
                url="https://s.example/1",
                author="big",
                followers=250000,
                case_id="c_1",
            )
        ],
        case_ids=["c_1"],
    )
    message = message_from_alert(alert)
    assert message.title == "[update] reputation spike: product quality (acme)"
    assert message.reason.splitlines()[1:] == [
        "14 in the window against a baseline of 2 (7x), peak 14, revision 2",
        "top terms: recipe, odd",
        "categories: product quality 14",
        "sources: mastodon 14",
        "languages: en 14",
        "most reached: @big (250,000)",
        "cases: c_1",
    ]
    assert (message.post_text, message.author_followers, message.post_url) == (
        "tastes odd",
        250000,
        "https://s.example/1",
    )
    alert.status = alert_pb2.ALERT_STATUS_RESOLVED
    assert message_from_alert(alert).title.startswith("[resolved] ")
