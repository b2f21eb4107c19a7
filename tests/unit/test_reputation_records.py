"""The reputation service's records in KV: protobuf records, and the JSON records of earlier versions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict

from clamor.v1 import alert_pb2, mention_pb2, triage_pb2
from services.reputation.domain import HourCounts
from services.reputation.records import ALERT_CODEC, CURSOR_CODEC, HOUR_COUNTS_CODEC, WATCH_LIST_CODEC

AT = datetime(2026, 12, 7, 12, 25, tzinfo=UTC)


def triaged(n: int, text: str, *, category: str = "billing", followers: int = 10) -> triage_pb2.TriagedMention:
    mention = mention_pb2.Mention(
        id=f"m_{n}",
        text=text,
        platform="x",
        url=f"https://x.example/{n}",
        language="en",
        author=mention_pb2.Author(handle=f"user{n}", followers=followers),
    )
    result = triage_pb2.TriageResult(
        verdict=triage_pb2.VERDICT_COMPLAINT, category=category, severity=triage_pb2.SEVERITY_HIGH, language="en"
    )
    return triage_pb2.TriagedMention(mention=mention, result=result)


def an_hour() -> HourCounts:
    record = HourCounts()
    record.add(7, triaged(1, "double charged on my invoice again"), at=AT, keywords=["invoice"])
    record.add(8, triaged(2, "mold in the delivery box", category="quality", followers=5000), at=AT, keywords=[])
    record.add(9, triaged(3, "invoice still wrong, charged twice", followers=300), at=AT, keywords=["invoice"])
    return record


def old_json(record: HourCounts) -> dict[str, Any]:
    """An hour exactly as ``HourCounts.to_json`` of earlier versions wrote it."""
    return {
        "through_seq": record.through_seq,
        "total": record.total,
        "slots": record.slots,
        "categories": record.categories,
        "severities": record.severities,
        "languages": record.languages,
        "sources": record.sources,
        "terms": record.terms,
        "category_slots": record.category_slots,
        "keyword_slots": record.keyword_slots,
        "authors": record.authors,
        "samples": record.samples,
    }


def test_an_hour_round_trips_through_its_stored_record() -> None:
    record = an_hour()
    assert (record.total, record.through_seq, record.keyword_slots) == (3, 9, {"invoice": [0, 0, 2, 0, 0, 0]})
    assert HOUR_COUNTS_CODEC.decode(HOUR_COUNTS_CODEC.encode(record)) == record
    assert HOUR_COUNTS_CODEC.decode(HOUR_COUNTS_CODEC.encode(HourCounts())) == HourCounts()
    assert HOUR_COUNTS_CODEC.decode(b"") == HourCounts()


def test_an_hour_stored_as_json_by_an_earlier_version_is_read_and_counts_on() -> None:
    record = an_hour()
    stored = HOUR_COUNTS_CODEC.decode(json.dumps(old_json(record), ensure_ascii=False).encode())
    assert stored == record
    # Counting goes on where the old record stopped: a replayed post is skipped, the next one counted.
    assert not stored.add(9, triaged(3, "invoice still wrong"), at=AT, keywords=["invoice"])
    assert stored.add(10, triaged(4, "invoice late"), at=AT, keywords=["invoice"])
    assert HOUR_COUNTS_CODEC.decode(HOUR_COUNTS_CODEC.encode(stored)) == stored


def test_the_cursor_and_the_watch_list_read_their_json_forms() -> None:
    assert CURSOR_CODEC.decode(CURSOR_CODEC.encode(42)) == 42
    assert CURSOR_CODEC.decode(json.dumps({"seq": 17}).encode()) == 17
    watches = {"acme": 4_100_000, "Acme Café": 4_100_006}
    assert WATCH_LIST_CODEC.decode(WATCH_LIST_CODEC.encode(watches)) == watches
    assert WATCH_LIST_CODEC.decode(json.dumps(watches).encode()) == watches


def test_an_alert_stored_as_json_by_an_earlier_version_is_read() -> None:
    alert = alert_pb2.Alert(
        id="acme:4100000",
        kind=alert_pb2.ALERT_KIND_REPUTATION_SPIKE,
        topic="acme",
        status=alert_pb2.ALERT_STATUS_FIRING,
        revision=3,
        count=41,
        ratio=6.5,
        top_terms=["invoice", "charged"],
        categories=[alert_pb2.Share(name="billing", count=30)],
        samples=[alert_pb2.SamplePost(mention_id="m_1", text="charged twice", followers=300, case_id="c_1")],
    )
    alert.raised_at.FromDatetime(AT)
    # What earlier versions stored: the alert's JSON mapping with the proto field names.
    old = json.dumps(MessageToDict(alert, preserving_proto_field_name=True)).encode()
    assert ALERT_CODEC.decode(old) == alert
    assert ALERT_CODEC.decode(ALERT_CODEC.encode(alert)) == alert
