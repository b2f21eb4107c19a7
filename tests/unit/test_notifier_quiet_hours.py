"""Quiet hours: whether a moment falls in a recipient's night, and when that night ends (in UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.notifier.config import QuietHours
from services.notifier.quiet_hours import quiet_until

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = QuietHours(start=time(9), end=time(17))
NIGHT = QuietHours(start=time(22), end=time(7))
BERLIN_NIGHT = QuietHours(start=time(22), end=time(7), timezone="Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_without_quiet_hours_nothing_is_quiet() -> None:
    assert quiet_until(None, utc(2026, 11, 2, 3, 0)) is None


# --- a window within a day ----------------------------------------------------------------


def test_a_moment_inside_a_window_within_a_day_is_quiet_until_its_end() -> None:
    assert quiet_until(OFFICE, utc(2026, 11, 2, 12, 0)) == utc(2026, 11, 2, 17, 0)


def test_the_start_of_a_window_is_quiet() -> None:
    assert quiet_until(OFFICE, utc(2026, 11, 2, 9, 0)) == utc(2026, 11, 2, 17, 0)


@pytest.mark.parametrize("moment", [utc(2026, 11, 2, 8, 59), utc(2026, 11, 2, 17, 0), utc(2026, 11, 2, 23, 0)])
def test_a_moment_outside_a_window_within_a_day_is_not_quiet(moment: datetime) -> None:
    assert quiet_until(OFFICE, moment) is None


# --- a window across midnight -------------------------------------------------------------


def test_before_midnight_a_window_across_midnight_ends_the_next_morning() -> None:
    assert quiet_until(NIGHT, utc(2026, 11, 2, 23, 30)) == utc(2026, 11, 3, 7, 0)


def test_after_midnight_a_window_across_midnight_ends_the_same_morning() -> None:
    assert quiet_until(NIGHT, utc(2026, 11, 3, 2, 0)) == utc(2026, 11, 3, 7, 0)


@pytest.mark.parametrize("moment", [utc(2026, 11, 2, 7, 0), utc(2026, 11, 2, 12, 0), utc(2026, 11, 2, 21, 59)])
def test_the_day_outside_a_window_across_midnight_is_not_quiet(moment: datetime) -> None:
    assert quiet_until(NIGHT, moment) is None


# --- time zones ---------------------------------------------------------------------------


def test_the_end_is_returned_in_utc() -> None:
    end = quiet_until(BERLIN_NIGHT, utc(2026, 11, 2, 23, 0))
    assert end is not None
    assert end.utcoffset() == timedelta(0)


def test_a_moment_given_in_another_zone_is_judged_by_the_instant() -> None:
    moment = datetime(2026, 11, 2, 18, 30, tzinfo=ZoneInfo("America/New_York"))  # 23:30 UTC
    assert quiet_until(NIGHT, moment) == utc(2026, 11, 3, 7, 0)


def test_a_berlin_window_in_winter_is_an_hour_ahead_of_utc() -> None:
    assert quiet_until(BERLIN_NIGHT, utc(2026, 11, 2, 21, 0)) == utc(2026, 11, 3, 6, 0)


def test_a_berlin_window_in_summer_is_two_hours_ahead_of_utc() -> None:
    assert quiet_until(BERLIN_NIGHT, utc(2026, 7, 1, 21, 0)) == utc(2026, 7, 2, 5, 0)


def test_a_berlin_window_starts_at_local_time() -> None:
    assert quiet_until(BERLIN_NIGHT, utc(2026, 7, 1, 19, 59)) is None  # 21:59 CEST


def test_a_berlin_night_across_the_clock_change_ends_at_seven_local_winter_time() -> None:
    # 23:00 CEST on 24 October; the clocks go back at 03:00 CEST, so the night ends at 06:00 UTC.
    assert quiet_until(BERLIN_NIGHT, utc(2026, 10, 24, 21, 0)) == utc(2026, 10, 25, 6, 0)


def test_a_berlin_night_after_the_clock_change_still_ends_at_seven_local() -> None:
    moment = datetime(2026, 10, 25, 6, 30, tzinfo=BERLIN)
    assert quiet_until(BERLIN_NIGHT, moment) == utc(2026, 10, 25, 6, 0)


def test_a_berlin_night_before_the_clock_change_ends_at_seven_local_summer_time() -> None:
    assert quiet_until(BERLIN_NIGHT, utc(2026, 10, 23, 21, 0)) == utc(2026, 10, 24, 5, 0)


def test_a_window_ending_in_the_repeated_hour_ends_after_a_moment_in_its_second_occurrence() -> None:
    quiet = QuietHours(start=time(1), end=time(2, 30), timezone="Europe/Berlin")
    moment = utc(2026, 10, 25, 1, 15)  # 02:15 CET, the second 02:15 of the night
    assert quiet_until(quiet, moment) == utc(2026, 10, 25, 1, 30)


# --- configuration ------------------------------------------------------------------------


def test_quiet_hours_with_equal_start_and_end_are_refused() -> None:
    with pytest.raises(ValidationError, match="start and end are equal"):
        QuietHours(start=time(22), end=time(22))


@pytest.mark.parametrize("zone", ["Europe/Atlantis", "CEST+2", "../etc/passwd"])
def test_quiet_hours_in_an_unknown_time_zone_are_refused(zone: str) -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        QuietHours(start=time(22), end=time(7), timezone=zone)


def test_quiet_hours_default_to_utc() -> None:
    assert NIGHT.timezone == "UTC"
