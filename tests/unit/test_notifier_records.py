"""The notifier's groups and pages in KV: protobuf records, and the JSON records of earlier versions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from services.notifier.grouping import Claim, Group, Item
from services.notifier.message import Message
from services.notifier.pages import Page, PageState
from services.notifier.records import GROUP_CODEC, PAGE_CODEC

T = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
MESSAGE = Message(
    id="c_1:now:care",
    kind="escalation",
    title="[HIGH] case c_1",
    severity="HIGH",
    risk_flags=("legal_threat",),
    sla_due=T,
    raised_at=T,
    case_id="c_1",
    team="care",
    level=1,
)
GROUP = Group(
    id="g_1",
    channel="slack",
    key="team=care",
    pending=[Item("c_1:now:care", "fp1", MESSAGE, T, cancel_on_ack=True, traceparent="00-abc-def-01")],
    sent={"c_0:now:care": ("fp0", T)},
    sequence=3,
    first_pending_at=T,
    claim=Claim("replica-a", T),
)
PAGE = Page(
    case_id="c_1",
    policy="care",
    message=MESSAGE,
    step_started_at=T,
    step=1,
    loop=0,
    state=PageState.ACKNOWLEDGED,
    actor="dana",
    via="link",
    answered_at=T,
)
# Exactly what the JSON codecs of earlier versions wrote for GROUP and PAGE.
OLD_GROUP = (
    b'{"id": "g_1", "channel": "slack", "key": "team=care", "pending": [{"id": "c_1:now:care", "fingerprin'
    b't": "fp1", "message": {"id": "c_1:now:care", "kind": "escalation", "title": "[HIGH] case c_1", "seve'
    b'rity": "HIGH", "risk_flags": ["legal_threat"], "reason": "", "post_text": "", "author_handle": "", "'
    b'author_followers": 0, "platform": "", "post_url": "", "case_id": "c_1", "team": "care", "level": 1, '
    b'"sla_due": "2026-12-07T12:00:00+00:00", "ack_url": "", "dedup_key": "", "mention_id": "", "raised_at'
    b'": "2026-12-07T12:00:00+00:00", "items": [], "topic": ""}, "added_at": "2026-12-07T12:00:00+00:00", '
    b'"cancel_on_ack": true, "traceparent": "00-abc-def-01"}], "sent": {"c_0:now:care": ["fp0", "2026-12-0'
    b'7T12:00:00+00:00"]}, "sequence": 3, "first_pending_at": "2026-12-07T12:00:00+00:00", "last_flush_at"'
    b': null, "retry_at": null, "failures": 0, "claim": {"owner": "replica-a", "until": "2026-12-07T12:00:'
    b'00+00:00"}, "held_logged": false}'
)
OLD_PAGE = (
    b'{"case_id": "c_1", "policy": "care", "message": {"id": "c_1:now:care", "kind": "escalation", "title"'
    b': "[HIGH] case c_1", "severity": "HIGH", "risk_flags": ["legal_threat"], "reason": "", "post_text": '
    b'"", "author_handle": "", "author_followers": 0, "platform": "", "post_url": "", "case_id": "c_1", "t'
    b'eam": "care", "level": 1, "sla_due": "2026-12-07T12:00:00+00:00", "ack_url": "", "dedup_key": "", "m'
    b'ention_id": "", "raised_at": "2026-12-07T12:00:00+00:00", "items": [], "topic": ""}, "step_started_a'
    b't": "2026-12-07T12:00:00+00:00", "step": 1, "loop": 0, "state": "acknowledged", "actor": "dana", "vi'
    b'a": "link", "answered_at": "2026-12-07T12:00:00+00:00"}'
)


def test_a_group_is_stored_as_protobuf_and_read_back() -> None:
    stored = GROUP_CODEC.encode(GROUP)
    assert not stored.startswith(b"{")
    assert GROUP_CODEC.decode(stored) == GROUP


def test_a_page_is_stored_as_protobuf_and_read_back() -> None:
    assert PAGE_CODEC.decode(PAGE_CODEC.encode(PAGE)) == PAGE


def test_a_page_keeps_when_it_opened() -> None:
    opened = replace(PAGE, opened_at=T - timedelta(minutes=12))
    assert PAGE_CODEC.decode(PAGE_CODEC.encode(opened)) == opened


def test_a_group_an_earlier_version_wrote_as_json_is_read() -> None:
    assert GROUP_CODEC.decode(OLD_GROUP) == GROUP


def test_a_page_an_earlier_version_wrote_as_json_is_read() -> None:
    assert PAGE_CODEC.decode(OLD_PAGE) == PAGE
