"""Complaint spikes: is a key's last window far above the same window on past days, and what to emit.

Pure logic, no I/O and no clock of its own. The caller keeps complaint counts per key (a watch, a
watch and category, a watch and keyword) in 10-minute slots, ``slot = unix_seconds // 600``, and
about once a minute calls :func:`evaluate` with them, the key's stored :class:`SpikeState` and the
current slot; it stores the new state and publishes the event, if any.

- :func:`window_stats` compares the last ``window_s`` with the same window on each of the past
  ``baseline_days`` days, so a daily cycle is the baseline rather than an alarm. The baseline is
  floored (``floor`` posts per window), so 1 → 4 posts on a quiet key is never "4× normal".
- :func:`step` is a state machine (quiet → firing → cooling → quiet) that gives one alert per surge:
  ``raised`` once, ``updated`` as the count grows, ``resolved`` once it has stayed calm, and a new
  surge within the cooldown re-opens the same alert instead of raising another one.

See ``docs/spike-detection.md`` for the method, the defaults and measured false-alarm rates.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, replace
from itertools import repeat
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from services.shared.config import Section

if TYPE_CHECKING:
    from collections.abc import Mapping

SLOT_S = 600
SLOTS_PER_DAY = 86_400 // SLOT_S
Status = Literal["quiet", "firing", "cooling"]
EventKind = Literal["raised", "updated", "resolved"]
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_.:-]")
_MAX_ID_KEY_CHARS = 160


class SpikeSettings(Section):
    """When a key's complaint volume counts as a surge, and how its alert is updated and resolved."""

    # The short window whose count is tested; whole slots, at most a day so that it never overlaps
    # the same window a day earlier.
    window_s: int = Field(default=3600, ge=SLOT_S, le=86_400, multiple_of=SLOT_S)
    # The baseline: the same window at the same time of day on each of the past N days.
    baseline_days: int = Field(default=7, ge=1, le=28)
    # A key with fewer days of history never alerts: until a day has been seen, a daily peak cannot
    # be told from a surge (see history_start_slot in window_stats).
    min_baseline_days: int = Field(default=2, ge=1, le=28)
    # Scale the baseline by the last day's volume over the volume of the day before each baseline
    # window (never down), so steady growth moves the baseline instead of alarming every day: a
    # brand whose complaints double weekly is 1.46x its plain 7-day mean at every hour, and Poisson
    # noise on that crossed 2x 7.5 times a month in simulation (bench/spike_detector.py).
    follow_trend: bool = True
    # The baseline is never taken as below this many posts per window: low volume cannot alarm.
    floor: float = Field(default=3.0, gt=0)
    # "poisson": alert when P(X >= observed | lambda = floored baseline) < alpha.
    # "sigma": alert when observed > mean + k_sigma * max(std of the days, sqrt(mean)).
    method: Literal["poisson", "sigma"] = "poisson"
    # 1e-5 rather than 1e-4: evaluated every 10 minutes, a key is tested 4320 times a month, and at
    # 1e-4 plain Poisson traffic raised 0.40-0.65 false alarms a month (bench/spike_detector.py).
    alpha: float = Field(default=1e-5, gt=0, lt=1)
    k_sigma: float = Field(default=4.0, gt=0)
    # Never alert below this many posts in the window, nor below this ratio to the floored baseline.
    min_count: int = Field(default=10, ge=1)
    min_ratio: float = Field(default=2.0, ge=1)
    # A firing alert resolves once every evaluation for resolve_after_s has been calm: below
    # resolve_ratio x the floored baseline, or below min_count.
    resolve_ratio: float = Field(default=1.5, ge=1)
    resolve_after_s: int = Field(default=1800, ge=0)
    # After a resolution, a new surge on the key within this long re-opens the same alert. Six hours
    # rather than one: a surge that lasts falls below min_count at night and comes back in the
    # morning, and with 1 h a lasting x3 step gave 1.4 alerts in its first day, with 6 h 1.09.
    cooldown_s: int = Field(default=6 * 3600, ge=0)
    # While firing, an update is emitted when the count grew by this fraction since the last emitted
    # revision, and no sooner than min_update_interval_s after it.
    update_min_growth: float = Field(default=0.25, ge=0)
    min_update_interval_s: int = Field(default=600, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> SpikeSettings:
        if self.min_baseline_days > self.baseline_days:
            raise ValueError(
                f"min_baseline_days ({self.min_baseline_days}) is more than baseline_days ({self.baseline_days})"
            )
        if self.resolve_ratio > self.min_ratio:
            # Otherwise a window could raise an alert and count as calm at once, and the alert flaps.
            raise ValueError(f"resolve_ratio ({self.resolve_ratio}) is more than min_ratio ({self.min_ratio})")
        return self


class KeywordSettings(Section):
    """Keywords watched on their own ("mold", "recall"): rare words whose bursts matter at low volume."""

    keywords: list[str] = Field(default_factory=list)
    min_count: int = Field(default=3, ge=1)
    # 0.4 rather than 0.5 so that 4 posts in an hour on a key that never sees the word alert at
    # alpha 1e-3: P(X >= 4 | 0.4) = 7.8e-4, while P(X >= 4 | 0.5) = 1.8e-3 would need 5 posts.
    floor: float = Field(default=0.4, gt=0)
    alpha: float = Field(default=1e-3, gt=0, lt=1)

    @field_validator("keywords")
    @classmethod
    def _normalised(cls, keywords: list[str]) -> list[str]:
        seen: list[str] = []
        for index, keyword in enumerate(keywords):
            word = keyword.strip().casefold()
            if not word:
                raise ValueError(f"keywords[{index}] is empty")
            if word in seen:
                raise ValueError(f"keywords[{index}] ({keyword!r}) repeats keywords[{seen.index(word)}]")
            seen.append(word)
        return seen

    def detector(self, base: SpikeSettings) -> SpikeSettings:
        """``base`` with this section's count, floor and alpha: the settings for a keyword's key."""
        changes = {"min_count": self.min_count, "floor": self.floor, "alpha": self.alpha}
        return SpikeSettings.model_validate({**base.model_dump(), **changes})


@dataclass(frozen=True)
class WindowStats:
    """One key's last window against its baseline."""

    observed: int
    # Mean of the same window on the days used; 0.0 when no day is used.
    baseline: float
    # The last day's volume over that of the days before the baseline windows, at least 1 (1 without
    # follow_trend).
    trend: float
    # max(baseline * trend, floor): what the window is tested against.
    floored_baseline: float
    days_used: int
    # observed / floored_baseline.
    ratio: float
    # P(X >= observed) for X ~ Poisson(floored_baseline), whichever method decides.
    p_value: float
    # (observed - floored_baseline) / max(std of the days, sqrt(floored_baseline)), whichever method decides.
    score: float
    # The method's test passed, with at least min_baseline_days of history.
    significant: bool
    # The window's first and last slot, both inclusive.
    window_start_slot: int
    window_end_slot: int


def window_stats(
    slots: Mapping[int, int], *, now_slot: int, settings: SpikeSettings, history_start_slot: int | None = None
) -> WindowStats:
    """The window of ``window_s`` ending with ``now_slot`` (inclusive) against the same window on past days.

    A slot missing from ``slots`` counts as 0. Day ``d`` of the baseline is the window shifted back
    ``d * 144`` slots; it is used only when it starts at or after ``history_start_slot``, the first
    slot the counts cover (pass it for a key whose counting began recently; None means the counts
    cover every slot, so quiet keyword keys keep a baseline of zeros rather than no baseline).
    """
    width = settings.window_s // SLOT_S
    start = now_slot - width + 1
    observed = _window_sum(slots, start, width)
    days = [
        _window_sum(slots, start - day * SLOTS_PER_DAY, width)
        for day in range(1, settings.baseline_days + 1)
        if history_start_slot is None or start - day * SLOTS_PER_DAY >= history_start_slot
    ]
    baseline = sum(days) / len(days) if days else 0.0
    trend = _trend(slots, start, len(days), history_start_slot) if settings.follow_trend else 1.0
    floored = max(baseline * trend, settings.floor)
    # Sample spread of the days; with one day there is none, and sqrt(mean) stands in below.
    std = math.sqrt(sum((d - baseline) ** 2 for d in days) / (len(days) - 1)) * trend if len(days) > 1 else 0.0
    p_value = poisson_tail(observed, floored)
    score = (observed - floored) / max(std, math.sqrt(floored))
    passed = p_value < settings.alpha if settings.method == "poisson" else score > settings.k_sigma
    return WindowStats(
        observed=observed,
        baseline=baseline,
        trend=trend,
        floored_baseline=floored,
        days_used=len(days),
        ratio=observed / floored,
        p_value=p_value,
        score=score,
        significant=passed and len(days) >= settings.min_baseline_days,
        window_start_slot=start,
        window_end_slot=now_slot,
    )


def _window_sum(slots: Mapping[int, int], start: int, width: int) -> int:
    return sum(map(slots.get, range(start, start + width), repeat(0)))


def _trend(slots: Mapping[int, int], start: int, days: int, history_start_slot: int | None) -> float:
    """The last day's volume over that of the day before each baseline window, at least 1.

    The baseline windows are compared with the 24 hours before each of them, so the factor is the
    level now over the level the baseline saw: 1.0 on a steady ramp's days, whatever its slope. Only
    up: a falling level leaves the baseline high, which costs sensitivity, never a false alarm. The
    window itself is left out, so a fresh surge does not raise its own baseline; one that lasts most
    of a day does, and resolves as the new normal.
    """
    if history_start_slot is not None:
        # Day d's level starts d + 1 days before the window.
        days = min(days, (start - history_start_slot) // SLOTS_PER_DAY - 1)
    if days <= 0:
        return 1.0
    before = _window_sum(slots, start - (days + 1) * SLOTS_PER_DAY, days * SLOTS_PER_DAY)
    if before == 0:
        return 1.0
    return max(1.0, _window_sum(slots, start - SLOTS_PER_DAY, SLOTS_PER_DAY) * days / before)


def poisson_tail(observed: int, mean: float) -> float:
    """P(X >= observed) for X ~ Poisson(mean), exact to float precision, summed from the smaller side."""
    if observed <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    if observed > mean:
        # The upper tail directly: terms shrink from the first, so tiny p-values keep their digits.
        term = math.exp(observed * math.log(mean) - mean - math.lgamma(observed + 1))
        total, k = 0.0, observed
        while term > total * 1e-17:
            total += term
            k += 1
            term *= mean / k
        return min(total, 1.0)
    # observed <= mean: the tail is at least about a half, so 1 - lower tail loses nothing that matters.
    k = observed - 1
    term = math.exp(k * math.log(mean) - mean - math.lgamma(k + 1))
    lower = 0.0
    while k >= 0 and term > lower * 1e-17:
        lower += term
        term *= k / mean
        k -= 1
    return max(0.0, 1.0 - lower)


@dataclass(frozen=True)
class SpikeState:
    """One key's alert state, stored by the caller between evaluations (as ``records.SPIKE_STATE_CODEC``)."""

    status: Status = "quiet"
    # Stable for one surge, "<key>:<started_slot>"; empty while quiet.
    alert_id: str = ""
    # The last emitted revision: 1 when raised, one more per update, resolution and re-opening.
    revision: int = 0
    started_slot: int = 0
    last_emitted_count: int = 0
    last_emitted_slot: int = 0
    # The highest window count seen while firing.
    peak: int = 0
    # The first slot of the current calm stretch while firing.
    below_since_slot: int | None = None
    # When the alert resolved, while cooling.
    resolved_slot: int | None = None


@dataclass(frozen=True)
class SpikeEvent:
    """What to publish: an alert revision (``<alert_id>:<revision>`` makes a good Nats-Msg-Id)."""

    kind: EventKind
    alert_id: str
    revision: int
    stats: WindowStats
    peak: int
    started_slot: int


def alert_id(key: str, started_slot: int) -> str:
    """``<key>:<started_slot>`` in ``[A-Za-z0-9_.:-]``; a key that had to change gets a hash, so ids stay unique."""
    safe = _UNSAFE_ID_CHARS.sub("_", key)
    if safe != key or len(safe) > _MAX_ID_KEY_CHARS:
        digest = hashlib.blake2b(key.encode(), digest_size=4).hexdigest()
        safe = f"{safe[:_MAX_ID_KEY_CHARS]}-{digest}"
    return f"{safe}:{started_slot}"


def _surging(stats: WindowStats, settings: SpikeSettings) -> bool:
    return stats.significant and stats.observed >= settings.min_count and stats.ratio >= settings.min_ratio


def _calm(stats: WindowStats, settings: SpikeSettings) -> bool:
    # Significance is not re-tested: at alpha 1e-5 it flips on ordinary noise while a surge is still
    # 2-3x its baseline, and the alert resolved and came back every few hours in simulation.
    return stats.observed < settings.min_count or stats.ratio < settings.resolve_ratio


def step(
    state: SpikeState | None, stats: WindowStats, *, key: str, now_slot: int, settings: SpikeSettings
) -> tuple[SpikeState, SpikeEvent | None]:
    """The key's next state, and the event to publish, if any; calling it again in one slot is harmless."""
    state = state or SpikeState()
    count = stats.observed
    if state.status == "cooling" and (now_slot - (state.resolved_slot or 0)) * SLOT_S >= settings.cooldown_s:
        state = SpikeState()

    if state.status == "quiet":
        if not _surging(stats, settings):
            return state, None
        raised = SpikeState(
            status="firing",
            alert_id=alert_id(key, now_slot),
            revision=1,
            started_slot=now_slot,
            last_emitted_count=count,
            last_emitted_slot=now_slot,
            peak=count,
        )
        return raised, _event("raised", raised, stats)

    if state.status == "cooling":
        if not _surging(stats, settings):
            return state, None
        # The same surge coming back: one alert, so the resolved one fires again as an update.
        reopened = replace(
            state,
            status="firing",
            revision=state.revision + 1,
            last_emitted_count=count,
            last_emitted_slot=now_slot,
            peak=max(state.peak, count),
            below_since_slot=None,
            resolved_slot=None,
        )
        return reopened, _event("updated", reopened, stats)

    peak = max(state.peak, count)
    if _calm(stats, settings):
        below = now_slot if state.below_since_slot is None else state.below_since_slot
        if (now_slot - below) * SLOT_S < settings.resolve_after_s:
            return replace(state, peak=peak, below_since_slot=below), None
        resolved = replace(
            state,
            status="cooling",
            revision=state.revision + 1,
            last_emitted_count=count,
            last_emitted_slot=now_slot,
            peak=peak,
            below_since_slot=None,
            resolved_slot=now_slot,
        )
        return resolved, _event("resolved", resolved, stats)

    grown = count > state.last_emitted_count and count >= state.last_emitted_count * (1 + settings.update_min_growth)
    waited = (now_slot - state.last_emitted_slot) * SLOT_S >= settings.min_update_interval_s
    if grown and waited:
        updated = replace(
            state,
            revision=state.revision + 1,
            last_emitted_count=count,
            last_emitted_slot=now_slot,
            peak=peak,
            below_since_slot=None,
        )
        return updated, _event("updated", updated, stats)
    return replace(state, peak=peak, below_since_slot=None), None


def _event(kind: EventKind, state: SpikeState, stats: WindowStats) -> SpikeEvent:
    return SpikeEvent(kind, state.alert_id, state.revision, stats, state.peak, state.started_slot)


def evaluate(
    slots: Mapping[int, int],
    *,
    key: str,
    now_slot: int,
    state: SpikeState | None,
    settings: SpikeSettings,
    history_start_slot: int | None = None,
) -> tuple[SpikeState, SpikeEvent | None]:
    """:func:`window_stats` then :func:`step`: the whole evaluation of one key."""
    stats = window_stats(slots, now_slot=now_slot, settings=settings, history_start_slot=history_start_slot)
    return step(state, stats, key=key, now_slot=now_slot, settings=settings)
