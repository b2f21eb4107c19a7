"""How long to wait before asking a platform again, from its response headers.

Platforms say it differently: ``Retry-After`` (seconds or an HTTP date, RFC 9110), Reddit's
``X-Ratelimit-Remaining``/``-Reset`` (seconds), X's ``x-rate-limit-remaining``/``-reset`` (epoch
seconds), Mastodon's ``X-RateLimit-Remaining``/``-Reset`` (ISO 8601), and the IETF draft
``RateLimit-Remaining``/``-Reset`` that Bluesky sends (epoch seconds). We honour the longest
wait any of them asks for, so the budget is never exceeded.

``now`` is when the answer came (``HttpResponse.received_at``): dates and epoch resets are read
against it, never against a clock of this module's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# A reset above this is an epoch timestamp, below it a delta in seconds.
_EPOCH_THRESHOLD = 1_000_000_000
MAX_WAIT_S = 24 * 3600.0

_REMAINING = ("x-ratelimit-remaining", "x-rate-limit-remaining", "ratelimit-remaining")
_RESET = ("x-ratelimit-reset", "x-rate-limit-reset", "ratelimit-reset")


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _parse_instant_or_delta(value: str, now: datetime) -> float | None:
    """Seconds from ``now`` until ``value``: delta seconds, epoch seconds, HTTP date or ISO 8601."""
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if number > _EPOCH_THRESHOLD:
            return number - now.timestamp()
        return number
    for parse in (parsedate_to_datetime, lambda v: datetime.fromisoformat(v.replace("Z", "+00:00"))):
        try:
            instant = parse(value)
        except (TypeError, ValueError, IndexError):
            continue
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=UTC)
        return (instant - now).total_seconds()
    return None


def retry_after_seconds(headers: Mapping[str, str], now: datetime) -> float | None:
    """The wait ``Retry-After`` asks for, or None when absent or unreadable."""
    value = _lower(headers).get("retry-after")
    if value is None:
        return None
    wait = _parse_instant_or_delta(value, now)
    return None if wait is None else min(max(wait, 0.0), MAX_WAIT_S)


def budget_wait_seconds(headers: Mapping[str, str], now: datetime) -> float | None:
    """The wait until the rate-limit window resets when the budget is spent, else None."""
    lowered = _lower(headers)
    remaining = next((lowered[name] for name in _REMAINING if name in lowered), None)
    reset = next((lowered[name] for name in _RESET if name in lowered), None)
    if remaining is None or reset is None:
        return None
    try:
        left = float(remaining)
    except ValueError:
        return None
    if left >= 1:
        return None
    wait = _parse_instant_or_delta(reset, now)
    return None if wait is None else min(max(wait, 0.0), MAX_WAIT_S)


def next_wait_seconds(headers: Mapping[str, str], now: datetime) -> float | None:
    """The longest wait any header asks for; None when none asks for one."""
    waits = [w for w in (retry_after_seconds(headers, now), budget_wait_seconds(headers, now)) if w is not None]
    return max(waits) if waits else None
