"""How the router's cases and case keys are stored in KV: protobuf records, and reading older ones.

Cases are stored as the ``Case`` contract itself. Earlier versions named a history entry's kind
in free text (field 2, now reserved) and marked what it referred to with a trailing ``[id]`` in
its detail; such entries are read into ``event_kind`` and ``ref`` here, once, so the rest of the
router only ever sees typed events. The next change of the case writes it back in the new form.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from google.protobuf import unknown_fields

from clamor.v1 import case_pb2, router_state_pb2
from services.router.domain import EVENT_LABELS
from services.shared.case_names import priority_value
from services.shared.kv_state import MappedCodec, ProtoCodec

# The field number of the free-text kind earlier versions wrote, and its wire type (length-delimited).
_LEGACY_KIND_FIELD = 2
_LENGTH_DELIMITED = 2
# Earlier versions wrote the kind as its label, the words histories still show.
_LEGACY_KINDS = {label: kind for kind, label in EVENT_LABELS.items()}
# Where earlier versions kept the priority as text ("urgent"…); now ``priority_level``.
_LEGACY_PRIORITY_FIELD = 14
_ACTION_KINDS = (
    case_pb2.CASE_EVENT_KIND_ACKNOWLEDGE,
    case_pb2.CASE_EVENT_KIND_RESOLVE,
    case_pb2.CASE_EVENT_KIND_NOT_A_COMPLAINT,
)
_ESCALATION_KINDS = (case_pb2.CASE_EVENT_KIND_ESCALATED, case_pb2.CASE_EVENT_KIND_SLA_WARNING)


def _marker(detail: str) -> str:
    """The id an earlier version appended to a detail as ``[id]``; empty when there is none."""
    if not detail.endswith("]") or "[" not in detail:
        return ""
    return detail[detail.rindex("[") + 1 : -1]


def _legacy_ref(case: case_pb2.Case, event: case_pb2.CaseEvent) -> case_pb2.CaseEventRef | None:
    kind = event.event_kind
    if kind == case_pb2.CASE_EVENT_KIND_CREATED and case.mentions:
        return case_pb2.CaseEventRef(mention_id=case.mentions[0].mention.id)
    if kind == case_pb2.CASE_EVENT_KIND_POST_ADDED:
        return case_pb2.CaseEventRef(mention_id=event.detail.removeprefix("mention "))
    marked = _marker(event.detail)
    if not marked:
        return None
    if kind == case_pb2.CASE_EVENT_KIND_BRAND_REPLY:
        return case_pb2.CaseEventRef(mention_id=marked)
    if kind in _ESCALATION_KINDS:
        return case_pb2.CaseEventRef(escalation_id=marked)
    if kind in _ACTION_KINDS:
        return case_pb2.CaseEventRef(action_id=marked)
    return None


def _upgrade_priority(case: case_pb2.Case) -> None:
    if case.priority_level != case_pb2.CASE_PRIORITY_UNSPECIFIED:
        return
    found = unknown_fields.UnknownFieldSet(case)
    for field in (found[index] for index in range(len(found))):
        if field.field_number == _LEGACY_PRIORITY_FIELD and field.wire_type == _LENGTH_DELIMITED:
            with contextlib.suppress(ValueError):
                case.priority_level = priority_value(bytes(field.data).decode())


def upgrade_history(case: case_pb2.Case) -> case_pb2.Case:
    """Type the history entries and priority an earlier version wrote (in place; returns ``case``)."""
    _upgrade_priority(case)
    for event in case.history:
        if event.event_kind != case_pb2.CASE_EVENT_KIND_UNSPECIFIED:
            continue
        found = unknown_fields.UnknownFieldSet(event)
        for field in (found[index] for index in range(len(found))):
            if field.field_number == _LEGACY_KIND_FIELD and field.wire_type == _LENGTH_DELIMITED:
                event.event_kind = _LEGACY_KINDS.get(bytes(field.data).decode(), case_pb2.CASE_EVENT_KIND_UNSPECIFIED)
        event.DiscardUnknownFields()
        ref = _legacy_ref(case, event)
        if ref is not None:
            event.ref.CopyFrom(ref)
    return case


class CaseCodec(ProtoCodec[case_pb2.Case]):
    """``Case`` in binary; history entries of earlier versions come back typed."""

    def __init__(self) -> None:
        super().__init__(case_pb2.Case)

    def decode(self, data: bytes) -> case_pb2.Case:
        return upgrade_history(super().decode(data))


CASE_CODEC = CaseCodec()


@dataclass(frozen=True)
class KeyRecord:
    case_id: str
    # When the key was claimed or last pointed (unix seconds): a claim whose case never appears expires.
    at: float = 0.0


KEY_RECORD_CODEC = MappedCodec(
    router_state_pb2.CaseKeyRecord,
    to_proto=lambda r: router_state_pb2.CaseKeyRecord(case_id=r.case_id, at=r.at),
    from_proto=lambda m: KeyRecord(m.case_id, m.at),
)
