"""Escalation pages: which policy a case follows, how it climbs the steps, and how an answer stops it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from services.notifier.config import EscalationPolicy, PolicyStep
from services.notifier.message import Message
from services.notifier.pages import (
    Page,
    PageState,
    advance,
    answer,
    open_page,
    policy_for,
    step_item_id,
    step_message,
)
from services.notifier.records import PAGE_CODEC

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
ONCALL = EscalationPolicy(
    name="care-oncall",
    teams=["care"],
    steps=[PolicyStep(notify=["slack"], timeout_s=600), PolicyStep(notify=["sms"], timeout_s=3600)],
)
LOOPING = ONCALL.model_copy(update={"repeat": 1})
CATCH_ALL = EscalationPolicy(name="everyone", steps=[PolicyStep(notify=["slack"])])
LEGAL = EscalationPolicy(name="legal", teams=["legal"], steps=[PolicyStep(notify=["email"])])
ESCALATION = Message(
    id="c_1:1",
    kind="escalation",
    title="[HIGH] case c_1 escalated to care (level 1)",
    severity="HIGH",
    reason="severity HIGH with legal_threat",
    case_id="c_1",
    team="care",
    level=1,
    dedup_key="clamor-case-c_1",
)


def opened(*, now: datetime = NOW) -> Page:
    return open_page(None, case_id="c_1", policy=ONCALL.name, message=ESCALATION, now=now)


def walked(policy: EscalationPolicy, steps: int) -> Page:
    """A page advanced ``steps`` times, each as soon as its step timed out."""
    page = opened()
    for _ in range(steps):
        moved = advance(page, policy, page.step_started_at + timedelta(seconds=policy.steps[page.step].timeout_s))
        assert moved is not None
        page = moved
    return page


def answered(page: Page | None, state: PageState) -> Page | None:
    return answer(page, state, actor="dana", via="link", now=NOW + timedelta(minutes=3))


# --- policy_for ---------------------------------------------------------------------------


def test_policy_for_picks_the_policy_naming_the_team() -> None:
    assert policy_for("care", [CATCH_ALL, LEGAL, ONCALL]) is ONCALL


def test_policy_for_falls_back_to_the_policy_naming_no_team() -> None:
    assert policy_for("billing", [ONCALL, CATCH_ALL, LEGAL]) is CATCH_ALL


def test_policy_for_is_none_without_a_matching_or_catch_all_policy() -> None:
    assert policy_for("billing", [ONCALL, LEGAL]) is None


# --- open_page ----------------------------------------------------------------------------


def test_open_page_starts_a_new_page_at_the_first_step() -> None:
    page = opened()
    assert (page.case_id, page.policy, page.message) == ("c_1", "care-oncall", ESCALATION)
    assert (page.step, page.loop, page.state, page.step_started_at) == (0, 0, PageState.OPEN, NOW)


def test_open_page_keeps_an_existing_pages_step() -> None:
    page = walked(ONCALL, 1)
    reopened = open_page(page, case_id="c_1", policy=ONCALL.name, message=ESCALATION, now=NOW + timedelta(hours=2))
    assert (reopened.step, reopened.step_started_at) == (1, page.step_started_at)


def test_open_page_updates_an_existing_pages_message() -> None:
    newer = replace(ESCALATION, id="c_1:2", level=2)
    reopened = open_page(walked(ONCALL, 1), case_id="c_1", policy=ONCALL.name, message=newer, now=NOW)
    assert reopened.message == newer


def test_open_page_with_the_same_message_returns_the_same_page() -> None:
    page = opened()
    assert open_page(page, case_id="c_1", policy=ONCALL.name, message=ESCALATION, now=NOW) is page


# --- advance ------------------------------------------------------------------------------


def test_advance_is_none_before_the_step_times_out() -> None:
    assert advance(opened(), ONCALL, NOW + timedelta(seconds=599)) is None


def test_advance_moves_to_the_next_step_after_the_timeout() -> None:
    moved = advance(opened(), ONCALL, NOW + timedelta(seconds=600))
    assert moved is not None
    assert (moved.step, moved.loop, moved.state) == (1, 0, PageState.OPEN)
    assert moved.step_started_at == NOW + timedelta(seconds=600)


def test_advance_times_each_step_by_its_own_timeout() -> None:
    page = walked(ONCALL, 1)
    assert advance(page, ONCALL, page.step_started_at + timedelta(seconds=3599)) is None


def test_advance_loops_to_the_first_step_when_the_policy_repeats() -> None:
    page = walked(LOOPING, 2)
    assert (page.step, page.loop, page.state) == (0, 1, PageState.OPEN)


def test_advance_exhausts_the_page_after_the_last_step() -> None:
    page = walked(ONCALL, 2)
    assert page.state is PageState.EXHAUSTED


def test_advance_exhausts_the_page_after_the_last_repeat() -> None:
    assert [walked(LOOPING, n).state for n in (3, 4)] == [PageState.OPEN, PageState.EXHAUSTED]


def test_advance_does_nothing_for_an_exhausted_page() -> None:
    assert advance(walked(ONCALL, 2), ONCALL, NOW + timedelta(days=7)) is None


def test_advance_does_nothing_for_an_acknowledged_page() -> None:
    page = answered(opened(), PageState.ACKNOWLEDGED)
    assert page is not None
    assert advance(page, ONCALL, NOW + timedelta(hours=2)) is None


def test_advance_leaves_the_given_page_unchanged() -> None:
    page = opened()
    advance(page, ONCALL, NOW + timedelta(hours=1))
    assert (page.step, page.step_started_at) == (0, NOW)


# --- answer -------------------------------------------------------------------------------


def test_answer_acknowledges_an_open_page() -> None:
    page = answered(opened(), PageState.ACKNOWLEDGED)
    assert page is not None
    assert (page.state, page.actor, page.via, page.answered_at) == (
        PageState.ACKNOWLEDGED,
        "dana",
        "link",
        NOW + timedelta(minutes=3),
    )


def test_answer_resolves_an_acknowledged_page() -> None:
    page = answered(answered(opened(), PageState.ACKNOWLEDGED), PageState.RESOLVED)
    assert page is not None
    assert page.state is PageState.RESOLVED


def test_answer_acknowledges_an_exhausted_page() -> None:
    page = answered(walked(ONCALL, 2), PageState.ACKNOWLEDGED)
    assert page is not None
    assert page.state is PageState.ACKNOWLEDGED


def test_answer_does_not_move_a_resolved_page_back_to_acknowledged() -> None:
    resolved = answered(opened(), PageState.RESOLVED)
    assert answered(resolved, PageState.ACKNOWLEDGED) is resolved


def test_answer_twice_returns_the_same_page() -> None:
    acknowledged = answered(opened(), PageState.ACKNOWLEDGED)
    assert answered(acknowledged, PageState.ACKNOWLEDGED) is acknowledged


def test_answer_without_a_page_is_none() -> None:
    assert answered(None, PageState.ACKNOWLEDGED) is None


# --- step_item_id and step_message --------------------------------------------------------


def test_step_item_id_is_stable_for_a_step() -> None:
    assert step_item_id(walked(ONCALL, 1)) == step_item_id(walked(ONCALL, 1)) == "c_1:care-oncall:0:1"


def test_step_item_id_differs_per_step_and_loop() -> None:
    ids = {step_item_id(walked(LOOPING, n)) for n in range(4)}
    assert len(ids) == 4


def test_step_message_of_the_first_step_is_the_escalation_itself() -> None:
    assert step_message(opened(), ONCALL) is ESCALATION


def test_step_message_of_a_later_step_names_the_step_and_the_wait() -> None:
    message = step_message(walked(ONCALL, 1), ONCALL)
    assert message.title == "[HIGH] case c_1 unanswered: step 2 of care-oncall"
    assert message.reason == "nobody acknowledged within 10 min; first raised because: severity HIGH with legal_threat"
    assert message.level == 2


def test_step_message_of_a_repeat_names_the_last_steps_wait() -> None:
    message = step_message(walked(LOOPING, 2), LOOPING)
    assert message.title == "[HIGH] case c_1 unanswered: step 1 of care-oncall"
    assert message.reason.startswith("nobody acknowledged within 1 h;")
    assert message.level == 3


def test_step_message_keeps_the_escalations_identity() -> None:
    message = step_message(walked(ONCALL, 1), ONCALL)
    assert (message.id, message.case_id, message.dedup_key) == ("c_1:1", "c_1", "clamor-case-c_1")


# --- stored in KV ---------------------------------------------------------------------------------


def round_trip(page: Page) -> Page:
    return PAGE_CODEC.decode(PAGE_CODEC.encode(page))


def test_an_open_page_survives_a_round_trip_through_kv() -> None:
    page = walked(LOOPING, 3)
    assert round_trip(page) == page


def test_an_answered_page_survives_a_round_trip_through_kv() -> None:
    page = answered(opened(), PageState.ACKNOWLEDGED)
    assert page is not None
    assert round_trip(page) == page
