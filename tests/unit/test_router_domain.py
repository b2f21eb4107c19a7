"""Router domain: case identity, escalation decisions, state changes and the outbox record."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from clamor.v1 import case_pb2, mention_pb2, triage_pb2
from services.router.domain import (
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
