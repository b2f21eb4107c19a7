"""SLA clocks with a fast clock: warning, breach, two escalation levels, acknowledgement, restarts, replicas.

Real nats-server, the router's real durables and KV buckets; the test turns a manual clock and
ticks the SLA clocks, and reads what reached the ESCALATIONS stream (a duplicate would show).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from clamor.v1 import case_pb2
from services.router.domain import case_id_for, event_label
from tests.integration.router_harness import (
    complaint,
    escalations_published,
    publish_triaged,
    router_settings,
    running_router,
)
from tests.support.clock import T0, ManualClock

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client as NatsClient
    from nats.js import JetStreamContext

    from services.router.config import RouterSettings

POLICY = {
    "name": "standard",
    "first_response_s": 600,
    "warn_before_s": 120,
    "levels": [{"team": "leads", "after_s": 0}, {"team": "managers", "after_s": 900}],
}


def sla_settings(tmp_path: Path, **policy: Any) -> RouterSettings:
    return router_settings(
        {
            "outbox": {"path": "outbox.jsonl"},
            "sla_policies": [POLICY | policy],
            "default_sla": "standard",
            "escalate_at": "CRITICAL",
        },
        tmp_path,
    )


async def ladder(js: JetStreamContext) -> list[tuple[str, int, str]]:
    return [(e.team, e.level, e.id.split(":", 1)[1]) for e in await escalations_published(js)]


WARNING = ("care", 0, "sla:first_response:warning:care")
LEVEL1 = ("leads", 1, "sla:first_response:level1:leads")
LEVEL2 = ("managers", 2, "sla:first_response:level2:managers")


async def test_warning_breach_and_two_levels_each_on_time_then_an_ack_stops_the_ladder(
    nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    clock = ManualClock()
    async with running_router(js, sla_settings(tmp_path), clock=clock) as running:
        await publish_triaged(js, complaint("mastodon:1"))
        await running.settle()
        case_id = case_id_for("mastodon:1")
        case = await running.case(case_id)
        assert case.sla_policy == "standard"
        assert case.sla.first_response_due.ToDatetime(tzinfo=T0.tzinfo) == T0 + timedelta(seconds=600)
        assert not case.sla.HasField("resolution_due")
        for at, expected in [
            (479, []),
            (480, [WARNING]),
            (599, [WARNING]),
            (600, [WARNING, LEVEL1]),
            (1499, [WARNING, LEVEL1]),
            (1500, [WARNING, LEVEL1, LEVEL2]),
        ]:
            clock.now = T0 + timedelta(seconds=at)
            await running.tick()
            assert await ladder(js) == expected, at
        case = await running.case(case_id)
        assert case.state == case_pb2.CASE_STATE_ESCALATED
        assert (case.escalation_level, case.sla.first_response_breached) == (2, True)
        assert [event_label(e) for e in case.history].count("sla warning") == 1


async def test_an_acknowledgement_before_the_breach_stops_every_later_level(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    clock = ManualClock()
    async with running_router(js, sla_settings(tmp_path), clock=clock) as running:
        await publish_triaged(js, complaint("mastodon:2"))
        await running.settle()
        clock.advance(500)
        await running.tick()
        await running.router.actions.publish(
            case_id_for("mastodon:2"), case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE, actor="dana", via="grpc", request_id="a"
        )
        await running.settle()
        for _ in range(4):
            clock.advance(3600)
            await running.tick()
        case = await running.case(case_id_for("mastodon:2"))
    assert await ladder(js) == [WARNING]
    assert case.state == case_pb2.CASE_STATE_ACKNOWLEDGED
    assert (case.owner, case.sla.first_response_breached) == ("dana", False)


async def test_a_restart_mid_ladder_neither_skips_nor_repeats_a_level(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    clock = ManualClock()
    settings = sla_settings(tmp_path)
    async with running_router(js, settings, clock=clock) as running:
        await publish_triaged(js, complaint("mastodon:3"))
        await running.settle()
        clock.advance(600)
        await running.tick()
        assert await ladder(js) == [WARNING, LEVEL1]
    # Down for longer than level 2's wait: the new process fires level 2 once, and nothing before it again.
    clock.advance(3600)
    async with running_router(js, settings, clock=clock) as running:
        await running.tick()
        await running.tick()
    assert await ladder(js) == [WARNING, LEVEL1, LEVEL2]


async def test_a_crash_after_publishing_a_level_but_before_recording_it_sends_it_once(
    nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    clock = ManualClock()
    settings = sla_settings(tmp_path)
    async with running_router(js, settings, clock=clock) as running:
        await publish_triaged(js, complaint("mastodon:4"))
        await running.settle()
        clocks = running.router.clocks
        record = clocks.record(case_id_for("mastodon:4"))
        assert record is not None
        clock.advance(480)
        [warning] = [s for s in clocks.steps_left(record) if s.kind == "warning"]
        # The escalation goes out; the process dies before the step is written as fired.
        await running.router.handler.on_sla_step(record, warning)
        await running.settle()  # its CRM updates delivered: only the SLA record is left behind
    async with running_router(js, settings, clock=clock) as running:
        await running.tick()
        record = running.router.clocks.record(case_id_for("mastodon:4"))
        assert record is not None
        assert "first_response:warning" in record.fired
    assert await ladder(js) == [WARNING]


async def test_two_replicas_fire_each_escalation_once(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    clock = ManualClock()
    settings = sla_settings(tmp_path)
    async with running_router(js, settings, clock=clock) as one, running_router(js, settings, clock=clock) as two:
        for n in range(5):
            await publish_triaged(js, complaint(f"mastodon:r{n}", handle=f"user{n}"))
        await one.settle()
        await two.settle()
        for _ in range(3):
            clock.advance(600)
            # Both replicas see every clock due at the same moment.
            await asyncio.gather(one.router.tick(clock()), two.router.tick(clock()))
            await one.settle()
    published = await escalations_published(js)
    ids = [e.id for e in published]
    assert len(ids) == len(set(ids)) == 5 * 3
    assert sorted({e.level for e in published}) == [0, 1, 2]


async def test_a_resolution_stops_the_resolution_clock_too(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    clock = ManualClock()
    settings = sla_settings(tmp_path, resolution_s=7200)
    async with running_router(js, settings, clock=clock) as running:
        await publish_triaged(js, complaint("mastodon:5"))
        await running.settle()
        await running.router.actions.publish(
            case_id_for("mastodon:5"), case_pb2.CASE_ACTION_KIND_RESOLVE, actor="dana", via="crm", request_id="z"
        )
        await running.settle()
        clock.advance(86400)
        assert await running.tick() == 0
        assert running.router.clocks.record(case_id_for("mastodon:5")) is None
    assert await ladder(js) == []
