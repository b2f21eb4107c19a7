"""Noise control against real channel APIs: grouping, the Slack budget, 429s, quiet hours, repeats, crashes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from clamor.v1 import alert_pb2, triage_pb2
from services.notifier.channels.base import Channel, Delivery
from services.notifier.channels.pagerduty import PagerDutyChannel
from services.notifier.config import NotifierSettings, PagerDutyChannelSettings
from services.notifier.message import Message
from services.shared.clock import system_clock
from tests.http_server import LocalHttpServer, serve
from tests.integration.notifier_harness import (
    clock_work as run_clock_work,
)
from tests.integration.notifier_harness import (
    escalation,
    file_lines,
    log_statuses,
    publish_alert,
    publish_escalation,
    running_notifier,
)
from tests.integration.test_channel_pagerduty import PATH as PD_PATH
from tests.integration.test_channel_pagerduty import ROUTING_KEY, FakeEventsApi
from tests.support.clock import ManualClock

HOOK_PATH = "/services/T0001/B0001/burst"
LOOPBACK = ["127.0.0.1"]
BERLIN_NIGHT = {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"}


@pytest.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    return nc.jetstream()


class SlackHook:
    """An incoming webhook that answers ``ok``, once 429 with Retry-After, and notes when each post came."""

    def __init__(self, *, throttle_at: int) -> None:
        self.arrivals: list[tuple[float, int, dict[str, Any]]] = []
        self._throttle_at = throttle_at

    async def post(self, request: web.Request) -> web.Response:
        payload = json.loads(await request.read())
        status = 429 if len(self.arrivals) == self._throttle_at else 200
        self.arrivals.append((time.monotonic(), status, payload))
        if status == 429:
            return web.Response(status=429, text="rate_limited", headers={"Retry-After": "2"})
        return web.Response(text="ok")


@pytest.fixture
async def slack() -> AsyncIterator[tuple[SlackHook, LocalHttpServer]]:
    hook = SlackHook(throttle_at=5)
    async with serve({("POST", HOOK_PATH): hook.post}) as server:
        yield hook, server


def spike(number: int) -> alert_pb2.Alert:
    return alert_pb2.Alert(
        id=f"spike-{number:03d}",
        kind=alert_pb2.ALERT_KIND_REPUTATION_SPIKE,
        topic=f"topic-{number:03d}",
        summary=f"complaints about topic-{number:03d} rose 6x",
        count=60,
        baseline=10.0,
    )


async def test_a_burst_of_500_alerts_for_one_slack_channel_is_grouped_paced_and_complete(
    js: JetStreamContext, slack: tuple[SlackHook, LocalHttpServer]
) -> None:
    hook, server = slack
    settings = NotifierSettings.model_validate(
        {
            "channels": [
                {"kind": "slack", "name": "pr", "webhook_url": server.url(HOOK_PATH), "allow_hosts": LOOPBACK}
            ],
            "grouping": {"group_by": ["kind"], "group_wait_s": 3, "group_interval_s": 1, "max_items_per_message": 25},
            "tick_s": 0.2,
        }
    )
    async with running_notifier(js, settings, clock=system_clock) as notifier:
        stop = asyncio.Event()
        clock_work = asyncio.create_task(run_clock_work(notifier.dispatcher, settings.tick_s, stop))
        for number in range(500):
            await publish_alert(js, spike(number))
        await notifier.settle(seconds=60)
        deadline = time.monotonic() + 90
        while sum(len(ids) for _, status, ids in await log_statuses(notifier.log) if status == "SENT") < 500:
            assert time.monotonic() < deadline, "the burst did not drain"
            await asyncio.sleep(0.5)
        stop.set()
        await clock_work
        logged = await log_statuses(notifier.log)

    delivered = [payload for _, status, payload in hook.arrivals if status == 200]
    topics = [f"topic-{n:03d}" for n in range(500)]
    texts = [json.dumps(payload) for payload in delivered]
    carriers = {topic: [i for i, text in enumerate(texts) if topic in text] for topic in topics}
    assert all(len(found) == 1 for found in carriers.values()), "an alert was dropped or sent twice"
    # Grouped: 25 alerts a message, a few partial groups at most, instead of 500 posts.
    assert 20 <= len(delivered) <= 24
    sent_ids = [item for _, status, ids in logged if status == "SENT" for item in ids]
    assert sorted(sent_ids) == sorted(f"spike-{n:03d}" for n in range(500))
    # Paced as Slack counts: a post arrives at least a second after the one before it (the budget
    # refills from each reply, so however slow a post was on its way), and nothing for 2 s after the 429.
    times = [at for at, _, _ in hook.arrivals]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) >= 1.0
    throttled = next(i for i, (_, status, _) in enumerate(hook.arrivals) if status == 429)
    assert times[throttled + 1] - times[throttled] >= 1.95
    assert [status for _, status, _ in logged].count("FAILED") == 1


def night_settings(folder: Path) -> NotifierSettings:
    return NotifierSettings.model_validate(
        {
            "channels": [
                {
                    "kind": "file",
                    "name": "night",
                    "path": folder / "night.jsonl",
                    "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"},
                },
            ],
            "grouping": {"group_wait_s": 0, "group_interval_s": 0},
        }
    )


async def test_quiet_hours_hold_messages_until_morning_but_critical_goes_at_once(
    js: JetStreamContext, tmp_path: Path
) -> None:
    clock = ManualClock(datetime(2026, 11, 23, 22, 30, tzinfo=UTC))  # 23:30 in Berlin
    async with running_notifier(js, night_settings(tmp_path), clock=clock) as notifier:
        await publish_escalation(js, escalation("q1"))
        await notifier.tick()
        assert file_lines(tmp_path / "night.jsonl") == []

        await publish_escalation(js, escalation("q2", severity=triage_pb2.SEVERITY_CRITICAL))
        await notifier.tick()
        assert [line["case_id"] for line in file_lines(tmp_path / "night.jsonl")] == ["q2"]

        clock.now = datetime(2026, 11, 24, 5, 59, tzinfo=UTC)  # 06:59 in Berlin
        await notifier.tick()
        assert len(file_lines(tmp_path / "night.jsonl")) == 1
        clock.now = datetime(2026, 11, 24, 6, 0, 1, tzinfo=UTC)
        await notifier.tick()
        assert [line["case_id"] for line in file_lines(tmp_path / "night.jsonl")] == ["q2", "q1"]
        statuses = [(status, ids) for _, status, ids in await log_statuses(notifier.log)]
    assert statuses == [("HELD", ["q1:1"]), ("SENT", ["q2:1"]), ("SENT", ["q1:1"])]


async def test_an_alert_that_grows_before_sending_is_sent_once_in_its_latest_form_and_repeats_are_dropped(
    js: JetStreamContext, tmp_path: Path
) -> None:
    settings = NotifierSettings.model_validate(
        {
            "channels": [{"kind": "file", "name": "pr", "path": tmp_path / "pr.jsonl"}],
            "grouping": {"group_wait_s": 30, "group_interval_s": 60, "repeat_interval_s": 3600},
        }
    )
    clock = ManualClock()
    growing = spike(1)
    async with running_notifier(js, settings, clock=clock) as notifier:
        await publish_alert(js, growing)
        growing.count, growing.summary = 90, "complaints about topic-001 rose 9x"
        await notifier.js.publish(
            "clamor.alert.reputation", growing.SerializeToString(), headers={"Nats-Msg-Id": "spike-001@90"}
        )
        await notifier.tick()
        clock.advance(31)
        await notifier.tick()
        # The same alert again, unchanged: a repeat within repeat_interval.
        await notifier.js.publish(
            "clamor.alert.reputation", growing.SerializeToString(), headers={"Nats-Msg-Id": "spike-001@90-again"}
        )
        clock.advance(120)
        await notifier.tick()
        statuses = [status for _, status, _ in await log_statuses(notifier.log)]
    [line] = file_lines(tmp_path / "pr.jsonl")
    assert "9x" in line["body"]
    assert statuses == ["SENT", "DUPLICATE"]


class CrashAfterSend(Channel):
    """The real PagerDuty channel, with the process dying right after PagerDuty accepted the event."""

    kind = "pagerduty"

    def __init__(self, inner: Channel) -> None:
        self.name = inner.name
        self._inner = inner

    async def send(self, message: Message) -> Delivery:
        await self._inner.send(message)
        raise RuntimeError("killed before the delivery was recorded")


@pytest.fixture
async def pagerduty() -> AsyncIterator[tuple[FakeEventsApi, LocalHttpServer]]:
    api = FakeEventsApi()
    async with serve({("POST", PD_PATH): api.enqueue}) as server:
        yield api, server


async def test_a_crash_after_the_page_was_sent_but_before_it_was_recorded_pages_once(
    js: JetStreamContext, pagerduty: tuple[FakeEventsApi, LocalHttpServer]
) -> None:
    api, server = pagerduty
    channel_settings = {
        "kind": "pagerduty",
        "name": "pd",
        "routing_key": ROUTING_KEY,
        "api_base_url": server.base_url,
        "allow_hosts": LOOPBACK,
    }
    settings = NotifierSettings.model_validate({"channels": [channel_settings], "grouping": {"group_wait_s": 0}})
    clock = ManualClock()
    real = PagerDutyChannel(PagerDutyChannelSettings.model_validate(channel_settings))
    try:
        async with running_notifier(js, settings, clock=clock, channels=[CrashAfterSend(real)]) as notifier:
            await publish_escalation(js, escalation("p1", severity=triage_pb2.SEVERITY_CRITICAL))
            await notifier.tick()
        assert len(server.requests) == 1

        # The restarted notifier finds the claim of the dead one, waits for it to lapse, and sends again.
        async with running_notifier(js, settings, clock=clock, channels=[real]) as notifier:
            await notifier.tick()
            assert len(server.requests) == 1
            clock.advance(181)
            await notifier.tick()
            await notifier.tick()
            statuses = [status for _, status, _ in await log_statuses(notifier.log)]
    finally:
        with contextlib.suppress(Exception):
            await real.aclose()
    keys = [json.loads(request.body)["dedup_key"] for request in server.requests]
    assert keys == ["clamor-case-p1", "clamor-case-p1"]
    assert api.incidents == {"clamor-case-p1": "triggered"}
    assert statuses == ["SENT"]
