"""Spike detection: same-hour baselines, the floor, Poisson and k-sigma tests, and one alert per surge."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.stats import poisson

from services.reputation.records import SPIKE_STATE_CODEC
from services.reputation.spikes import (
    SLOT_S,
    SLOTS_PER_DAY,
    KeywordSettings,
    SpikeEvent,
    SpikeSettings,
    SpikeState,
    WindowStats,
    alert_id,
    evaluate,
    poisson_tail,
    step,
    window_stats,
)

DEFAULTS = SpikeSettings()
# Midnight UTC on a day in 2026, so slot % 144 is the time of day.
T0 = SLOTS_PER_DAY * 20_500
HOUR = 6  # slots
DAY = SLOTS_PER_DAY
KEY = "acme"
Events = list[tuple[int, SpikeEvent]]


def daily_cycle(days: int, *, night: float, noon: float) -> np.ndarray:
    """Expected posts per slot: ``night`` per hour at midnight rising smoothly to ``noon`` per hour at noon."""
    hours = np.arange(days * DAY) % DAY / HOUR
    per_hour = night + (noon - night) * (1 - np.cos(2 * np.pi * hours / 24)) / 2
    return per_hour / HOUR


def as_slots(counts: np.ndarray) -> dict[int, int]:
    return {T0 + index: int(count) for index, count in enumerate(counts) if count}


def run(
    counts: np.ndarray, *, start: int, settings: SpikeSettings = DEFAULTS, key: str = KEY
) -> tuple[Events, list[WindowStats]]:
    """Evaluate every slot from index ``start`` to the end, as the router would once per slot."""
    slots = as_slots(counts)
    state: SpikeState | None = None
    events: Events = []
    seen: list[WindowStats] = []
    for index in range(start, len(counts)):
        stats = window_stats(slots, now_slot=T0 + index, settings=settings)
        state, event = step(state, stats, key=key, now_slot=T0 + index, settings=settings)
        seen.append(stats)
        if event is not None:
            events.append((index, event))
    return events, seen


def history(observed: int, *, baseline: int, days: int = 7) -> dict[int, int]:
    """Slots whose last window holds ``observed`` posts and the same window on past days ``baseline``."""
    slots = {T0 + 10 * DAY: observed}
    slots.update({T0 + 10 * DAY - d * DAY: baseline for d in range(1, days + 1)})
    return slots


def stats_of(observed: int, baseline: int = 6, settings: SpikeSettings = DEFAULTS) -> WindowStats:
    return window_stats(history(observed, baseline=baseline), now_slot=T0 + 10 * DAY, settings=settings)


# --- window statistics --------------------------------------------------------------------------


def test_window_is_the_last_slots_up_to_now_and_missing_slots_are_zero() -> None:
    slots = {T0 + 100: 4, T0 + 95: 3, T0 + 94: 50}
    stats = window_stats(slots, now_slot=T0 + 100, settings=DEFAULTS)
    assert (stats.window_start_slot, stats.window_end_slot, stats.observed) == (T0 + 95, T0 + 100, 7)


def test_baseline_is_the_mean_of_the_same_window_on_past_days() -> None:
    now = T0 + 10 * DAY + 70
    slots = {now - d * DAY - 2: 10 * d for d in range(1, 8)} | {now - 8 * DAY: 999}
    stats = window_stats(slots, now_slot=now, settings=DEFAULTS)
    assert stats.days_used == 7
    assert stats.baseline == pytest.approx(40.0)  # (10 + 20 + … + 70) / 7; day 8 is not used


def test_floor_raises_a_small_baseline_and_caps_the_ratio() -> None:
    stats = stats_of(4, baseline=1)
    assert (stats.baseline, stats.floored_baseline) == (1.0, 3.0)
    assert stats.ratio == pytest.approx(4 / 3)


def test_trend_scales_the_baseline_by_the_last_day_over_the_days_before_the_windows() -> None:
    now = T0 + 10 * DAY
    start = now - HOUR + 1
    before = {start - d * DAY - 50: 12 for d in range(1, 8)}  # the day before each baseline window
    same_hour = {start - d * DAY: 4 for d in range(1, 8)}
    grown = window_stats(before | same_hour | {start - 50: 30}, now_slot=now, settings=DEFAULTS)
    fell = window_stats(before | same_hour | {start - 50: 3}, now_slot=now, settings=DEFAULTS)
    plain = window_stats(
        before | same_hour | {start - 50: 30}, now_slot=now, settings=SpikeSettings(follow_trend=False)
    )
    # The last day holds the day-1 window's 4 posts and 30 more; the day before day d's window holds 12
    # (and, for d >= 2, day d - 1's window).
    assert grown.trend == pytest.approx(34 / ((12 * 7 + 4 * 6) / 7))
    assert grown.floored_baseline == pytest.approx(4 * grown.trend)
    assert (fell.trend, plain.trend, plain.floored_baseline) == (1.0, 1.0, 4.0)


def test_poisson_tail_matches_scipy_from_tiny_to_large_means() -> None:
    for mean in (0.01, 0.4, 3.0, 6.5, 30.0, 250.0, 12_345.6):
        for observed in {0, 1, 2, 5, 10, 40, int(mean), int(mean) + 1, int(mean * 1.3) + 3}:
            expected = poisson.sf(observed - 1, mean)
            assert poisson_tail(observed, mean) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_new_key_is_learning_until_it_has_min_baseline_days() -> None:
    now = T0 + 10 * DAY
    slots = {now: 500}
    young = window_stats(slots, now_slot=now, settings=DEFAULTS, history_start_slot=now - DAY - HOUR)
    grown = window_stats(slots, now_slot=now, settings=DEFAULTS, history_start_slot=now - 2 * DAY - HOUR)
    assert (young.days_used, young.significant, young.trend) == (1, False, 1.0)
    assert (grown.days_used, grown.significant) == (2, True)


# --- (a) a step surge is alerted within the window ----------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_step_surge_is_raised_within_the_window(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rates = daily_cycle(10, night=3, noon=9)  # about 6 posts an hour, with a daily cycle
    surge_at = 9 * DAY + 10 * HOUR  # 10:00 on day 9
    rates[surge_at:] *= 5
    events, _ = run(rng.poisson(rates), start=8 * DAY)
    assert events, "the surge was never raised"
    index, first = events[0]
    assert first.kind == "raised"
    delay_min = (index - surge_at + 1) * SLOT_S / 60
    assert 0 < delay_min <= DEFAULTS.window_s / 60


# --- (b) a steady daily cycle never alarms --------------------------------------------------------


def test_daily_cycle_raises_nothing_over_a_month() -> None:
    rng = np.random.default_rng(2026)
    counts = rng.poisson(daily_cycle(8 + 30, night=2, noon=30))
    events, seen = run(counts, start=8 * DAY)
    assert events == []
    # The same hour on past days is the baseline, so noon is compared with noon: ratios stay near 1.
    noon = [s.ratio for s in seen if s.window_end_slot % DAY == 12 * HOUR]
    assert 0.8 < float(np.median(noon)) < 1.2


# --- (c) one surge gives one alert ----------------------------------------------------------------


def surge_series(seed: int, *, second_surge_at: int | None = None) -> np.ndarray:
    """6 posts an hour, then ×3, ×6 and ×10 for an hour each from day 9 at 10:00, then normal again."""
    rng = np.random.default_rng(seed)
    rates = np.full(11 * DAY, 1.0)
    start = 9 * DAY + 10 * HOUR
    for hour, factor in enumerate((3, 6, 10)):
        rates[start + hour * HOUR : start + (hour + 1) * HOUR] *= factor
    if second_surge_at is not None:
        rates[second_surge_at : second_surge_at + 2 * HOUR] *= 8
    return rng.poisson(rates)


def test_one_surge_is_raised_once_updated_and_resolved_once() -> None:
    events, seen = run(surge_series(7), start=8 * DAY)
    kinds = [event.kind for _, event in events]
    assert kinds[0] == "raised"
    assert kinds[-1] == "resolved"
    assert kinds.count("raised") == 1
    assert kinds.count("resolved") == 1
    assert "updated" in kinds
    assert {event.alert_id for _, event in events} == {f"{KEY}:{T0 + events[0][0]}"}
    assert [event.revision for _, event in events] == list(range(1, len(events) + 1))
    assert events[-1][1].peak == max(stats.observed for stats in seen)


def test_a_surge_back_within_the_cooldown_reopens_the_same_alert() -> None:
    first, _ = run(surge_series(7), start=8 * DAY)
    resolved_at = next(index for index, event in first if event.kind == "resolved")
    events, _ = run(surge_series(7, second_surge_at=resolved_at + 2), start=8 * DAY)
    kinds = [event.kind for _, event in events]
    assert kinds.count("raised") == 1
    assert len({event.alert_id for _, event in events}) == 1
    reopened = kinds.index("resolved") + 1
    assert kinds[reopened] == "updated"
    assert [event.revision for _, event in events] == list(range(1, len(events) + 1))


def test_a_surge_after_the_cooldown_is_a_new_alert() -> None:
    first, _ = run(surge_series(7), start=8 * DAY)
    resolved_at = next(index for index, event in first if event.kind == "resolved")
    events, _ = run(surge_series(7, second_surge_at=resolved_at + DEFAULTS.cooldown_s // SLOT_S + 1), start=8 * DAY)
    raised = [event for _, event in events if event.kind == "raised"]
    assert len(raised) == 2
    assert raised[0].alert_id != raised[1].alert_id


def test_a_short_dip_keeps_the_alert_firing() -> None:
    state, event = step(None, stats_of(40), key=KEY, now_slot=100, settings=DEFAULTS)
    assert event is not None
    for now in (101, 102):  # calm for 20 minutes, less than resolve_after_s
        state, event = step(state, stats_of(6), key=KEY, now_slot=now, settings=DEFAULTS)
        assert event is None
    state, event = step(state, stats_of(40), key=KEY, now_slot=103, settings=DEFAULTS)
    assert (state.status, state.below_since_slot, event) == ("firing", None, None)


def test_calm_for_resolve_after_s_resolves() -> None:
    state, _ = step(None, stats_of(40), key=KEY, now_slot=100, settings=DEFAULTS)
    calm_slots = DEFAULTS.resolve_after_s // SLOT_S
    for now in range(101, 101 + calm_slots):
        state, event = step(state, stats_of(8), key=KEY, now_slot=now, settings=DEFAULTS)
        assert event is None
    state, event = step(state, stats_of(8), key=KEY, now_slot=101 + calm_slots, settings=DEFAULTS)
    assert event is not None
    assert (event.kind, event.revision, state.status, state.resolved_slot) == ("resolved", 2, "cooling", 104)


def test_updates_wait_for_growth_and_the_interval() -> None:
    settings = SpikeSettings(min_update_interval_s=1200)
    state, _ = step(None, stats_of(40), key=KEY, now_slot=100, settings=settings)
    state, event = step(state, stats_of(49), key=KEY, now_slot=102, settings=settings)
    assert event is None  # grew 22.5%, less than update_min_growth
    state, event = step(state, stats_of(80), key=KEY, now_slot=101, settings=settings)
    assert event is None  # grew, but 10 minutes after the last revision
    state, event = step(state, stats_of(80), key=KEY, now_slot=102, settings=settings)
    assert event is not None
    assert (event.kind, event.revision, state.last_emitted_count) == ("updated", 2, 80)


def test_stepping_again_in_the_same_slot_emits_nothing_new() -> None:
    state, first = step(None, stats_of(40), key=KEY, now_slot=100, settings=DEFAULTS)
    again, second = step(state, stats_of(40), key=KEY, now_slot=100, settings=DEFAULTS)
    assert first is not None
    assert (second, again) == (None, state)


# --- (d) a slow ramp follows the baseline ---------------------------------------------------------


def weekly_doubling(seed: int) -> np.ndarray:
    days = 8 + 21
    rates = daily_cycle(days, night=3, noon=9) * 2 ** (np.arange(days * DAY) / (7 * DAY))
    return np.random.default_rng(seed).poisson(rates)


def test_slow_ramp_is_followed_by_the_trend_and_never_alarms() -> None:
    events, seen = run(weekly_doubling(11), start=8 * DAY)
    assert events == []
    assert float(np.median([s.ratio for s in seen[-7 * DAY :]])) == pytest.approx(1.0, abs=0.05)


def test_without_the_trend_a_slow_ramp_sits_at_1_46_and_noise_keeps_raising_it() -> None:
    events, seen = run(weekly_doubling(11), start=8 * DAY, settings=SpikeSettings(follow_trend=False))
    # The mean of the past week lags about four days behind: 7 / sum(2**(-d/7)) = 1.46.
    expected = 7 / sum(2 ** (-d / 7) for d in range(1, 8))
    assert float(np.median([s.ratio for s in seen[-7 * DAY :]])) == pytest.approx(expected, rel=0.05)
    assert sum(event.kind == "raised" for _, event in events) >= 5


@pytest.mark.parametrize("seed", range(3))
def test_a_lasting_step_is_one_alert_that_resolves_as_the_new_normal_within_a_day(seed: int) -> None:
    rates = daily_cycle(12, night=3, noon=9)
    surge_at = 9 * DAY + 10 * HOUR
    rates[surge_at:] *= 5
    events, seen = run(np.random.default_rng(seed).poisson(rates), start=8 * DAY)
    kinds = [(event.kind, index - surge_at) for index, event in events if event.kind != "updated"]
    assert kinds[0][0] == "raised"
    assert kinds[1][0] == "resolved"
    assert kinds[1][1] < DAY
    assert float(np.median([s.ratio for s in seen[-DAY:]])) < DEFAULTS.resolve_ratio


# --- (e) keywords alert at low volume --------------------------------------------------------------


def keyword_settings() -> SpikeSettings:
    return KeywordSettings(keywords=["smell", "Mold", "recall"]).detector(DEFAULTS)


def test_four_mold_posts_in_an_hour_alert_on_a_quiet_keyword() -> None:
    now = T0 + 10 * DAY
    slots = {now - 5: 1, now - 3: 2, now: 1}
    _, event = evaluate(slots, key="acme:keyword:mold", now_slot=now, state=None, settings=keyword_settings())
    assert event is not None
    assert event.kind == "raised"


@pytest.mark.parametrize("posts", [1, 3])
def test_few_mold_posts_do_not_alert(posts: int) -> None:
    now = T0 + 10 * DAY
    _, event = evaluate({now: posts}, key="acme:keyword:mold", now_slot=now, state=None, settings=keyword_settings())
    assert event is None


def test_keyword_settings_override_only_count_floor_and_alpha() -> None:
    base = SpikeSettings(window_s=1800, method="poisson")
    derived = KeywordSettings(keywords=["mold"]).detector(base)
    assert (derived.window_s, derived.min_count, derived.floor, derived.alpha) == (1800, 3, 0.4, 1e-3)


def test_keywords_are_normalised() -> None:
    assert KeywordSettings(keywords=[" Mold ", "RECALL"]).keywords == ["mold", "recall"]


# --- (f) low volume cannot alarm -------------------------------------------------------------------


def test_one_to_four_posts_an_hour_does_not_alarm() -> None:
    stats = stats_of(4, baseline=1)
    state, event = step(None, stats, key=KEY, now_slot=T0, settings=DEFAULTS)
    assert (event, state.status) == (None, "quiet")
    assert not stats.significant  # the floor: P(X >= 4 | 3) is about 0.35


def test_a_significant_count_below_min_count_does_not_alarm() -> None:
    settings = SpikeSettings(floor=0.5)
    stats = stats_of(9, baseline=0, settings=settings)
    assert stats.significant
    assert step(None, stats, key=KEY, now_slot=T0, settings=settings)[1] is None


# --- (g) the sigma method ----------------------------------------------------------------------------


SIGMA = SpikeSettings(method="sigma")


def test_sigma_score_uses_the_larger_of_the_days_spread_and_sqrt_mean() -> None:
    now = T0 + 10 * DAY
    plain = SpikeSettings(method="sigma", follow_trend=False)
    steady = window_stats({now: 30} | {now - d * DAY: 9 for d in range(1, 8)}, now_slot=now, settings=plain)
    assert steady.score == pytest.approx((30 - 9) / 3)  # std 0, so sqrt(9) = 3
    spread = {now - d * DAY: v for d, v in enumerate([0, 20] * 3 + [10], start=1)}
    wide = window_stats({now: 30} | spread, now_slot=now, settings=plain)
    std = float(np.std([0, 20] * 3 + [10], ddof=1))
    assert wide.score == pytest.approx((30 - 10) / std)
    assert steady.significant
    assert not wide.significant


@pytest.mark.parametrize("seed", range(3))
def test_sigma_method_raises_the_step_surge_within_the_window(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rates = daily_cycle(10, night=3, noon=9)
    surge_at = 9 * DAY + 10 * HOUR
    rates[surge_at:] *= 5
    events, _ = run(rng.poisson(rates), start=8 * DAY, settings=SIGMA)
    assert events
    index, first = events[0]
    assert first.kind == "raised"
    assert 0 < (index - surge_at + 1) * SLOT_S <= SIGMA.window_s


# --- (h) settings validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"window_s": 1000}, "multiple of 600"),
        ({"window_s": 0}, "greater than or equal to 600"),
        ({"window_s": 2 * 86_400}, "less than or equal to 86400"),
        ({"baseline_days": 3, "min_baseline_days": 4}, "min_baseline_days (4) is more than baseline_days (3)"),
        ({"floor": 0}, "greater than 0"),
        ({"method": "ewma"}, "'poisson' or 'sigma'"),
        ({"alpha": 1.5}, "less than 1"),
        ({"min_ratio": 1.2}, "resolve_ratio (1.5) is more than min_ratio (1.2)"),
        ({"cooldown_s": -1}, "greater than or equal to 0"),
        ({"windows": 3600}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_settings_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SpikeSettings.model_validate(changes)


@pytest.mark.parametrize(("keywords", "message"), [([" "], "keywords\\[0\\] is empty"), (["Mold", "mold"], "repeats")])
def test_invalid_keywords_are_refused(keywords: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KeywordSettings(keywords=keywords)


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        DEFAULTS.window_s = 1200


# --- (i) stored state and alert ids -----------------------------------------------------------------


def test_state_round_trips_through_its_stored_record() -> None:
    state, _ = step(None, stats_of(40), key=KEY, now_slot=T0, settings=DEFAULTS)
    state, _ = step(state, stats_of(5), key=KEY, now_slot=T0 + 1, settings=DEFAULTS)
    assert state.below_since_slot == T0 + 1
    assert SPIKE_STATE_CODEC.decode(SPIKE_STATE_CODEC.encode(state)) == state
    assert SPIKE_STATE_CODEC.decode(SPIKE_STATE_CODEC.encode(SpikeState())) == SpikeState()


def test_a_state_stored_as_json_by_an_earlier_version_is_read() -> None:
    state, _ = step(None, stats_of(40), key=KEY, now_slot=T0, settings=DEFAULTS)
    state, _ = step(state, stats_of(5), key=KEY, now_slot=T0 + 1, settings=DEFAULTS)
    # What SpikeState.to_json wrote: dataclasses.asdict, status as text, empty slots as null.
    old = {
        "status": state.status,
        "alert_id": state.alert_id,
        "revision": state.revision,
        "started_slot": state.started_slot,
        "last_emitted_count": state.last_emitted_count,
        "last_emitted_slot": state.last_emitted_slot,
        "peak": state.peak,
        "below_since_slot": state.below_since_slot,
        "resolved_slot": None,
    }
    assert state.status == "firing"
    assert SPIKE_STATE_CODEC.decode(json.dumps(old).encode()) == state
    quiet = {"status": "quiet", "alert_id": "", "revision": 0, "below_since_slot": None, "resolved_slot": None}
    assert SPIKE_STATE_CODEC.decode(json.dumps(quiet).encode()) == SpikeState()
    cooling = {**old, "status": "cooling", "below_since_slot": None, "resolved_slot": T0 + 9}
    assert SPIKE_STATE_CODEC.decode(json.dumps(cooling).encode()).resolved_slot == T0 + 9


@pytest.mark.parametrize(
    ("data", "message"),
    [({"status": "burning"}, "status 'burning'"), ({"status": "firing", "revision": "2"}, "revision is '2'")],
)
def test_a_bad_stored_state_is_refused_by_name(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SPIKE_STATE_CODEC.decode(json.dumps(data).encode())


def test_alert_ids_are_safe_and_stay_unique() -> None:
    assert alert_id("acme:billing", 7) == "acme:billing:7"
    first, second = alert_id("acme:kw:moldy smell", 7), alert_id("acme:kw:moldy/smell", 7)
    assert first != second
    assert all(c.isascii() and (c.isalnum() or c in "_.:-") for c in first + alert_id("acme:kw:плесень", 7))
    assert len(alert_id("x" * 1000, 7)) < 200
