"""Spike detector quality: false alarms on normal traffic, detection delay on surges, a slow ramp.

Simulated complaint counts in 10-minute slots, Poisson noise around a known rate, with 8 days of
history before the measured days (7 baseline days and the day before them, for the trend), evaluated
once per slot as the router does (``evaluate`` with the stored state), with the default settings
unless flags change them:

- steady: a flat 12 posts an hour;
- daily cycle: 2 an hour at midnight to 30 at noon (the series of the unit tests);
- step surges: the daily cycle, then x3 or x5 from a random slot on, followed for a day; delay is
  counted from the surge's first slot to the end of the slot whose evaluation raised it (a surge at
  03:00 on 2 posts an hour is a different problem from one at noon on 30, so the table splits night
  (18:00-06:00) and day); alerts per surge counts the new alert ids in that day;
- slow ramp: the daily cycle doubling every week;
- keywords: a rare keyword's key with the keyword settings, at 1 post a day and at 10 a day.

    python bench/spike_detector.py
    python bench/spike_detector.py --method sigma
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from services.reputation.spikes import (
    SLOT_S,
    SLOTS_PER_DAY,
    KeywordSettings,
    SpikeSettings,
    SpikeState,
    evaluate,
    window_stats,
)

HISTORY_DAYS = 8
SLOTS_PER_HOUR = 3600 // SLOT_S
# A surge is detected if it is raised within DETECT_SLOTS; it is followed for FOLLOW_SLOTS.
DETECT_SLOTS = 6 * SLOTS_PER_HOUR
FOLLOW_SLOTS = SLOTS_PER_DAY
SURGES_PER_RUN = 10
T0 = SLOTS_PER_DAY * 20_500  # a midnight, so slot % 144 is the time of day
KEY = "bench"


def daily_cycle(days: int, *, night: float, noon: float) -> np.ndarray:
    """Expected posts per slot, ``night`` per hour at midnight rising smoothly to ``noon`` per hour at noon."""
    hours = np.arange(days * SLOTS_PER_DAY) % SLOTS_PER_DAY / SLOTS_PER_HOUR
    per_hour = night + (noon - night) * (1 - np.cos(2 * np.pi * hours / 24)) / 2
    return np.asarray(per_hour / SLOTS_PER_HOUR, dtype=np.float64)


def as_slots(counts: np.ndarray) -> dict[int, int]:
    return {T0 + index: int(count) for index, count in enumerate(counts.tolist()) if count}


def raised_slots(counts: np.ndarray, settings: SpikeSettings, *, start: int, stop: int) -> list[int]:
    """The slot indexes, from ``start`` to ``stop`` (exclusive), whose evaluation raised a new alert."""
    slots = as_slots(counts)
    state: SpikeState | None = None
    raised = []
    for index in range(start, stop):
        state, event = evaluate(slots, key=KEY, now_slot=T0 + index, state=state, settings=settings)
        if event is not None and event.kind == "raised":
            raised.append(index)
    return raised


@dataclass
class Surges:
    delays_min: list[float] = field(default_factory=list)
    alerts: list[int] = field(default_factory=list)
    # Detected and all surges, by the time of day they started.
    by_period: dict[str, list[int]] = field(default_factory=lambda: {"day": [0, 0], "night": [0, 0]})

    def add(self, raised: list[int], *, start: int) -> None:
        hour = start % SLOTS_PER_DAY / SLOTS_PER_HOUR
        period = self.by_period["day" if 6 <= hour < 18 else "night"]
        period[1] += 1
        self.alerts.append(len(raised))
        if raised and raised[0] < start + DETECT_SLOTS:
            self.delays_min.append((raised[0] - start + 1) * SLOT_S / 60)
            period[0] += 1


def false_alarms(rates: np.ndarray, settings: SpikeSettings, seeds: int) -> list[int]:
    counts = []
    for seed in range(seeds):
        series = np.random.default_rng(seed).poisson(rates)
        counts.append(len(raised_slots(series, settings, start=HISTORY_DAYS * SLOTS_PER_DAY, stop=len(series))))
    return counts


def surges(factor: float, settings: SpikeSettings, days: int, seeds: int) -> Surges:
    result = Surges()
    total = HISTORY_DAYS + days
    base = daily_cycle(total, night=2, noon=30)
    window = settings.window_s // SLOT_S
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        # Several surges per seed, each on its own copy of the month.
        low, high = (HISTORY_DAYS + 1) * SLOTS_PER_DAY, total * SLOTS_PER_DAY - FOLLOW_SLOTS
        for start in rng.integers(low, high, size=SURGES_PER_RUN).tolist():
            rates = base[: start + FOLLOW_SLOTS].copy()
            rates[start:] *= factor
            series = rng.poisson(rates)
            # Fresh state one window before, so an alarm on the traffic before the surge cannot hide it.
            raised = [i for i in raised_slots(series, settings, start=start - window, stop=len(series)) if i >= start]
            result.add(raised, start=start)
    return result


def ramp(settings: SpikeSettings, days: int, seeds: int) -> tuple[list[int], float]:
    total = HISTORY_DAYS + days
    growth = 2 ** (np.arange(total * SLOTS_PER_DAY) / (7 * SLOTS_PER_DAY))
    rates = daily_cycle(total, night=2, noon=30) * growth
    alarms, ratios = [], []
    for seed in range(seeds):
        series = np.random.default_rng(seed).poisson(rates)
        alarms.append(len(raised_slots(series, settings, start=HISTORY_DAYS * SLOTS_PER_DAY, stop=len(series))))
        slots = as_slots(series)
        last_week = range(len(series) - 7 * SLOTS_PER_DAY, len(series), SLOTS_PER_HOUR)
        ratios += [window_stats(slots, now_slot=T0 + i, settings=settings).ratio for i in last_week]
    return alarms, statistics.median(ratios)


def keyword_false_alarms(per_day: float, settings: SpikeSettings, seeds: int) -> list[int]:
    rates = np.full((HISTORY_DAYS + 30) * SLOTS_PER_DAY, per_day / SLOTS_PER_DAY)
    return false_alarms(rates, KeywordSettings(keywords=["mold"]).detector(settings), seeds)


def per_month(counts: list[int], days: int) -> str:
    mean = statistics.fmean(counts) * 30 / days
    return f"{mean:.2f}/month (max {max(counts)} in one {days}-day run, {sum(counts)} in {len(counts)} runs)"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30, help="measured days per run, after 8 days of history")
    parser.add_argument("--seeds", type=int, default=20, help="runs per shape")
    parser.add_argument("--method", choices=["poisson", "sigma"], default="poisson")
    parser.add_argument("--alpha", type=float, help="the Poisson method's alpha (default: the setting's)")
    parser.add_argument("--no-follow-trend", action="store_true", help="the plain mean of past days as baseline")
    options = parser.parse_args()
    if options.days < 2 or options.seeds < 1:
        parser.error("--days must be at least 2 (a surge is followed for a day) and --seeds at least 1")
    changes: dict[str, object] = {"method": options.method, "follow_trend": not options.no_follow_trend}
    if options.alpha is not None:
        changes["alpha"] = options.alpha
    settings = SpikeSettings.model_validate(changes)
    days, seeds = options.days, options.seeds
    started = time.perf_counter()
    print(
        f"settings: method={settings.method} alpha={settings.alpha:g} k_sigma={settings.k_sigma:g} "
        f"window_s={settings.window_s} baseline_days={settings.baseline_days} floor={settings.floor:g} "
        f"min_count={settings.min_count} min_ratio={settings.min_ratio:g} follow_trend={settings.follow_trend}"
    )
    print(f"{seeds} runs of {days} days per shape ({seeds * SURGES_PER_RUN} surges), evaluated every 10 minutes")
    print()
    flat = np.full((HISTORY_DAYS + days) * SLOTS_PER_DAY, 12 / SLOTS_PER_HOUR)
    cycle = daily_cycle(HISTORY_DAYS + days, night=2, noon=30)
    print(f"{'steady 12/h':<26} false alarms {per_month(false_alarms(flat, settings, seeds), days)}")
    print(f"{'daily cycle 2-30/h':<26} false alarms {per_month(false_alarms(cycle, settings, seeds), days)}")
    for factor in (3, 5):
        found = surges(factor, settings, days, seeds)
        count = len(found.alerts)
        within = sum(d <= settings.window_s / 60 for d in found.delays_min)
        periods = ", ".join(f"{name} {hit}/{all_}" for name, (hit, all_) in found.by_period.items())
        print(
            f"{f'step x{factor} on the cycle':<26} detected {within / count:.1%} within the window, "
            f"{len(found.delays_min) / count:.1%} within 6 h ({periods}); delay median "
            f"{percentile(found.delays_min, 50):.0f} min, p95 {percentile(found.delays_min, 95):.0f} min"
        )
        alerts = found.alerts
        print(f"{'':<26} alerts per surge in its first day: mean {statistics.fmean(alerts):.2f}, max {max(alerts)}")
    alarms, ratio = ramp(settings, days, seeds)
    print(f"{'ramp x2 a week':<26} alerts {per_month(alarms, days)}; median ratio in the last week {ratio:.2f}")
    for per_day in (1, 10):
        alarms = keyword_false_alarms(per_day, settings, seeds)
        print(f"{f'keyword at {per_day}/day':<26} false alarms {per_month(alarms, 30)} (keyword settings)")
    print()
    print(f"run time {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
