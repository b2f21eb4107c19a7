"""SLA clocks and the escalation ladder: pure time arithmetic, no I/O and no clock of its own.

A case has up to two clocks, both started when it opens: *first response* (stopped by an
acknowledgement) and *resolution* (stopped by resolving the case, which stops both). Each clock
has a deadline, an optional warning before it, and a ladder of escalation levels after it: level 1
is the breach itself (``levels[0]``), level n is notified ``levels[n-1].after_s`` after the deadline.

With business hours, only time inside the open windows counts, for deadlines, warnings and ladder
steps alike: a 4-hour deadline set at 16:00 on a Friday falls at 12:00 on Monday. Step ids are
stable, so a caller that stores the fired ones with the case neither repeats nor forgets a step
after a restart: :func:`pending` recomputes the ladder and leaves those out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from services.shared.config import Section, TimeZoneName

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Clock = Literal["first_response", "resolution"]
StepKind = Literal["warning", "breach", "escalation"]
_WEEKDAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Kept here rather than imported from services.router.config, so that config can import this module.
TEAM_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
POLICY_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
# "24:00" is allowed as an end, so a window can run to midnight.
_HHMM = r"^(?:(?:[01]\d|2[0-3]):[0-5]\d|24:00)$"


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class BusinessHours(Section):
    """When the clock runs: one window a day on the listed days, in a time zone, minus holidays."""

    timezone: TimeZoneName
    days: list[Day] = Field(default=["mon", "tue", "wed", "thu", "fri"], min_length=1)
    start: str = Field(default="09:00", pattern=_HHMM)
    end: str = Field(default="17:00", pattern=_HHMM)
    # Local dates on which the window stays closed.
    holidays: list[date] = Field(default_factory=list)

    @model_validator(mode="after")
    def _start_before_end(self) -> BusinessHours:
        if _minutes(self.start) >= _minutes(self.end):
            raise ValueError(f"start {self.start} is not before end {self.end}: windows cannot cross midnight")
        return self

    def window(self, day: date) -> tuple[datetime, datetime] | None:
        """The open window of local ``day`` in UTC, or None when the day is closed."""
        if _WEEKDAYS[day.weekday()] not in self.days or day in self.holidays:
            return None
        zone = ZoneInfo(self.timezone)
        # Wall-clock times in the zone, so on a DST day 09:00-17:00 is still 09:00-17:00 locally.
        opens, closes = (_wall_clock(day, _minutes(hhmm), zone) for hhmm in (self.start, self.end))
        # Only a window around the skipped hour (02:00-03:00 when clocks go forward) can be empty.
        return (opens, closes) if opens < closes else None


def _wall_clock(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    # 1440 minutes ("24:00") is the next day's midnight.
    day, minutes = day + timedelta(days=minutes // 1440), minutes % 1440
    return datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone).astimezone(UTC)


class EscalationLevel(Section):
    """One rung of the ladder: which team is told, and how long after the deadline."""

    team: str = Field(pattern=TEAM_PATTERN)
    # Seconds after the deadline (business seconds when the policy has business hours).
    after_s: float = Field(default=0, ge=0)


class SlaPolicy(Section):
    """Deadlines for a case, a warning before them, and who is told when they pass."""

    name: str = Field(pattern=POLICY_NAME_PATTERN)
    first_response_s: float | None = Field(default=None, gt=0)
    resolution_s: float | None = Field(default=None, gt=0)
    # How long before each deadline the owning team is warned (business seconds with business
    # hours); 0 sends no warning.
    warn_before_s: float = Field(default=0, ge=0)
    business_hours: BusinessHours | None = None
    levels: list[EscalationLevel] = Field(min_length=1)

    @field_validator("levels")
    @classmethod
    def _rungs_go_up(cls, levels: list[EscalationLevel]) -> list[EscalationLevel]:
        for index in range(1, len(levels)):
            if levels[index].after_s < levels[index - 1].after_s:
                raise ValueError(f"levels[{index}].after_s is less than levels[{index - 1}].after_s: rungs go up")
        return levels

    @model_validator(mode="after")
    def _consistent(self) -> SlaPolicy:
        clocks = {"first_response_s": self.first_response_s, "resolution_s": self.resolution_s}
        if all(seconds is None for seconds in clocks.values()):
            raise ValueError("set first_response_s, resolution_s or both: a policy without a deadline does nothing")
        for name, seconds in clocks.items():
            if seconds is not None and self.warn_before_s >= seconds:
                raise ValueError(f"warn_before_s ({self.warn_before_s:g}) must be less than {name} ({seconds:g})")
        return self


def _clocks(policy: SlaPolicy) -> dict[Clock, float]:
    """The clocks ``policy`` sets, first response first."""
    clocks: dict[Clock, float | None] = {"first_response": policy.first_response_s, "resolution": policy.resolution_s}
    return {clock: seconds for clock, seconds in clocks.items() if seconds is not None}


def _require_aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def add_business_time(start: datetime, seconds: float, hours: BusinessHours | None) -> datetime:
    """The moment ``seconds`` of counted time after ``start``, in UTC.

    Without business hours every second counts. With them only seconds inside open windows do,
    measured in real elapsed time, so a deadline that lands exactly on closing time stays there
    rather than moving to the next opening. Walks day by day, so deadlines weeks away stay cheap.
    """
    moment = _require_aware(start, "start")
    if seconds < 0:
        raise ValueError(f"seconds must not be negative, got {seconds}")
    remaining = timedelta(seconds=seconds)
    if hours is None or not remaining:
        return moment + remaining
    day = moment.astimezone(ZoneInfo(hours.timezone)).date()
    # Ends: at least one weekday is open, holidays are finite, and every window but one around a
    # skipped DST hour holds at least a minute.
    while True:
        window = hours.window(day)
        if window is not None and moment < window[1]:
            begin = max(moment, window[0])
            available = window[1] - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
        day += timedelta(days=1)


@dataclass(frozen=True)
class SlaStep:
    """One thing the ladder will do: warn the owner, announce a breach, or escalate a level."""

    # Stable across restarts ("first_response:warning", "resolution:level2"): recorded once fired.
    id: str
    at: datetime
    clock: Clock
    kind: StepKind
    # 0 for the warning, 1 for the breach (levels[0]), n for levels[n-1].
    level: int
    team: str


def deadlines(policy: SlaPolicy, *, opened_at: datetime) -> tuple[datetime | None, datetime | None]:
    """When the first response and the resolution are due (None for a clock the policy lacks)."""
    due = {
        clock: add_business_time(opened_at, seconds, policy.business_hours)
        for clock, seconds in _clocks(policy).items()
    }
    return due.get("first_response"), due.get("resolution")


def schedule(policy: SlaPolicy, *, opened_at: datetime, owner_team: str) -> list[SlaStep]:
    """Every step of both clocks, sorted by time; ties go first response first, then lower level."""
    hours = policy.business_hours
    steps: list[SlaStep] = []
    for clock, seconds in _clocks(policy).items():
        if policy.warn_before_s:
            # Counted forward from the opening, so the warning needs no subtraction of business time.
            warn_at = add_business_time(opened_at, seconds - policy.warn_before_s, hours)
            steps.append(SlaStep(f"{clock}:warning", warn_at, clock, "warning", 0, owner_team))
        due_at = add_business_time(opened_at, seconds, hours)
        for level, rung in enumerate(policy.levels, start=1):
            kind: StepKind = "breach" if level == 1 else "escalation"
            at = add_business_time(due_at, rung.after_s, hours)
            steps.append(SlaStep(f"{clock}:level{level}", at, clock, kind, level, rung.team))
    order: dict[Clock, int] = {"first_response": 0, "resolution": 1}
    return sorted(steps, key=lambda step: (step.at, order[step.clock], step.level))


def pending(
    policy: SlaPolicy,
    *,
    opened_at: datetime,
    owner_team: str,
    acknowledged: bool,
    resolved: bool,
    fired: Collection[str],
) -> list[SlaStep]:
    """The steps that may still fire: acknowledging stops the first-response clock, resolving both."""
    if resolved:
        return []
    return [
        step
        for step in schedule(policy, opened_at=opened_at, owner_team=owner_team)
        if step.id not in fired and not (acknowledged and step.clock == "first_response")
    ]


def due(steps: Iterable[SlaStep], now: datetime) -> list[SlaStep]:
    """The steps whose time has come (``at <= now``), in the order given."""
    moment = _require_aware(now, "now")
    return [step for step in steps if step.at <= moment]


def next_at(steps: Iterable[SlaStep]) -> datetime | None:
    """When the earliest of ``steps`` fires (a timer to set), or None when none is left."""
    return min((step.at for step in steps), default=None)
