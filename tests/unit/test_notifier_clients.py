"""Every channel kind the config accepts can be built the way the notifier builds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from services.notifier.channels.base import Channel
from services.notifier.clients import CHANNELS, build_channel
from services.notifier.config import ChannelSettings

MINIMAL: dict[str, dict[str, Any]] = {
    "console": {},
    "file": {"path": "notifications.jsonl"},
    "slack": {"webhook_url": "https://hooks.slack.example/services/T/B/X"},
    "teams": {"webhook_url": "https://flows.example/workflows/1"},
    "email": {"host": "smtp.example.com", "sender": "clamor@example.com", "recipients": ["pr@example.com"]},
    "sms": {"account_sid": "AC1", "auth_token": "t", "from_number": "+15550001", "to_numbers": ["+15550002"]},
    "dingtalk": {"webhook_url": "https://oapi.dingtalk.example/robot/send?access_token=x"},
    "pagerduty": {"routing_key": "R0123"},
    "webhook": {"url": "https://crm.example/hooks", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]},
}


def test_every_configurable_kind_has_an_adapter() -> None:
    assert set(MINIMAL) == set(CHANNELS)


@pytest.mark.parametrize("kind", sorted(MINIMAL))
async def test_each_kind_builds_from_its_minimal_settings(kind: str, tmp_path: Path) -> None:
    data = {"kind": kind, "name": f"{kind}-1", **MINIMAL[kind]}
    settings = TypeAdapter[Any](ChannelSettings).validate_python(data, context={"base_dir": tmp_path})
    channel = build_channel(settings, quote_chars=200)
    try:
        assert isinstance(channel, Channel)
        assert channel.name == f"{kind}-1"
        assert channel.kind == kind
    finally:
        await channel.aclose()
