"""Router domain: case identity and grouping, routing a case, escalations, actions and the outbox record."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from clamor.v1 import case_pb2, mention_pb2, triage_pb2
from services.router.domain import (
    BRAND_REPLY,
    CRM_EVENT_KINDS,
    EVENT_LABELS,
    EXCERPT_CHARS,
    add_destinations,
    apply_action,
    attach_brand_reply,
    attach_post,
    case_id_for,
    crm_events,
    escalation_for,
    event_label,
    event_record,
    group_keys,
    mark_escalated,
    new_case,
    note_breach,
    outbox_record,
    should_escalate,
)
from services.router.rules import RoutingDecision

NATS_KV_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
LATEST = NOW + timedelta(minutes=30)
SEVERITY_ORDER = ["LOW", "MEDIUM", "HIGH", "CRITICAL"]
LEGAL = triage_pb2.RISK_FLAG_LEGAL_THREAT
SAFETY = triage_pb2.RISK_FLAG_SAFETY
ACK = case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE
RESOLVE = case_pb2.CASE_ACTION_KIND_RESOLVE
NOT_A_COMPLAINT = case_pb2.CASE_ACTION_KIND_NOT_A_COMPLAINT
DECISION = RoutingDecision(
    routed=True,
    destinations=("zendesk", "outbox"),
    team="billing",
    priority="high",
    sla="standard",
    escalate_to=("legal",),
    matched=("billing", "legal-threats"),
)


def mention(
    mention_id: str = "sample:p0001", *, handle: str = "Dana_K", thread_id: str = "t-42", platform: str = "reddit"
) -> mention_pb2.Mention:
    return mention_pb2.Mention(
        id=mention_id,
        platform=platform,
        watch="acme",
        thread_id=thread_id,
        author=mention_pb2.Author(handle=handle),
        text="My lawyer will hear about this",
    )


def triaged(
    mention_id: str = "sample:p0001",
    *,
    severity: triage_pb2.Severity.ValueType = triage_pb2.SEVERITY_HIGH,
    flags: tuple[triage_pb2.RiskFlag.ValueType, ...] = (LEGAL,),
    category: str = "billing",
) -> triage_pb2.TriagedMention:
    return triage_pb2.TriagedMention(
        mention=mention(mention_id),
        result=triage_pb2.TriageResult(
            verdict=triage_pb2.VERDICT_COMPLAINT,
            severity=severity,
            risk_flags=flags,
            complaint_score=0.8,
            category=category,
        ),
    )


def copy(case: case_pb2.Case) -> case_pb2.Case:
    result = case_pb2.Case()
    result.CopyFrom(case)
    return result


@pytest.fixture
def case() -> case_pb2.Case:
    return new_case(triaged(), DECISION, keys=["thread:reddit:t-42"], now=NOW)


@pytest.fixture
def routed(case: case_pb2.Case) -> case_pb2.Case:
    add_destinations(case, ("outbox",), now=NOW)
    return case


# --- case identity ------------------------------------------------------------------------


def test_case_id_is_stable_for_a_mention() -> None:
    assert case_id_for("sample:p0001") == case_id_for("sample:p0001")


def test_case_id_is_prefixed_and_fixed_length() -> None:
    assert re.fullmatch(r"c_[0-9a-f]{20}", case_id_for("sample:p0001"))


def test_case_ids_differ_between_mentions() -> None:
    ids = {case_id_for(f"sample:p{n:04d}") for n in range(500)}
    assert len(ids) == 500


@pytest.mark.parametrize("mention_id", ["sample:p0001", "x:1864815141701802854", "zh:退款/问题 #1", "a b*>c", ""])
def test_case_id_is_a_valid_nats_kv_key(mention_id: str) -> None:
    assert NATS_KV_KEY.match(case_id_for(mention_id))


# --- grouping keys --------------------------------------------------------------------------


def test_group_keys_put_the_thread_before_the_author() -> None:
    keys = group_keys(mention(), by_author=True, by_thread=True)
    assert keys == ["thread:reddit:t-42", "author:reddit:dana_k:acme"]


def test_group_key_of_the_author_is_lower_cased_with_platform_and_watch() -> None:
    assert group_keys(mention(handle="DaNa"), by_author=True, by_thread=False) == ["author:reddit:dana:acme"]


def test_same_thread_on_another_platform_is_another_key() -> None:
    reddit = group_keys(mention(platform="reddit"), by_author=False, by_thread=True)
    mastodon = group_keys(mention(platform="mastodon"), by_author=False, by_thread=True)
    assert reddit != mastodon


def test_grouping_by_thread_off_gives_only_the_author() -> None:
    assert group_keys(mention(), by_author=True, by_thread=False) == ["author:reddit:dana_k:acme"]


def test_grouping_by_author_off_gives_only_the_thread() -> None:
    assert group_keys(mention(), by_author=False, by_thread=True) == ["thread:reddit:t-42"]


def test_both_groupings_off_give_no_keys() -> None:
    assert group_keys(mention(), by_author=False, by_thread=False) == []


def test_a_post_without_a_thread_gives_only_the_author() -> None:
    assert group_keys(mention(thread_id=""), by_author=True, by_thread=True) == ["author:reddit:dana_k:acme"]


def test_a_post_without_a_handle_gives_only_the_thread() -> None:
    assert group_keys(mention(handle=""), by_author=True, by_thread=True) == ["thread:reddit:t-42"]


def test_a_post_with_neither_gives_no_keys() -> None:
    assert group_keys(mention(handle="", thread_id=""), by_author=True, by_thread=True) == []


# --- a new case -----------------------------------------------------------------------------


def test_new_case_starts_new_with_the_triage_verdict(case: case_pb2.Case) -> None:
    assert case.id == case_id_for("sample:p0001")
    assert case.state == case_pb2.CASE_STATE_NEW
    assert (case.severity, case.category, list(case.risk_flags)) == (triage_pb2.SEVERITY_HIGH, "billing", [LEGAL])
    assert [m.mention.id for m in case.mentions] == ["sample:p0001"]


def test_new_case_takes_team_priority_sla_and_rules_from_the_decision(case: case_pb2.Case) -> None:
    assert (case.team, case.priority_level, case.sla_policy) == ("billing", case_pb2.CASE_PRIORITY_HIGH, "standard")
    assert list(case.matched_rules) == ["billing", "legal-threats"]


def test_new_case_keeps_its_group_keys(case: case_pb2.Case) -> None:
    assert list(case.group_keys) == ["thread:reddit:t-42"]


def test_new_case_has_no_destinations_until_they_are_added(case: case_pb2.Case) -> None:
    assert list(case.destinations) == []


def test_new_case_is_created_and_updated_now(case: case_pb2.Case) -> None:
    assert case.created_at.ToDatetime(tzinfo=UTC) == NOW
    assert case.updated_at.ToDatetime(tzinfo=UTC) == NOW


def test_new_case_history_names_the_mention_and_the_matched_rules(case: case_pb2.Case) -> None:
    assert [(event_label(e), e.detail) for e in case.history] == [
        ("created", "from mention sample:p0001, routed by billing, legal-threats")
    ]
    assert case.history[0].at.ToDatetime(tzinfo=UTC) == NOW


def test_new_case_carries_its_sla_deadlines() -> None:
    case = new_case(triaged(), DECISION, keys=[], now=NOW, due=(LATER, LATEST))
    assert case.sla.first_response_due.ToDatetime(tzinfo=UTC) == LATER
    assert case.sla.resolution_due.ToDatetime(tzinfo=UTC) == LATEST
    assert (case.sla.first_response_breached, case.sla.resolution_breached) == (False, False)


def test_new_case_leaves_a_clock_the_policy_lacks_unset() -> None:
    case = new_case(triaged(), DECISION, keys=[], now=NOW, due=(None, LATEST))
    assert not case.sla.HasField("first_response_due")
    assert case.sla.HasField("resolution_due")


def test_new_case_without_deadlines_has_none(case: case_pb2.Case) -> None:
    assert not case.HasField("sla")


def test_new_case_routed_by_no_rule_says_the_defaults() -> None:
    case = new_case(triaged(), dataclasses.replace(DECISION, matched=()), keys=[], now=NOW)
    assert case.history[0].detail == "from mention sample:p0001, routed by the defaults"


# --- later posts ----------------------------------------------------------------------------


def test_attach_post_adds_the_post_and_records_it(case: case_pb2.Case) -> None:
    assert attach_post(case, triaged("sample:p0002"), now=LATER) is True
    assert [m.mention.id for m in case.mentions] == ["sample:p0001", "sample:p0002"]
    assert (event_label(case.history[-1]), case.history[-1].detail) == ("post added", "mention sample:p0002")
    assert case.updated_at.ToDatetime(tzinfo=UTC) == LATER


def test_attach_post_is_idempotent_by_mention_id(case: case_pb2.Case) -> None:
    attach_post(case, triaged("sample:p0002"), now=LATER)
    before = copy(case)
    assert attach_post(case, triaged("sample:p0002"), now=LATEST) is False
    assert case == before


def test_attach_post_of_the_founding_post_changes_nothing(case: case_pb2.Case) -> None:
    before = copy(case)
    assert attach_post(case, triaged("sample:p0001"), now=LATER) is False
    assert case == before


def test_attach_post_raises_the_severity(case: case_pb2.Case) -> None:
    attach_post(case, triaged("sample:p0002", severity=triage_pb2.SEVERITY_CRITICAL), now=LATER)
    assert case.severity == triage_pb2.SEVERITY_CRITICAL


def test_attach_post_never_lowers_the_severity(case: case_pb2.Case) -> None:
    attach_post(case, triaged("sample:p0002", severity=triage_pb2.SEVERITY_LOW), now=LATER)
    assert case.severity == triage_pb2.SEVERITY_HIGH


def test_attach_post_merges_risk_flags_without_repeats(case: case_pb2.Case) -> None:
    attach_post(case, triaged("sample:p0002", flags=(SAFETY, LEGAL)), now=LATER)
    assert list(case.risk_flags) == [LEGAL, SAFETY]


def test_attach_post_keeps_the_category_of_the_first_post(case: case_pb2.Case) -> None:
    attach_post(case, triaged("sample:p0002", category="delivery"), now=LATER)
    assert case.category == "billing"


# --- brand replies --------------------------------------------------------------------------


def brand_reply(
    mention_id: str = "sample:p0003", *, text: str = "@Dana_K so sorry about this, please DM us"
) -> triage_pb2.TriagedMention:
    """The brand's own reply, with a verdict as alarming as a forged or mistaken one could be."""
    reply = triaged(mention_id, severity=triage_pb2.SEVERITY_CRITICAL, flags=(SAFETY,), category="refunds")
    reply.mention.author.handle = "AcmeCare"
    reply.mention.text = text
    reply.mention.own_account = True
    return reply


def test_attach_brand_reply_records_the_handle_and_an_excerpt(escalated: case_pb2.Case) -> None:
    assert attach_brand_reply(escalated, brand_reply(), now=LATER) is True
    event = escalated.history[-1]
    assert (event_label(event), event.detail) == (
        BRAND_REPLY,
        '@AcmeCare: "@Dana_K so sorry about this, please DM us" [sample:p0003]',
    )
    assert event.at.ToDatetime(tzinfo=UTC) == LATER
    assert escalated.updated_at.ToDatetime(tzinfo=UTC) == LATER


def test_attach_brand_reply_is_idempotent_by_mention_id(routed: case_pb2.Case) -> None:
    attach_brand_reply(routed, brand_reply(), now=LATER)
    before = copy(routed)
    assert attach_brand_reply(routed, brand_reply(), now=LATEST) is False
    assert routed == before
    assert attach_brand_reply(routed, brand_reply("sample:p0004"), now=LATEST) is True
    assert [event_label(e) for e in routed.history].count(BRAND_REPLY) == 2


@pytest.mark.parametrize(
    "state", [case_pb2.CASE_STATE_ROUTED, case_pb2.CASE_STATE_ESCALATED], ids=["routed", "escalated"]
)
def test_attach_brand_reply_leaves_severity_flags_state_and_posts_alone(routed: case_pb2.Case, state: int) -> None:
    routed.state = cast("case_pb2.CaseState.ValueType", state)
    before = copy(routed)
    attach_brand_reply(routed, brand_reply(), now=LATER)
    assert (routed.state, routed.severity, list(routed.risk_flags), routed.category) == (
        before.state,
        before.severity,
        list(before.risk_flags),
        before.category,
    )
    assert [m.mention.id for m in routed.mentions] == ["sample:p0001"]
    assert (routed.escalation_level, list(routed.destinations)) == (before.escalation_level, list(before.destinations))


def test_attach_brand_reply_quotes_a_long_reply_on_one_line_cut_short(case: case_pb2.Case) -> None:
    attach_brand_reply(case, brand_reply(text="Sorry!\n\n" + "word " * 200), now=LATER)
    detail = case.history[-1].detail
    quoted = detail[detail.index('"') + 1 : detail.rindex('"')]
    assert len(quoted) == EXCERPT_CHARS
    assert quoted.startswith("Sorry! word")
    assert quoted.endswith("…")
    assert "\n" not in detail


def test_a_brand_reply_is_news_for_the_crm(routed: case_pb2.Case) -> None:
    synced = len(routed.history)
    attach_brand_reply(routed, brand_reply(), now=LATER)
    assert [event_label(e) for e in crm_events(routed, synced)] == [BRAND_REPLY]


# --- destinations ---------------------------------------------------------------------------


def test_add_destinations_moves_a_new_case_to_routed(case: case_pb2.Case) -> None:
    assert add_destinations(case, ("outbox", "zendesk"), now=LATER) is True
    assert case.state == case_pb2.CASE_STATE_ROUTED
    assert list(case.destinations) == ["outbox", "zendesk"]
    assert (event_label(case.history[-1]), case.history[-1].detail) == ("routed", "outbox, zendesk")
    assert case.updated_at.ToDatetime(tzinfo=UTC) == LATER


def test_add_destinations_records_only_the_new_names(routed: case_pb2.Case) -> None:
    assert add_destinations(routed, ("outbox", "zendesk"), now=LATER) is True
    assert list(routed.destinations) == ["outbox", "zendesk"]
    assert routed.history[-1].detail == "zendesk"


def test_add_destinations_again_changes_nothing(routed: case_pb2.Case) -> None:
    before = copy(routed)
    assert add_destinations(routed, ("outbox",), now=LATER) is False
    assert routed == before


def test_add_no_destinations_changes_nothing(case: case_pb2.Case) -> None:
    assert add_destinations(case, (), now=LATER) is False
    assert case.state == case_pb2.CASE_STATE_NEW


def test_add_destinations_keeps_an_escalated_case_escalated(routed: case_pb2.Case) -> None:
    mark_escalated(routed, escalation_for(routed, team="escalations", level=1, now=NOW), now=NOW)
    add_destinations(routed, ("zendesk",), now=LATER)
    assert routed.state == case_pb2.CASE_STATE_ESCALATED


# --- escalation decisions -------------------------------------------------------------------


@pytest.mark.parametrize("threshold", SEVERITY_ORDER)
@pytest.mark.parametrize("severity", SEVERITY_ORDER)
def test_should_escalate_at_or_above_the_threshold(severity: str, threshold: str) -> None:
    value = triage_pb2.Severity.Value(f"SEVERITY_{severity}")
    expected = SEVERITY_ORDER.index(severity) >= SEVERITY_ORDER.index(threshold)
    assert should_escalate(value, threshold) is expected


def test_unspecified_severity_never_escalates() -> None:
    assert not should_escalate(triage_pb2.SEVERITY_UNSPECIFIED, "LOW")


def test_escalation_id_is_case_level_and_team(case: case_pb2.Case) -> None:
    escalation = escalation_for(case, team="escalations", level=2, now=NOW)
    assert escalation.id == f"{case.id}:2:escalations"
    assert (escalation.team, escalation.level) == ("escalations", 2)
    assert escalation.raised_at.ToDatetime(tzinfo=UTC) == NOW


def test_escalation_id_uses_the_step_when_given(case: case_pb2.Case) -> None:
    escalation = escalation_for(case, team="leads", level=1, now=NOW, step="sla:first_response:level1")
    assert escalation.id == f"{case.id}:sla:first_response:level1:leads"


def test_escalation_ids_differ_by_team(case: case_pb2.Case) -> None:
    legal = escalation_for(case, team="legal", level=1, now=NOW, step="now")
    escalations = escalation_for(case, team="escalations", level=1, now=NOW, step="now")
    assert legal.id != escalations.id


def test_escalation_carries_the_case(case: case_pb2.Case) -> None:
    assert escalation_for(case, team="legal", level=1, now=NOW).case == case


def test_escalation_reason_names_severity_and_flags() -> None:
    case = new_case(triaged(severity=triage_pb2.SEVERITY_CRITICAL, flags=(LEGAL, SAFETY)), DECISION, keys=[], now=NOW)
    reason = escalation_for(case, team="escalations", level=1, now=NOW).reason
    assert reason == "severity CRITICAL with legal_threat, safety"


def test_escalation_reason_without_flags_names_only_severity() -> None:
    case = new_case(triaged(flags=()), DECISION, keys=[], now=NOW)
    assert escalation_for(case, team="escalations", level=1, now=NOW).reason == "severity HIGH"


def test_escalation_reason_given_is_kept(case: case_pb2.Case) -> None:
    assert escalation_for(case, team="leads", level=1, now=NOW, reason="SLA breached").reason == "SLA breached"


# --- marking escalations --------------------------------------------------------------------


def test_mark_escalated_sets_state_level_and_history(routed: case_pb2.Case) -> None:
    escalation = escalation_for(routed, team="escalations", level=1, now=LATER)
    assert mark_escalated(routed, escalation, now=LATER) is True
    assert (routed.state, routed.escalation_level) == (case_pb2.CASE_STATE_ESCALATED, 1)
    event = routed.history[-1]
    assert event_label(event) == "escalated"
    assert event.detail == f"level 1 to escalations: {escalation.reason} [{escalation.id}]"
    assert routed.updated_at.ToDatetime(tzinfo=UTC) == LATER


def test_mark_escalated_moves_a_new_case_to_escalated(case: case_pb2.Case) -> None:
    mark_escalated(case, escalation_for(case, team="escalations", level=1, now=NOW), now=NOW)
    assert case.state == case_pb2.CASE_STATE_ESCALATED


def test_mark_escalated_records_each_escalation_once(routed: case_pb2.Case) -> None:
    escalation = escalation_for(routed, team="escalations", level=1, now=NOW)
    mark_escalated(routed, escalation, now=NOW)
    before = copy(routed)
    assert mark_escalated(routed, escalation, now=LATER) is False
    assert routed == before


def test_mark_escalated_records_another_team_at_the_same_level(routed: case_pb2.Case) -> None:
    mark_escalated(routed, escalation_for(routed, team="escalations", level=1, now=NOW), now=NOW)
    assert mark_escalated(routed, escalation_for(routed, team="legal", level=1, now=NOW), now=NOW) is True
    assert [event_label(e) for e in routed.history].count("escalated") == 2


def test_a_level_zero_warning_is_an_event_not_a_state(routed: case_pb2.Case) -> None:
    warning = escalation_for(routed, team="billing", level=0, now=LATER, step="sla:first_response:warning")
    assert mark_escalated(routed, warning, now=LATER) is True
    assert (routed.state, routed.escalation_level) == (case_pb2.CASE_STATE_ROUTED, 0)
    assert event_label(routed.history[-1]) == "sla warning"
    assert routed.history[-1].detail.endswith(f"[{warning.id}]")


def test_a_warning_is_recorded_once(routed: case_pb2.Case) -> None:
    warning = escalation_for(routed, team="billing", level=0, now=LATER, step="sla:first_response:warning")
    mark_escalated(routed, warning, now=LATER)
    assert mark_escalated(routed, warning, now=LATEST) is False


def test_mark_escalated_never_lowers_the_level(routed: case_pb2.Case) -> None:
    mark_escalated(routed, escalation_for(routed, team="managers", level=2, now=NOW), now=NOW)
    mark_escalated(routed, escalation_for(routed, team="leads", level=1, now=LATER), now=LATER)
    assert routed.escalation_level == 2


@pytest.mark.parametrize("kind", [ACK, RESOLVE])
def test_an_escalation_after_an_answer_keeps_the_state(
    routed: case_pb2.Case, kind: case_pb2.CaseActionKind.ValueType
) -> None:
    apply_action(routed, action(routed, kind), now=LATER)
    state = routed.state
    assert mark_escalated(routed, escalation_for(routed, team="managers", level=2, now=LATEST), now=LATEST) is True
    assert (routed.state, routed.escalation_level) == (state, 2)


# --- SLA breaches ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clock", "field"), [("first_response", "first_response_breached"), ("resolution", "resolution_breached")]
)
def test_note_breach_marks_its_clock_once(case: case_pb2.Case, clock: str, field: str) -> None:
    assert note_breach(case, clock) is True
    assert getattr(case.sla, field) is True
    assert note_breach(case, clock) is False


def test_note_breach_leaves_the_other_clock_alone(case: case_pb2.Case) -> None:
    note_breach(case, "first_response")
    assert case.sla.resolution_breached is False


def test_note_breach_of_an_unknown_clock_changes_nothing(case: case_pb2.Case) -> None:
    before = copy(case)
    assert note_breach(case, "lunch") is False
    assert case == before


# --- actions ------------------------------------------------------------------------------


def action(
    case: case_pb2.Case, kind: case_pb2.CaseActionKind.ValueType, request_id: str = "r1", *, actor: str = "dana"
) -> case_pb2.CaseAction:
    name = case_pb2.CaseActionKind.Name(kind).removeprefix("CASE_ACTION_KIND_").lower()
    return case_pb2.CaseAction(
        id=f"{case.id}:{name}:{request_id}",
        case_id=case.id,
        kind=kind,
        actor=actor,
        arrived_via=case_pb2.CASE_ACTION_VIA_LINK,
    )


@pytest.fixture
def escalated(routed: case_pb2.Case) -> case_pb2.Case:
    mark_escalated(routed, escalation_for(routed, team="escalations", level=1, now=NOW), now=NOW)
    return routed


def test_acknowledge_moves_an_escalated_case_to_acknowledged(escalated: case_pb2.Case) -> None:
    assert apply_action(escalated, action(escalated, ACK), now=LATER) is True
    assert escalated.state == case_pb2.CASE_STATE_ACKNOWLEDGED
    assert escalated.updated_at.ToDatetime(tzinfo=UTC) == LATER


def test_first_acknowledge_sets_owner_and_time(escalated: case_pb2.Case) -> None:
    apply_action(escalated, action(escalated, ACK), now=LATER)
    assert escalated.owner == "dana"
    assert escalated.acknowledged_at.ToDatetime(tzinfo=UTC) == LATER
    assert not escalated.HasField("resolved_at")


def test_a_second_acknowledge_keeps_the_first_owner_and_time(escalated: case_pb2.Case) -> None:
    apply_action(escalated, action(escalated, ACK), now=LATER)
    assert apply_action(escalated, action(escalated, ACK, "r2", actor="lee"), now=LATEST) is True
    assert (escalated.owner, escalated.acknowledged_at.ToDatetime(tzinfo=UTC)) == ("dana", LATER)


def test_acknowledge_records_history_naming_actor_and_via(escalated: case_pb2.Case) -> None:
    ack = action(escalated, ACK)
    apply_action(escalated, ack, now=LATER)
    event = escalated.history[-1]
    assert (event_label(event), event.detail) == ("acknowledge", f"acknowledge by dana via link [{ack.id}]")
    assert event.at.ToDatetime(tzinfo=UTC) == LATER


def test_action_without_actor_or_via_leaves_them_out(escalated: case_pb2.Case) -> None:
    ack = case_pb2.CaseAction(id=f"{escalated.id}:acknowledge:r9", case_id=escalated.id, kind=ACK)
    apply_action(escalated, ack, now=LATER)
    assert escalated.history[-1].detail == f"acknowledge [{ack.id}]"


def test_the_same_action_again_changes_nothing(escalated: case_pb2.Case) -> None:
    apply_action(escalated, action(escalated, ACK), now=LATER)
    before = copy(escalated)
    assert apply_action(escalated, action(escalated, ACK), now=LATER + timedelta(minutes=1)) is False
    assert escalated == before


def test_resolve_after_acknowledge_resolves_and_keeps_the_acknowledgement(escalated: case_pb2.Case) -> None:
    apply_action(escalated, action(escalated, ACK), now=LATER)
    assert apply_action(escalated, action(escalated, RESOLVE, actor="lee"), now=LATEST) is True
    assert escalated.state == case_pb2.CASE_STATE_RESOLVED
    assert escalated.resolved_at.ToDatetime(tzinfo=UTC) == LATEST
    assert (escalated.owner, escalated.acknowledged_at.ToDatetime(tzinfo=UTC)) == ("dana", LATER)


def test_resolve_without_acknowledge_gives_the_first_response(escalated: case_pb2.Case) -> None:
    apply_action(escalated, action(escalated, RESOLVE, actor="lee"), now=LATER)
    assert escalated.owner == "lee"
    assert escalated.acknowledged_at.ToDatetime(tzinfo=UTC) == LATER
    assert escalated.resolved_at.ToDatetime(tzinfo=UTC) == LATER


def test_a_second_resolve_keeps_the_first_resolution_time(escalated: case_pb2.Case) -> None:
    apply_action(escalated, action(escalated, RESOLVE), now=LATER)
    assert apply_action(escalated, action(escalated, RESOLVE, "r2"), now=LATEST) is True
    assert escalated.resolved_at.ToDatetime(tzinfo=UTC) == LATER


def test_acknowledge_after_resolve_is_recorded_but_keeps_the_case_resolved(escalated: case_pb2.Case) -> None:
    apply_action(escalated, action(escalated, RESOLVE), now=LATER)
    assert apply_action(escalated, action(escalated, ACK, actor="lee"), now=LATEST) is True
    assert escalated.state == case_pb2.CASE_STATE_RESOLVED
    assert event_label(escalated.history[-1]) == "acknowledge"
    assert "lee" in escalated.history[-1].detail
    assert escalated.owner == "dana"


def test_acknowledge_of_a_new_case_moves_it_forward(case: case_pb2.Case) -> None:
    apply_action(case, action(case, ACK), now=LATER)
    assert case.state == case_pb2.CASE_STATE_ACKNOWLEDGED


def test_not_a_complaint_resolves_the_case(escalated: case_pb2.Case) -> None:
    apply_action(escalated, action(escalated, NOT_A_COMPLAINT), now=LATER)
    assert escalated.state == case_pb2.CASE_STATE_RESOLVED
    assert event_label(escalated.history[-1]) == "not_a_complaint"
    assert escalated.resolved_at.ToDatetime(tzinfo=UTC) == LATER


def test_an_action_of_unspecified_kind_changes_nothing(escalated: case_pb2.Case) -> None:
    before = copy(escalated)
    unspecified = action(escalated, case_pb2.CASE_ACTION_KIND_UNSPECIFIED)
    assert apply_action(escalated, unspecified, now=LATER) is False
    assert escalated == before


# --- what a CRM hears -------------------------------------------------------------------------


def test_crm_events_leave_out_the_routers_bookkeeping(escalated: case_pb2.Case) -> None:
    attach_post(escalated, triaged("sample:p0002"), now=LATER)
    apply_action(escalated, action(escalated, ACK), now=LATEST)
    assert [event_label(e) for e in escalated.history] == [
        "created",
        "routed",
        "escalated",
        "post added",
        "acknowledge",
    ]
    assert [event_label(e) for e in crm_events(escalated, 0)] == ["escalated", "post added", "acknowledge"]


def test_crm_events_start_at_the_given_position(escalated: case_pb2.Case) -> None:
    synced = len(escalated.history)
    attach_post(escalated, triaged("sample:p0002"), now=LATER)
    assert [e.detail for e in crm_events(escalated, synced)] == ["mention sample:p0002"]


def test_crm_events_past_the_end_are_none(escalated: case_pb2.Case) -> None:
    assert crm_events(escalated, len(escalated.history) + 3) == []


def test_crm_event_kinds_cover_every_answer() -> None:
    kinds = case_pb2.CaseActionKind.items()
    names = {name.removeprefix("CASE_ACTION_KIND_").lower() for name, value in kinds if value}
    assert names <= {EVENT_LABELS[kind] for kind in CRM_EVENT_KINDS}


# --- outbox record ------------------------------------------------------------------------


def test_outbox_record_is_json_serialisable(routed: case_pb2.Case) -> None:
    record = outbox_record(routed)
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
    record = outbox_record(case)
    assert {"created_at", "sla_policy", "matched_rules", "group_keys"} <= record.keys()


def test_outbox_record_names_the_priority_as_rules_do(case: case_pb2.Case) -> None:
    case.priority_level = case_pb2.CASE_PRIORITY_URGENT
    record = outbox_record(case)
    assert (record["priority"], "priority_level" in record) == ("urgent", False)
    case.ClearField("priority_level")
    assert "priority" not in outbox_record(case)


def test_the_actors_note_and_the_origin_are_kept_with_the_history_entry(escalated: case_pb2.Case) -> None:
    answer = action(escalated, RESOLVE)
    answer.note, answer.arrived_via, answer.origin_destination = "refund sent", case_pb2.CASE_ACTION_VIA_CRM, "zd"
    apply_action(escalated, answer, now=LATER)
    entry = escalated.history[-1]
    assert (entry.note, entry.arrived_via, entry.origin_destination) == ("refund sent", answer.arrived_via, "zd")
    assert event_record(entry)["note"] == "refund sent"


def test_a_crm_action_goes_to_every_destination_but_the_crm_that_sent_it(escalated: case_pb2.Case) -> None:
    synced = len(escalated.history)
    answer = action(escalated, ACK)
    answer.arrived_via, answer.origin_destination = case_pb2.CASE_ACTION_VIA_CRM, "zendesk"
    apply_action(escalated, answer, now=LATER)
    assert crm_events(escalated, synced, destination="zendesk") == []
    assert len(crm_events(escalated, synced, destination="servicenow")) == 1


def test_a_crm_action_that_names_no_destination_goes_back_to_none(escalated: case_pb2.Case) -> None:
    synced = len(escalated.history)
    answer = action(escalated, ACK)
    answer.arrived_via = case_pb2.CASE_ACTION_VIA_CRM
    apply_action(escalated, answer, now=LATER)
    assert crm_events(escalated, synced, destination="zendesk") == []
    assert crm_events(escalated, synced, destination="outbox") == []


def test_other_actions_reach_every_destination(escalated: case_pb2.Case) -> None:
    synced = len(escalated.history)
    apply_action(escalated, action(escalated, ACK), now=LATER)
    assert len(crm_events(escalated, synced, destination="zendesk")) == 1
