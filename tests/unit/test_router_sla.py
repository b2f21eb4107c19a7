"""SLA clocks: business-time arithmetic across nights, weekends, holidays and DST, and the ladder."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.router.sla import (
    BusinessHours,
    EscalationLevel,
    SlaPolicy,
    SlaStep,
    add_business_time,
    deadlines,
    due,
    next_at,
    pending,
    schedule,
)

HOUR = 3600.0
BERLIN = BusinessHours(timezone="Europe/Berlin")
EVERY_DAY = BusinessHours(timezone="Europe/Berlin", days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
CHRISTMAS = BusinessHours(timezone="Europe/Berlin", holidays=[date(2026, 12, 25)])


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def policy(**changes: Any) -> SlaPolicy:
    fields: dict[str, Any] = {
        "name": "standard",
        "first_response_s": 1 * HOUR,
        "resolution_s": 8 * HOUR,
        "warn_before_s": 600,
        "levels": [{"team": "leads", "after_s": 0}, {"team": "managers", "after_s": 1800}],
    }
    return SlaPolicy.model_validate({**fields, **changes})


# --- plain time -----------------------------------------------------------------------------


def test_without_business_hours_time_is_added_plainly() -> None:
    assert add_business_time(utc(2026, 11, 7, 23, 30), 2 * HOUR, None) == utc(2026, 11, 8, 1, 30)


def test_plain_deadlines_count_from_the_opening() -> None:
    assert deadlines(policy(), opened_at=utc(2026, 11, 2, 10)) == (utc(2026, 11, 2, 11), utc(2026, 11, 2, 18))


def test_a_clock_the_policy_lacks_has_no_deadline() -> None:
    assert deadlines(policy(first_response_s=None), opened_at=utc(2026, 11, 2, 10)) == (None, utc(2026, 11, 2, 18))


def test_results_are_in_utc_whatever_zone_the_start_is_in() -> None:
    tokyo = timezone(timedelta(hours=9))
    result = add_business_time(datetime(2026, 11, 2, 19, 0, tzinfo=tokyo), HOUR, None)
    assert (result, result.tzinfo) == (utc(2026, 11, 2, 11), UTC)


@pytest.mark.parametrize("hours", [None, BERLIN])
def test_naive_datetimes_are_rejected(hours: BusinessHours | None) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        add_business_time(datetime(2026, 11, 2, 10), HOUR, hours)


def test_negative_durations_are_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        add_business_time(utc(2026, 11, 2, 10), -1, BERLIN)


# --- business hours (Europe/Berlin is UTC+1 in winter, UTC+2 in summer) ---------------------


def test_time_left_on_friday_afternoon_carries_over_the_weekend() -> None:
    # Friday 16:00 local + 4 h: one hour on Friday, three on Monday morning, 12:00 local.
    assert add_business_time(utc(2026, 11, 6, 15), 4 * HOUR, BERLIN) == utc(2026, 11, 9, 11)


def test_a_start_before_opening_counts_from_the_opening() -> None:
    assert add_business_time(utc(2026, 11, 2, 6), HOUR, BERLIN) == utc(2026, 11, 2, 9)


def test_a_start_after_closing_counts_from_the_next_opening() -> None:
    assert add_business_time(utc(2026, 11, 2, 17), HOUR, BERLIN) == utc(2026, 11, 3, 9)


def test_a_start_at_the_weekend_counts_from_monday() -> None:
    assert add_business_time(utc(2026, 11, 7, 12), 30 * 60, BERLIN) == utc(2026, 11, 9, 8, 30)


def test_a_deadline_landing_on_closing_time_stays_there() -> None:
    assert add_business_time(utc(2026, 11, 6, 12), 4 * HOUR, BERLIN) == utc(2026, 11, 6, 16)


def test_a_holiday_is_skipped() -> None:
    # Thursday 24 December 16:00 + 2 h: one hour that day, Friday the 25th is closed, one on Monday.
    assert add_business_time(utc(2026, 12, 24, 15), 2 * HOUR, CHRISTMAS) == utc(2026, 12, 28, 9)


def test_zero_seconds_is_the_start_itself_even_when_closed() -> None:
    assert add_business_time(utc(2026, 11, 7, 12), 0, BERLIN) == utc(2026, 11, 7, 12)


def test_saturday_evening_to_the_sunday_clocks_go_forward() -> None:
    # Saturday 28 March 16:00 CET + 2 h: 17:00 CET, then 10:00 CEST on Sunday 29 March.
    assert add_business_time(utc(2026, 3, 28, 15), 2 * HOUR, EVERY_DAY) == utc(2026, 3, 29, 8)


def test_saturday_evening_to_the_sunday_clocks_go_back() -> None:
    # Saturday 24 October 16:00 CEST + 2 h: 17:00 CEST, then 10:00 CET on Sunday 25 October.
    assert add_business_time(utc(2026, 10, 24, 14), 2 * HOUR, EVERY_DAY) == utc(2026, 10, 25, 9)


@pytest.mark.parametrize(
    ("opening", "closing"), [(utc(2026, 3, 29, 7), utc(2026, 3, 29, 15)), (utc(2026, 10, 25, 8), utc(2026, 10, 25, 16))]
)
def test_a_nine_to_five_day_is_eight_hours_on_dst_days_too(opening: datetime, closing: datetime) -> None:
    assert add_business_time(opening, 8 * HOUR, EVERY_DAY) == closing
    assert EVERY_DAY.window(opening.date()) == (opening, closing)


def test_a_window_spanning_the_clock_change_counts_real_hours() -> None:
    all_sunday = BusinessHours(timezone="Europe/Berlin", days=["sun"], start="00:00", end="24:00")
    assert all_sunday.window(date(2026, 3, 29)) == (utc(2026, 3, 28, 23), utc(2026, 3, 29, 22))
    assert all_sunday.window(date(2026, 10, 25)) == (utc(2026, 10, 24, 22), utc(2026, 10, 25, 23))


def test_weeks_of_business_time_cross_weekends_and_dst() -> None:
    # Four 40-hour weeks from Monday 9 March 09:00 CET end on Friday 3 April 17:00 CEST.
    assert add_business_time(utc(2026, 3, 9, 8), 160 * HOUR, BERLIN) == utc(2026, 4, 3, 15)


def test_a_year_of_business_time_is_computed_by_whole_days() -> None:
    # 52 weeks of 40 hours from Monday 5 January 2026 09:00 end on Friday 1 January 2027 at closing.
    assert add_business_time(utc(2026, 1, 5, 8), 52 * 40 * HOUR, BERLIN) == utc(2027, 1, 1, 16)


def test_closed_days_have_no_window() -> None:
    assert BERLIN.window(date(2026, 11, 7)) is None
    assert CHRISTMAS.window(date(2026, 12, 25)) is None


# --- properties over many starts and amounts ------------------------------------------------


def _cases() -> list[tuple[datetime, int, int]]:
    rng = random.Random(20261102)
    year_start = utc(2026, 1, 1, 0)
    return [
        (
            year_start + timedelta(minutes=rng.randrange(365 * 24 * 60)),
            rng.choice([0, 60, 1800, 3600, 8 * 3600]) + rng.randrange(0, 40 * 3600, 60),
            rng.randrange(0, 60 * 3600, 60),
        )
        for _ in range(150)
    ]


@pytest.mark.parametrize("hours", [BERLIN, EVERY_DAY, CHRISTMAS])
@pytest.mark.parametrize(("start", "a", "b"), _cases())
def test_adding_a_then_b_equals_adding_a_plus_b_and_never_goes_back(
    hours: BusinessHours, start: datetime, a: int, b: int
) -> None:
    after_a = add_business_time(start, a, hours)
    after_ab = add_business_time(start, a + b, hours)
    assert add_business_time(after_a, b, hours) == after_ab
    assert start <= after_a <= after_ab
    if a:
        # A positive amount always ends inside an open window (its closing instant included).
        window = hours.window(after_a.astimezone(ZoneInfo(hours.timezone)).date())
        assert window is not None
        assert window[0] < after_a <= window[1]


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"timezone": "Europe/Berlinn"}, "unknown time zone"),
        ({"timezone": "../etc/passwd"}, "unknown time zone"),
        ({"start": "17:00", "end": "09:00"}, "not before end"),
        ({"start": "09:00", "end": "09:00"}, "not before end"),
        ({"start": "9:00"}, "pattern"),
        ({"end": "24:30"}, "pattern"),
        ({"days": []}, "at least 1"),
        ({"days": ["monday"]}, "mon"),
    ],
)
def test_invalid_business_hours_are_rejected(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BusinessHours.model_validate({"timezone": "Europe/Berlin", **changes})


def test_business_hours_may_run_to_midnight() -> None:
    hours = BusinessHours(timezone="UTC", start="18:00", end="24:00")
    assert add_business_time(utc(2026, 11, 2, 23), 2 * HOUR, hours) == utc(2026, 11, 3, 19)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"warn_before_s": HOUR}, "warn_before_s .* first_response_s"),
        ({"first_response_s": None, "resolution_s": 300, "warn_before_s": 300}, "warn_before_s .* resolution_s"),
        ({"levels": [{"team": "leads", "after_s": 600}, {"team": "managers", "after_s": 300}]}, "levels.*rungs"),
        ({"levels": []}, "at least 1"),
        ({"first_response_s": None, "resolution_s": None}, "first_response_s, resolution_s or both"),
        ({"first_response_s": 0}, "greater than 0"),
        ({"name": "Standard SLA"}, "pattern"),
        ({"levels": [{"team": "Leads"}]}, "pattern"),
        ({"warn_before": 60}, "Extra inputs"),
    ],
)
def test_invalid_policies_are_rejected(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        policy(**changes)


def test_equal_after_s_on_successive_levels_is_allowed() -> None:
    assert len(policy(levels=[{"team": "a", "after_s": 60}, {"team": "b", "after_s": 60}]).levels) == 2


# --- the ladder -----------------------------------------------------------------------------

OPENED = utc(2026, 11, 2, 10)


def test_the_ladder_warns_then_breaches_then_escalates_for_both_clocks() -> None:
    steps = schedule(policy(), opened_at=OPENED, owner_team="care")
    assert steps == [
        SlaStep("first_response:warning", utc(2026, 11, 2, 10, 50), "first_response", "warning", 0, "care"),
        SlaStep("first_response:level1", utc(2026, 11, 2, 11), "first_response", "breach", 1, "leads"),
        SlaStep("first_response:level2", utc(2026, 11, 2, 11, 30), "first_response", "escalation", 2, "managers"),
        SlaStep("resolution:warning", utc(2026, 11, 2, 17, 50), "resolution", "warning", 0, "care"),
        SlaStep("resolution:level1", utc(2026, 11, 2, 18), "resolution", "breach", 1, "leads"),
        SlaStep("resolution:level2", utc(2026, 11, 2, 18, 30), "resolution", "escalation", 2, "managers"),
    ]


def test_no_warning_is_scheduled_when_warn_before_is_zero() -> None:
    steps = schedule(policy(warn_before_s=0, resolution_s=None), opened_at=OPENED, owner_team="care")
    assert [step.id for step in steps] == ["first_response:level1", "first_response:level2"]


def test_ties_go_first_response_first_then_lower_level() -> None:
    same_time = policy(
        resolution_s=HOUR, warn_before_s=0, levels=[{"team": "leads"}, {"team": "managers"}, {"team": "vp"}]
    )
    steps = schedule(same_time, opened_at=OPENED, owner_team="care")
    assert {step.at for step in steps} == {utc(2026, 11, 2, 11)}
    assert [step.id for step in steps] == [
        "first_response:level1",
        "first_response:level2",
        "first_response:level3",
        "resolution:level1",
        "resolution:level2",
        "resolution:level3",
    ]


def test_a_later_clock_step_may_fire_before_an_earlier_clocks_escalation() -> None:
    steps = schedule(
        policy(resolution_s=90 * 60, warn_before_s=0, levels=[{"team": "leads"}, {"team": "vp", "after_s": HOUR}]),
        opened_at=OPENED,
        owner_team="care",
    )
    assert [step.id for step in steps] == [
        "first_response:level1",
        "resolution:level1",
        "first_response:level2",
        "resolution:level2",
    ]


def test_the_ladder_runs_on_business_time() -> None:
    # Opened Friday 16:00 local: the response is due at closing, its escalation an hour into Monday.
    office = policy(resolution_s=None, warn_before_s=1800, business_hours=BERLIN.model_dump())
    steps = schedule(office, opened_at=utc(2026, 11, 6, 15), owner_team="care")
    assert [(step.id, step.at) for step in steps] == [
        ("first_response:warning", utc(2026, 11, 6, 15, 30)),
        ("first_response:level1", utc(2026, 11, 6, 16)),
        ("first_response:level2", utc(2026, 11, 9, 8, 30)),
    ]


def test_acknowledging_stops_only_the_first_response_clock() -> None:
    steps = pending(policy(), opened_at=OPENED, owner_team="care", acknowledged=True, resolved=False, fired=())
    assert [step.id for step in steps] == ["resolution:warning", "resolution:level1", "resolution:level2"]


def test_resolving_stops_both_clocks() -> None:
    assert pending(policy(), opened_at=OPENED, owner_team="care", acknowledged=False, resolved=True, fired=()) == []


def test_fired_steps_are_not_pending_again() -> None:
    fired = {"first_response:warning", "first_response:level1"}
    steps = pending(policy(), opened_at=OPENED, owner_team="care", acknowledged=False, resolved=False, fired=fired)
    assert [step.id for step in steps][:2] == ["first_response:level2", "resolution:warning"]
    assert len(steps) == 4


def test_due_returns_the_steps_whose_time_has_come() -> None:
    steps = schedule(policy(), opened_at=OPENED, owner_team="care")
    assert [step.id for step in due(steps, utc(2026, 11, 2, 11))] == ["first_response:warning", "first_response:level1"]
    assert due(steps, utc(2026, 11, 2, 10, 49)) == []


def test_due_rejects_a_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        due([], datetime(2026, 11, 2, 11))


def test_next_at_is_the_earliest_step_or_none() -> None:
    steps = pending(policy(), opened_at=OPENED, owner_team="care", acknowledged=True, resolved=False, fired=())
    assert next_at(steps) == utc(2026, 11, 2, 17, 50)
    assert next_at(reversed(steps)) == utc(2026, 11, 2, 17, 50)
    assert next_at([]) is None


def test_escalation_levels_default_to_firing_at_the_breach() -> None:
    assert EscalationLevel(team="leads").after_s == 0
