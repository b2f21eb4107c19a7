"""Rate-limit headers of every platform become the wait before the next request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.shared.ratelimit import MAX_WAIT_S, budget_wait_seconds, next_wait_seconds, retry_after_seconds

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def test_retry_after_in_seconds() -> None:
    assert retry_after_seconds({"Retry-After": "120"}, NOW) == 120


def test_retry_after_as_an_http_date() -> None:
    assert retry_after_seconds({"retry-after": "Mon, 23 Nov 2026 12:01:30 GMT"}, NOW) == 90


def test_retry_after_in_the_past_means_now() -> None:
    assert retry_after_seconds({"Retry-After": "Mon, 23 Nov 2026 11:00:00 GMT"}, NOW) == 0


def test_unreadable_retry_after_is_ignored() -> None:
    assert retry_after_seconds({"Retry-After": "soon"}, NOW) is None


def test_absurd_waits_are_capped() -> None:
    assert retry_after_seconds({"Retry-After": "99999999"}, NOW) == MAX_WAIT_S


def test_reddit_budget_spent_waits_for_the_reset_in_seconds() -> None:
    headers = {"X-Ratelimit-Used": "100", "X-Ratelimit-Remaining": "0.0", "X-Ratelimit-Reset": "42"}
    assert budget_wait_seconds(headers, NOW) == 42


def test_x_budget_spent_waits_until_the_epoch_reset() -> None:
    reset = int((NOW + timedelta(seconds=300)).timestamp())
    headers = {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)}
    assert budget_wait_seconds(headers, NOW) == 300


def test_mastodon_budget_spent_waits_until_the_iso_reset() -> None:
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2026-11-23T12:05:00.000Z"}
    assert budget_wait_seconds(headers, NOW) == 300


def test_ietf_draft_headers_as_bluesky_sends_them() -> None:
    reset = int((NOW + timedelta(seconds=60)).timestamp())
    assert budget_wait_seconds({"RateLimit-Remaining": "0", "RateLimit-Reset": str(reset)}, NOW) == 60


def test_budget_left_asks_for_no_wait() -> None:
    assert budget_wait_seconds({"X-Ratelimit-Remaining": "5", "X-Ratelimit-Reset": "42"}, NOW) is None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Ratelimit-Remaining": "0"},
        {"X-Ratelimit-Reset": "10"},
        {"X-Ratelimit-Remaining": "x", "X-Ratelimit-Reset": "1"},
    ],
)
def test_incomplete_budget_headers_ask_for_no_wait(headers: dict[str, str]) -> None:
    assert budget_wait_seconds(headers, NOW) is None


def test_the_longest_wait_any_header_asks_for_wins() -> None:
    headers = {"Retry-After": "30", "X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "90"}
    assert next_wait_seconds(headers, NOW) == 90


def test_no_headers_no_wait() -> None:
    assert next_wait_seconds({"Content-Type": "application/json"}, NOW) is None
