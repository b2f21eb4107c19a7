"""Notifier settings: channel and policy names resolve, acknowledgement is complete, grouping per channel."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.notifier.config import NotifierSettings

SECRET = "s" * 32


def settings(**data: Any) -> NotifierSettings:
    return NotifierSettings.model_validate(data)


def console(name: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "console", "name": name, **extra}


def pagerduty(name: str = "pd", **extra: Any) -> dict[str, Any]:
    return {"kind": "pagerduty", "name": name, "routing_key": "R0UT1NGKEY", **extra}


def policy(name: str, *steps: list[str]) -> dict[str, Any]:
    return {"name": name, "steps": [{"notify": notify} for notify in steps]}


# --- names resolve ------------------------------------------------------------------------


def test_channels_and_policies_that_resolve_are_accepted() -> None:
    result = settings(
        channels=[console("ops"), pagerduty()],
        policies=[policy("care-oncall", ["ops"], ["ops", "pd"])],
        alert_channels=["ops"],
    )
    assert [p.name for p in result.policies] == ["care-oncall"]


def test_duplicate_channel_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="channel names must be unique: ops"):
        settings(channels=[console("ops"), pagerduty("ops")])


def test_duplicate_policy_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="policy names must be unique"):
        settings(channels=[console("ops")], policies=[policy("care", ["ops"]), policy("care", ["ops"])])


def test_a_policy_step_naming_an_unknown_channel_is_refused_with_policy_and_step() -> None:
    with pytest.raises(ValidationError, match=r"policy 'care-oncall' step 2 names unknown channels: \['pager'\]"):
        settings(channels=[console("ops")], policies=[policy("care-oncall", ["ops"], ["ops", "pager"])])


def test_alert_channels_naming_an_unknown_channel_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"alert_channels names unknown channels: \['nowhere'\]"):
        settings(channels=[console("ops")], alert_channels=["ops", "nowhere"])


# --- acknowledgement ----------------------------------------------------------------------


def test_ack_disabled_needs_no_url_or_secret() -> None:
    assert settings(ack={"enabled": False}).ack.enabled is False


def test_ack_enabled_with_url_and_long_secret_is_accepted() -> None:
    result = settings(ack={"enabled": True, "public_url": "https://clamor.example.com", "secret": SECRET})
    assert result.ack.public_url == "https://clamor.example.com"


@pytest.mark.parametrize("url", ["", "clamor.example.com", "ftp://clamor.example.com"])
def test_ack_enabled_without_an_http_public_url_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="public_url"):
        settings(ack={"enabled": True, "public_url": url, "secret": SECRET})


def test_ack_enabled_with_a_short_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        settings(ack={"enabled": True, "public_url": "https://clamor.example.com", "secret": "s" * 15})


# --- grouping_for -------------------------------------------------------------------------


def test_grouping_for_a_channel_with_its_own_grouping_is_that_grouping() -> None:
    result = settings(channels=[console("ops", grouping={"group_wait_s": 5, "group_by": ["team"]})])
    channel = result.channels[0]
    assert result.grouping_for(channel) is channel.grouping


def test_grouping_for_a_channel_without_one_is_the_notifier_wide_grouping() -> None:
    result = settings(channels=[console("ops")], grouping={"group_wait_s": 12})
    assert result.grouping_for(result.channels[0]) is result.grouping


def test_grouping_for_a_pagerduty_channel_groups_by_case() -> None:
    result = settings(channels=[pagerduty()])
    assert result.grouping_for(result.channels[0]).group_by == ["case"]


def test_grouping_for_a_pagerduty_channel_keeps_the_notifier_wide_timings() -> None:
    result = settings(channels=[pagerduty()], grouping={"group_wait_s": 12, "group_interval_s": 60})
    grouping = result.grouping_for(result.channels[0])
    assert (grouping.group_wait_s, grouping.group_interval_s) == (12, 60)
