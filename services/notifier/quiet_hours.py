"""When a recipient's quiet hours end: the time held messages are released."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from services.notifier.config import QuietHours


def quiet_until(quiet: QuietHours | None, now: datetime) -> datetime | None:
    """The end of the quiet window ``now`` falls in (UTC), or None outside one.

    Windows may cross midnight (22:00–07:00). Times are wall-clock in the recipient's zone, so a
    daylight-saving change moves the window with the recipient's day, as they would expect.
    """
    if quiet is None:
        return None
    zone = ZoneInfo(quiet.timezone)
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if quiet.start < quiet.end:
        inside = quiet.start <= clock < quiet.end
        end_day = local.date()
    else:
        inside = clock >= quiet.start or clock < quiet.end
        end_day = local.date() + timedelta(days=1) if clock >= quiet.start else local.date()
    if not inside:
        return None
    end = datetime.combine(end_day, quiet.end, tzinfo=zone)
    if end.astimezone(UTC) <= now:
        # The end falls in the hour repeated when clocks go back, and we are in its second pass.
        end = end.replace(fold=1)
    ended = end.astimezone(UTC)
    return ended if ended > now else None
