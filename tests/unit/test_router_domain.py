"""Router domain: case identity, escalation decisions, state changes and the outbox record."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from clamor.v1 import case_pb2, mention_pb2, triage_pb2
from services.router.domain import (
    apply_action,
    case_id_for,
    escalation_for,
    mark_escalated,
    mark_routed,
    new_case,
    outbox_record,
    should_escalate,
)

NATS_KV_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
SEVERITY_ORDER = ["LOW", "MEDIUM", "HIGH", "CRITICAL"]


def triaged(
    mention_id: str = "sample:p0001",
    *,
    severity: triage_pb2.Severity.ValueType = triage_pb2.SEVERITY_HIGH,
    flags: tuple[triage_pb2.RiskFlag.ValueType, ...] = (triage_pb2.RISK_FLAG_LEGAL_THREAT,),
) -> triage_pb2.TriagedMention:
    return triage_pb2.TriagedMention(
        mention=mention_pb2.Mention(id=mention_id, text="My lawyer will hear about this"),
        result=triage_pb2.TriageResult(
            verdict=triage_pb2.VERDICT_COMPLAINT, severity=severity, risk_flags=flags, complaint_score=0.8
        ),
    )


@pytest.fixture
def case() -> case_pb2.Case:
    return new_case(triaged(), team="care", now=NOW)


# --- case identity ------------------------------------------------------------------------


def test_case_id_is_stable_for_a_mention() -> None:
    assert case_id_for("sample:p0001") == case_id_for("sample:p0001")


def test_case_ids_differ_between_mentions() -> None:
    ids = {case_id_for(f"sample:p{n:04d}") for n in range(500)}
    assert len(ids) == 500


@pytest.mark.parametrize("mention_id", ["sample:p0001", "x:1864815141701802854", "zh:退款/问题 #1", "a b*>c", ""])
def test_case_id_is_a_valid_nats_kv_key(mention_id: str) -> None:
    assert NATS_KV_KEY.match(case_id_for(mention_id))


def test_new_case_starts_new_with_the_triage_verdict(case: case_pb2.Case) -> None:
    assert case.id == case_id_for("sample:p0001")
    assert case.state == case_pb2.CASE_STATE_NEW
    assert (case.severity, list(case.risk_flags), case.team) == (
        triage_pb2.SEVERITY_HIGH,
        [triage_pb2.RISK_FLAG_LEGAL_THREAT],
        "care",
    )
    assert [m.mention.id for m in case.mentions] == ["sample:p0001"]


def test_new_case_history_records_its_creation(case: case_pb2.Case) -> None:
    assert [e.kind for e in case.history] == ["created"]
    assert "sample:p0001" in case.history[0].detail
    assert case.history[0].at.ToDatetime(tzinfo=UTC) == NOW


# --- escalation decisions -----------------------------------------------------------------


@pytest.mark.parametrize("threshold", SEVERITY_ORDER)
@pytest.mark.parametrize("severity", SEVERITY_ORDER)
def test_should_escalate_at_or_above_the_threshold(severity: str, threshold: str) -> None:
    value = triage_pb2.Severity.Value(f"SEVERITY_{severity}")
    expected = SEVERITY_ORDER.index(severity) >= SEVERITY_ORDER.index(threshold)
    assert should_escalate(value, threshold) is expected


def test_unspecified_severity_never_escalates() -> None:
    assert not should_escalate(triage_pb2.SEVERITY_UNSPECIFIED, "LOW")


def test_escalation_id_is_case_id_and_level(case: case_pb2.Case) -> None:
    escalation = escalation_for(case, team="escalations", level=2, now=NOW)
    assert escalation.id == f"{case.id}:2"
    assert (escalation.team, escalation.level) == ("escalations", 2)


def test_escalation_reason_names_severity_and_flags() -> None:
    flags = (triage_pb2.RISK_FLAG_LEGAL_THREAT, triage_pb2.RISK_FLAG_SAFETY)
    case = new_case(triaged(severity=triage_pb2.SEVERITY_CRITICAL, flags=flags), team="care", now=NOW)
    reason = escalation_for(case, team="escalations", level=1, now=NOW).reason
    assert "CRITICAL" in reason
    assert "legal_threat" in reason
    assert "safety" in reason


def test_escalation_reason_without_flags_names_only_severity() -> None:
    case = new_case(triaged(severity=triage_pb2.SEVERITY_HIGH, flags=()), team="care", now=NOW)
    assert escalation_for(case, team="escalations", level=1, now=NOW).reason == "severity HIGH"


# --- state changes ------------------------------------------------------------------------


def test_mark_routed_moves_a_new_case_to_routed(case: case_pb2.Case) -> None:
    mark_routed(case, destination="outbox", now=LATER)
    assert case.state == case_pb2.CASE_STATE_ROUTED
    assert list(case.destinations) == ["outbox"]
    assert (case.history[-1].kind, case.history[-1].detail) == ("routed", "outbox")
    assert case.updated_at.ToDatetime(tzinfo=UTC) == LATER


def test_mark_routed_records_each_destination_once(case: case_pb2.Case) -> None:
    for destination in ("outbox", "outbox", "crm"):
        mark_routed(case, destination=destination, now=LATER)
    assert list(case.destinations) == ["outbox", "crm"]


def test_mark_routed_keeps_an_escalated_case_escalated(case: case_pb2.Case) -> None:
    mark_escalated(case, escalation_for(case, team="escalations", level=1, now=NOW), now=NOW)
    mark_routed(case, destination="outbox", now=LATER)
    assert case.state == case_pb2.CASE_STATE_ESCALATED


def test_mark_escalated_sets_state_level_and_history(case: case_pb2.Case) -> None:
    escalation = escalation_for(case, team="escalations", level=1, now=LATER)
    mark_escalated(case, escalation, now=LATER)
    assert (case.state, case.escalation_level) == (case_pb2.CASE_STATE_ESCALATED, 1)
    assert case.history[-1].kind == "escalated"
    assert "escalations" in case.history[-1].detail
    assert escalation.reason in case.history[-1].detail
    assert case.updated_at.ToDatetime(tzinfo=UTC) == LATER


def test_mark_escalated_never_lowers_the_level(case: case_pb2.Case) -> None:
    mark_escalated(case, escalation_for(case, team="escalations", level=2, now=NOW), now=NOW)
    mark_escalated(case, escalation_for(case, team="care", level=1, now=LATER), now=LATER)
    assert case.escalation_level == 2


# --- outbox record ------------------------------------------------------------------------


def test_outbox_record_is_json_serialisable(case: case_pb2.Case) -> None:
    mark_routed(case, destination="outbox", now=LATER)
    record = outbox_record(case)
    assert json.loads(json.dumps(record)) == record


def test_outbox_record_carries_the_case_id(case: case_pb2.Case) -> None:
    assert outbox_record(case)["id"] == case.id


def test_outbox_record_writes_enums_by_name(case: case_pb2.Case) -> None:
    record = outbox_record(case)
    assert record["state"] == "CASE_STATE_NEW"
    assert record["severity"] == "SEVERITY_HIGH"
    assert record["risk_flags"] == ["RISK_FLAG_LEGAL_THREAT"]
    assert record["mentions"][0]["result"]["verdict"] == "VERDICT_COMPLAINT"


def test_outbox_record_keeps_proto_field_names(case: case_pb2.Case) -> None:
    assert "created_at" in outbox_record(case)


# --- actions ------------------------------------------------------------------------------

ACK = case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE
RESOLVE = case_pb2.CASE_ACTION_KIND_RESOLVE


def action(
    case: case_pb2.Case, kind: case_pb2.CaseActionKind.ValueType, request_id: str = "r1", *, actor: str = "dana"
) -> case_pb2.CaseAction:
    name = case_pb2.CaseActionKind.Name(kind).removeprefix("CASE_ACTION_KIND_").lower()
    return case_pb2.CaseAction(id=f"{case.id}:{name}:{request_id}", case_id=case.id, kind=kind, actor=actor, via="link")


@pytest.fixture
def escalated(case: case_pb2.Case) -> case_pb2.Case:
    mark_escalated(case, escalation_for(case, team="escalations", level=1, now=NOW), now=NOW)
    return case


def test_acknowledge_moves_an_escalated_case_to_acknowledged(escalated: case_pb2.Case) -> None:
    assert apply_action(escalated, action(escalated, ACK), now=LATER) is True
    assert escalated.state == case_pb2.CASE_STATE_ACKNOWLEDGED
    assert escalated.updated_at.ToDatetime(tzinfo=UTC) == LATER


def test_acknowledge_records_history_naming_actor_and_via(escalated: case_pb2.Case) -> None:
    ack = action(escalated, ACK)
    apply_action(escalated, ack, now=LATER)
    event = escalated.history[-1]
    assert (event.kind, event.detail) == ("acknowledge", f"acknowledge by dana via link [{ack.id}]")
    assert event.at.ToDatetime(tzinfo=UTC) == LATER


def test_the_same_action_again_changes_nothing(escalated: case_pb2.Case) -> None:
    apply_action(escalated, action(escalated, ACK), now=LATER)
    before = case_pb2.Case()
    before.CopyFrom(escalated)
    assert apply_action(escalated, action(escalated, ACK), now=LATER + timedelta(minutes=1)) is False
    assert escalated == before


def test_resolve_after_acknowledge_resolves_the_case(escalated: case_pb2.Case) -> None:
    apply_action(escalated, action(escalated, ACK), now=LATER)
    assert apply_action(escalated, action(escalated, RESOLVE), now=LATER) is True
    assert escalated.state == case_pb2.CASE_STATE_RESOLVED


def test_acknowledge_after_resolve_is_recorded_but_keeps_the_case_resolved(escalated: case_pb2.Case) -> None:
    apply_action(escalated, action(escalated, RESOLVE), now=LATER)
    assert apply_action(escalated, action(escalated, ACK, actor="lee"), now=LATER) is True
    assert escalated.state == case_pb2.CASE_STATE_RESOLVED
    assert escalated.history[-1].kind == "acknowledge"
    assert "lee" in escalated.history[-1].detail


def test_not_a_complaint_resolves_the_case(escalated: case_pb2.Case) -> None:
    apply_action(escalated, action(escalated, case_pb2.CASE_ACTION_KIND_NOT_A_COMPLAINT), now=LATER)
    assert escalated.state == case_pb2.CASE_STATE_RESOLVED
    assert escalated.history[-1].kind == "not_a_complaint"


def test_an_action_of_unspecified_kind_changes_nothing(escalated: case_pb2.Case) -> None:
    history = len(escalated.history)
    unspecified = action(escalated, case_pb2.CASE_ACTION_KIND_UNSPECIFIED)
    assert apply_action(escalated, unspecified, now=LATER) is False
    assert (escalated.state, len(escalated.history)) == (case_pb2.CASE_STATE_ESCALATED, history)
