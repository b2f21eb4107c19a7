"""Re-escalation up a policy, with a clock the test turns: unanswered steps move on, answers stop them.

The policy is on-call (10 min) → lead (15 min) → manager (30 min), each person a file channel,
so what each was told is one JSON line per message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from clamor.v1 import case_pb2, triage_pb2
from services.notifier.ack_links import AckLinks
from services.notifier.config import AckSettings, NotifierSettings
from services.notifier.http import AckServer
from services.notifier.pages import PageState
from tests.http_server import serve
from tests.integration.notifier_harness import (
    escalation,
    file_lines,
    log_statuses,
    publish_escalation,
    running_notifier,
)
from tests.integration.test_channel_pagerduty import PATH as PD_PATH
from tests.integration.test_channel_pagerduty import ROUTING_KEY, FakeEventsApi
from tests.support.clock import ManualClock

PEOPLE = ("oncall", "lead", "manager")


@pytest.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    return nc.jetstream()


def settings(folder: Path, **changes: Any) -> NotifierSettings:
    values: dict[str, Any] = {
        "channels": [{"kind": "file", "name": name, "path": folder / f"{name}.jsonl"} for name in PEOPLE],
        "grouping": {"group_by": ["case"], "group_wait_s": 0, "group_interval_s": 0},
        "policies": [
            {
                "name": "care",
                "teams": ["care"],
                "steps": [
                    {"notify": ["oncall"], "timeout_s": 600},
                    {"notify": ["lead"], "timeout_s": 900},
                    {"notify": ["manager"], "timeout_s": 1800},
                ],
            }
        ],
    }
    return NotifierSettings.model_validate(values | changes)


def told(folder: Path) -> dict[str, list[str]]:
    """Titles each person received, in order."""
    return {name: [line["title"] for line in file_lines(folder / f"{name}.jsonl")] for name in PEOPLE}


async def test_no_ack_moves_to_level_2_after_the_timeout_and_an_ack_stops_level_3(
    js: JetStreamContext, tmp_path: Path
) -> None:
    clock = ManualClock()
    async with running_notifier(js, settings(tmp_path), clock=clock) as notifier:
        await publish_escalation(js, escalation("c1"))
        await notifier.tick()
        assert told(tmp_path) == {"oncall": ["[HIGH] case c1 escalated to care (level 1)"], "lead": [], "manager": []}

        clock.advance(599)
        await notifier.tick()
        assert told(tmp_path)["lead"] == []

        clock.advance(2)
        await notifier.tick()
        assert told(tmp_path)["lead"] == ["[HIGH] case c1 unanswered: step 2 of care"]

        await notifier.actions.publish(
            "c1", case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE, actor="lea", via="grpc", request_id="r1"
        )
        await notifier.settle()
        clock.advance(3600)
        await notifier.tick()

        assert told(tmp_path)["manager"] == []
        page = notifier.pages.peek("c1")
        assert page is not None
        assert (page.state, page.actor, page.via, page.step) == (PageState.ACKNOWLEDGED, "lea", "grpc", 1)
        assert await log_statuses(notifier.log) == [
            ("oncall", "SENT", ["c1:1"]),
            ("lead", "SENT", ["c1:care:0:1"]),
        ]


async def test_a_restart_in_the_middle_of_the_ladder_repeats_nothing_and_skips_nothing(
    js: JetStreamContext, tmp_path: Path
) -> None:
    clock = ManualClock()
    async with running_notifier(js, settings(tmp_path), clock=clock) as notifier:
        await publish_escalation(js, escalation("c2"))
        await notifier.tick()
        clock.advance(601)
        await notifier.tick()
    assert [len(v) for v in told(tmp_path).values()] == [1, 1, 0]

    # A new process: the same escalation redelivered, and several turns at the same moment.
    async with running_notifier(js, settings(tmp_path), clock=clock) as notifier:
        await notifier.js.publish(
            "clamor.escalation.care", escalation("c2").SerializeToString(), headers={"Nats-Msg-Id": "c2:1-again"}
        )
        for _ in range(3):
            await notifier.tick()
        assert [len(v) for v in told(tmp_path).values()] == [1, 1, 0]
        clock.advance(899)
        await notifier.tick()
        assert told(tmp_path)["manager"] == []
        clock.advance(2)
        await notifier.tick()
    assert [len(v) for v in told(tmp_path).values()] == [1, 1, 1]

    async with running_notifier(js, settings(tmp_path), clock=clock) as notifier:
        clock.advance(1801)
        await notifier.tick()
        page = notifier.pages.peek("c2")
        assert page is not None
        assert page.state is PageState.EXHAUSTED
    assert [len(v) for v in told(tmp_path).values()] == [1, 1, 1]


async def test_a_policy_with_repeat_walks_the_ladder_again_then_stops(js: JetStreamContext, tmp_path: Path) -> None:
    values = settings(tmp_path).model_dump()
    values["policies"][0]["repeat"] = 1
    clock = ManualClock()
    async with running_notifier(js, NotifierSettings.model_validate(values), clock=clock) as notifier:
        await publish_escalation(js, escalation("c3"))
        await notifier.tick()
        for timeout in (600, 900, 1800, 600, 900, 1800, 600):
            clock.advance(timeout + 1)
            await notifier.tick()
    assert [len(v) for v in told(tmp_path).values()] == [2, 2, 2]


async def test_two_replicas_notify_each_step_once(js: JetStreamContext, tmp_path: Path) -> None:
    clock = ManualClock()
    async with (
        running_notifier(js, settings(tmp_path), clock=clock) as first,
        running_notifier(js, settings(tmp_path), clock=clock) as second,
    ):
        for case_id in ("c4", "c5", "c6"):
            await publish_escalation(js, escalation(case_id))
        await first.settle()
        await second.settle()
        for _ in range(2):
            await first.dispatcher.tick()
            await second.dispatcher.tick()
            await first.dispatcher.idle()
            await second.dispatcher.idle()
        clock.advance(601)
        await first.dispatcher.tick()
        await second.dispatcher.tick()
        await first.dispatcher.idle()
        await second.dispatcher.idle()
        sent = [status for status in await log_statuses(first.log) if status[1] == "SENT"]
    assert sorted(ids[0] for _, _, ids in sent) == sorted(
        ["c4:1", "c5:1", "c6:1", "c4:care:0:1", "c5:care:0:1", "c6:care:0:1"]
    )


async def test_a_resolution_from_the_crm_stops_the_ladder_too(js: JetStreamContext, tmp_path: Path) -> None:
    clock = ManualClock()
    async with running_notifier(js, settings(tmp_path), clock=clock) as notifier:
        await publish_escalation(js, escalation("c7", severity=triage_pb2.SEVERITY_CRITICAL))
        await notifier.tick()
        await notifier.actions.publish(
            "c7", case_pb2.CASE_ACTION_KIND_RESOLVE, actor="zendesk", via="crm", request_id="z"
        )
        await notifier.settle()
        clock.advance(10_000)
        await notifier.tick()
    assert [len(v) for v in told(tmp_path).values()] == [1, 0, 0]


async def test_an_acknowledgement_link_stops_the_ladder_and_acknowledges_the_pagerduty_incident(
    js: JetStreamContext, tmp_path: Path
) -> None:
    api = FakeEventsApi()
    clock = ManualClock()
    async with serve({("POST", PD_PATH): api.enqueue}) as pagerduty:
        pd = {
            "kind": "pagerduty",
            "name": "pd",
            "routing_key": ROUTING_KEY,
            "api_base_url": pagerduty.base_url,
            "allow_hosts": ["127.0.0.1"],
        }
        values = settings(tmp_path).model_dump()
        values["channels"].append(pd)
        values["policies"][0]["steps"][0]["notify"] = ["pd", "oncall"]
        configured = NotifierSettings.model_validate(values)
        ack = AckSettings(enabled=True, port=0, public_url="https://clamor.example", secret="s" * 32)
        links = AckLinks(secret=ack.secret, public_url=ack.public_url, ttl_s=3600)
        async with running_notifier(js, configured, clock=clock) as probe:
            server = AckServer(ack, links=links, sink=probe.actions.publish, clock=clock)
            port = await server.start()
        try:
            async with running_notifier(js, configured, clock=clock, links=links) as notifier:
                await publish_escalation(js, escalation("c8"))
                await notifier.tick()
                [trigger] = [json.loads(r.body) for r in pagerduty.requests]
                link = next(link["href"] for link in trigger["links"] if link["text"] == "Acknowledge in Clamor")
                # The link names the public address; here the endpoint listens on loopback.
                ack_url = link.replace(ack.public_url, f"http://127.0.0.1:{port}")
                async with httpx.AsyncClient() as client:
                    assert (await client.get(ack_url)).status_code == 200
                    assert notifier.pages.peek("c8").state is PageState.OPEN  # type: ignore[union-attr]
                    answer = await client.post(ack_url, data={"name": "Lea"})
                assert answer.status_code == 200
                await notifier.settle()
                clock.advance(601)
                await notifier.tick()
                page = notifier.pages.peek("c8")
        finally:
            await server.stop()
    assert page is not None
    assert (page.state, page.actor, page.via) == (PageState.ACKNOWLEDGED, "Lea", "link")
    assert told(tmp_path)["lead"] == []
    assert [json.loads(r.body)["event_action"] for r in pagerduty.requests] == ["trigger", "acknowledge"]
    assert api.incidents == {"clamor-case-c8": "acknowledged"}
