"""The notifier's metrics, read back from a real meter provider while its real parts send and page.

Real nats-server and durables (tests/integration/notifier_harness.py), a manual clock, a local Slack
incoming webhook that throttles once, and file channels for the people a policy pages.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from opentelemetry.sdk.metrics.export import HistogramDataPoint

from clamor.v1 import case_pb2
from services.notifier.config import NotifierSettings
from services.shared.metric_catalogue import CHANNEL, CHANNEL_KIND, OUTCOME
from tests.http_server import serve
from tests.integration.notifier_harness import escalation, log_statuses, publish_escalation, running_notifier
from tests.integration.test_notifier_escalation import settings as paging_settings
from tests.support.clock import ManualClock
from tests.support.metrics import RecordedMetrics

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client as NatsClient
    from nats.js import JetStreamContext

HOOK_PATH = "/services/T0001/B0001/metrics"
NOTIFICATIONS = "clamor.notifier.notifications"
DEPTH = "clamor.notifier.queue.depth"
ACK_DURATION = "clamor.notifier.ack.duration"


@pytest.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    return nc.jetstream()


def outcomes(recorded: RecordedMetrics) -> dict[tuple[str, str, str], float]:
    return {
        (attrs[CHANNEL], attrs[CHANNEL_KIND], attrs[OUTCOME]): recorded.value(NOTIFICATIONS, attrs)
        for attrs in recorded.series(NOTIFICATIONS)
    }


async def test_sends_failures_a_rate_limit_pause_and_the_queue_depth(js: JetStreamContext, tmp_path: Path) -> None:
    posts: list[int] = []

    async def slack(request: web.Request) -> web.Response:
        json.loads(await request.read())
        posts.append(429 if not posts else 200)
        if posts[-1] == 429:
            return web.Response(status=429, text="rate_limited", headers={"Retry-After": "1"})
        return web.Response(text="ok")

    recorded = RecordedMetrics()
    clock = ManualClock()
    async with serve({("POST", HOOK_PATH): slack}) as server:
        settings = NotifierSettings.model_validate(
            {
                "channels": [
                    {"kind": "slack", "name": "pr", "webhook_url": server.url(HOOK_PATH), "allow_hosts": ["127.0.0.1"]},
                    {"kind": "file", "name": "log", "path": tmp_path / "log.jsonl"},
                ],
                "grouping": {"group_by": ["case"], "group_wait_s": 0, "group_interval_s": 0},
            }
        )
        async with running_notifier(js, settings, clock=clock, counters=recorded.counters) as notifier:
            recorded.metrics.observe(DEPTH, notifier.dispatcher.queue_depth)  # as __main__ registers it
            assert recorded.value(DEPTH) == 0
            await publish_escalation(js, escalation("c1"))
            # One item for each channel; the file takes it, Slack answers 429 with Retry-After.
            await notifier.tick()
            assert recorded.value(DEPTH) == 2
            assert outcomes(recorded) == {("log", "file", "sent"): 1, ("pr", "slack", "failed"): 1}
            assert recorded.value("clamor.notifier.rate_limit.pauses", {CHANNEL: "pr"}) == 1
            # Past the retry: Slack's item is the one left, and goes.
            clock.advance(2)
            await notifier.tick()
            assert recorded.value(DEPTH) == 1
            await notifier.tick()
            assert recorded.value(DEPTH) == 0
            logged = await log_statuses(notifier.log)

    assert posts == [429, 200]
    assert sorted((channel, status) for channel, status, _ in logged) == [
        ("log", "SENT"),
        ("pr", "FAILED"),
        ("pr", "SENT"),
    ]
    assert outcomes(recorded) == {
        ("log", "file", "sent"): 1,
        ("pr", "slack", "failed"): 1,
        ("pr", "slack", "sent"): 1,
    }
    assert recorded.series("clamor.notifier.rate_limit.pauses") == [{CHANNEL: "pr"}]


async def test_a_page_reescalated_once_then_acknowledged_counts_its_time_from_opening(
    js: JetStreamContext, tmp_path: Path
) -> None:
    recorded = RecordedMetrics()
    clock = ManualClock()
    async with running_notifier(js, paging_settings(tmp_path), clock=clock, counters=recorded.counters) as notifier:
        await publish_escalation(js, escalation("c1"))
        await notifier.tick()
        clock.advance(601)
        await notifier.tick()  # on-call's 10 minutes ran out: the lead is paged
        await notifier.tick()
        clock.advance(120)
        await notifier.actions.publish(
            "c1", case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE, actor="lea", via="grpc", request_id="r1"
        )
        await notifier.settle()
        # A second acknowledgement, by link, finds the page answered already.
        await notifier.actions.publish(
            "c1", case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE, actor="lea", via="link", request_id="r2"
        )
        clock.advance(3600)
        await notifier.tick()
        logged = await log_statuses(notifier.log)

    assert [(channel, status) for channel, status, _ in logged] == [("oncall", "SENT"), ("lead", "SENT")]
    assert recorded.value("clamor.notifier.pages.reescalated") == 1
    assert recorded.series("clamor.notifier.pages.acknowledged") == [{CHANNEL: "grpc"}]
    assert recorded.value("clamor.notifier.pages.acknowledged") == 1
    [(_, point)] = recorded.points(ACK_DURATION)
    assert isinstance(point, HistogramDataPoint)
    assert (point.count, point.sum) == (1, 601 + 120)
