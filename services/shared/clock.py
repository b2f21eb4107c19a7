"""The one way services read the time: an injected :class:`Clock`.

Services never call ``datetime.now`` or ``time.time`` themselves; they are handed a clock, so a
test turns time by hand (``tests/support/clock.py``) instead of sleeping or bounding wall time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Returns the current time, timezone-aware, in UTC."""

    def __call__(self) -> datetime: ...


def system_clock() -> datetime:
    """The real time: the clock every service runs on outside tests."""
    return datetime.now(UTC)
