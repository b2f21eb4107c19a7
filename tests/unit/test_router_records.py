"""How cases are read from KV: the typed history, and the free-text history of earlier versions."""

from __future__ import annotations

from clamor.v1 import case_pb2, mention_pb2, triage_pb2
from services.router.records import CASE_CODEC, KEY_RECORD_CODEC, KeyRecord


def _legacy_event(kind: str, detail: str) -> bytes:
    """A history entry as earlier versions wrote it: the kind as free text in field 2."""
    kind_bytes, detail_bytes = kind.encode(), detail.encode()
    return bytes([0x12, len(kind_bytes)]) + kind_bytes + bytes([0x1A, len(detail_bytes)]) + detail_bytes


def _legacy_case(*events: tuple[str, str]) -> bytes:
    founder = triage_pb2.TriagedMention(mention=mention_pb2.Mention(id="x:1"))
    head = case_pb2.Case(id="c_1", mentions=[founder]).SerializeToString()
    history = b""
    for kind, detail in events:
        entry = _legacy_event(kind, detail)
        history += bytes([0x52, len(entry)]) + entry  # field 10 (history), length-delimited
    return head + history


def test_a_case_round_trips_through_its_codec() -> None:
    case = case_pb2.Case(
        id="c_2",
        history=[
            case_pb2.CaseEvent(
                event_kind=case_pb2.CASE_EVENT_KIND_RESOLVE,
                detail="resolve by dana [c_2:resolve:1]",
                ref=case_pb2.CaseEventRef(action_id="c_2:resolve:1"),
            )
        ],
    )
    assert CASE_CODEC.decode(CASE_CODEC.encode(case)) == case


def test_the_free_text_history_of_earlier_versions_is_read_typed_with_its_refs() -> None:
    case = CASE_CODEC.decode(
        _legacy_case(
            ("created", "from mention x:1, routed by the defaults"),
            ("post added", "mention x:2"),
            ("routed", "outbox"),
            ("brand reply", '@acme: "sorry" [x:3]'),
            ("escalated", "level 1 to legal: severity HIGH [c_1:now:legal]"),
            ("acknowledge", "acknowledge by dana via link [c_1:acknowledge:r1]"),
        )
    )
    assert [(e.event_kind, e.ref) for e in case.history] == [
        (case_pb2.CASE_EVENT_KIND_CREATED, case_pb2.CaseEventRef(mention_id="x:1")),
        (case_pb2.CASE_EVENT_KIND_POST_ADDED, case_pb2.CaseEventRef(mention_id="x:2")),
        (case_pb2.CASE_EVENT_KIND_ROUTED, case_pb2.CaseEventRef()),
        (case_pb2.CASE_EVENT_KIND_BRAND_REPLY, case_pb2.CaseEventRef(mention_id="x:3")),
        (case_pb2.CASE_EVENT_KIND_ESCALATED, case_pb2.CaseEventRef(escalation_id="c_1:now:legal")),
        (case_pb2.CASE_EVENT_KIND_ACKNOWLEDGE, case_pb2.CaseEventRef(action_id="c_1:acknowledge:r1")),
    ]
    # Written back, the free-text kind is gone: the next version reads only typed entries.
    assert b"\x12\x09escalated" not in CASE_CODEC.encode(case)


def test_a_case_key_record_round_trips() -> None:
    record = KeyRecord("c_9", 1_765_000_000.5)
    assert KEY_RECORD_CODEC.decode(KEY_RECORD_CODEC.encode(record)) == record


def test_the_text_priority_of_earlier_versions_is_read_as_the_enum() -> None:
    old = case_pb2.Case(id="c_3").SerializeToString() + bytes([0x72, 6]) + b"urgent"  # field 14, length-delimited
    assert CASE_CODEC.decode(old).priority_level == case_pb2.CASE_PRIORITY_URGENT
    # A priority set in the new field wins over any text an older writer left beside it.
    both = case_pb2.Case(id="c_3", priority_level=case_pb2.CASE_PRIORITY_LOW).SerializeToString() + old[-8:]
    assert CASE_CODEC.decode(both).priority_level == case_pb2.CASE_PRIORITY_LOW
