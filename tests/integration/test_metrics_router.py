"""The router's metrics, read back from a real meter provider while its real parts handle real traffic.

Real nats-server and durables (``running_router``), a manual clock for the SLA ladder, and a local
Zendesk (tests/integration/crm_outage.py) that fails on cue. Each test checks the recorded values
against what happened, redeliveries included: a repeat must count nothing twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from clamor.v1 import triage_pb2
from services.router.domain import case_id_for
from services.shared.metric_catalogue import DESTINATION_NAME, OUTCOME, POLICY, TEAM
from tests.integration.crm_outage import TimedZendesk, crm_server
from tests.integration.router_harness import complaint, publish_triaged, router_settings, running_router
from tests.integration.test_router_outage import dead_count, publish_complaints, settings_for, zendesk
from tests.integration.test_router_sla import sla_settings
from tests.support.clock import T0, ManualClock
from tests.support.eventually import eventually
from tests.support.metrics import RecordedMetrics

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client as NatsClient

LEGAL = triage_pb2.RISK_FLAG_LEGAL_THREAT
OPENED = "clamor.router.cases.opened"
GROUPED = "clamor.router.cases.grouped"
ESCALATED = "clamor.router.cases.escalated"
REQUESTS = "clamor.router.crm.requests"
DURATION = "clamor.router.crm.duration"
DEAD = "clamor.router.dead_letters"


def by_team(recorded: RecordedMetrics, name: str) -> dict[str, float]:
    return {attrs[TEAM]: recorded.value(name, attrs) for attrs in recorded.series(name)}


def by_outcome(recorded: RecordedMetrics, name: str) -> dict[tuple[str, str], float]:
    return {(attrs[DESTINATION_NAME], attrs[OUTCOME]): recorded.value(name, attrs) for attrs in recorded.series(name)}


async def test_cases_opened_grouped_and_escalated_count_once_each_through_redeliveries(
    nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    recorded = RecordedMetrics()
    rules = [
        {
            "name": "legal",
            "match": {"risk_flags_any": ["legal_threat"]},
            "team": "legal",
            "escalate_to": ["legal-leads"],
        },
    ]
    settings = router_settings(
        {"outbox": {"path": "outbox.jsonl"}, "rules": rules, "escalate_at": "CRITICAL"}, tmp_path
    )
    async with running_router(js, settings, counters=recorded.counters) as running:
        await publish_triaged(js, complaint("x:1", handle="ana"))
        await running.counted("cases", 1)
        # Ana again (twice: one case), a legal threat from Bob, a crisis from Cy.
        await publish_triaged(js, complaint("x:2", handle="ana"))
        await publish_triaged(js, complaint("x:3", handle="ana"))
        await publish_triaged(js, complaint("x:4", handle="bob", flags=(LEGAL,)))
        await publish_triaged(js, complaint("x:5", handle="cy", severity=triage_pb2.SEVERITY_CRITICAL))
        await running.counted("posts_grouped", 2)
        await running.counted("cases", 3)
        # Redeliveries of a founding post, a grouped post and an escalated one: every step runs again.
        for mention_id, handle in (("x:1", "ana"), ("x:2", "ana"), ("x:4", "bob")):
            flags = (LEGAL,) if handle == "bob" else ()
            await publish_triaged(js, complaint(mention_id, handle=handle, flags=flags), attempt=2)
        await running.counted("posts_grouped", 3)
        await running.counted("cases", 5)
        ana = await running.case(case_id_for("x:1"))

    assert len(ana.mentions) == 3
    assert by_team(recorded, OPENED) == {"care": 2, "legal": 1}
    assert by_team(recorded, GROUPED) == {"care": 2}
    assert by_team(recorded, ESCALATED) == {"legal-leads": 1, "escalations": 1}


async def test_sla_warnings_and_breaches_by_owner_and_policy_and_each_level_escalated_once(
    nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    clock = ManualClock()
    recorded = RecordedMetrics()
    async with running_router(js, sla_settings(tmp_path), clock=clock, counters=recorded.counters) as running:
        await publish_triaged(js, complaint("mastodon:1"))
        await running.counted("cases", 1)
        # The policy warns at 480 s, breaches at 600 s (leads) and escalates at 1500 s (managers).
        for at, warnings, breaches in [(479, 0, 0), (480, 1, 0), (600, 1, 1), (1500, 1, 1), (1500, 1, 1)]:
            clock.now = T0 + timedelta(seconds=at)
            await running.tick()
            owner = {TEAM: "care", POLICY: "standard"}
            assert recorded.value("clamor.router.sla.warnings", owner) == warnings, at
            assert recorded.value("clamor.router.sla.breaches", owner) == breaches, at

    assert recorded.series("clamor.router.sla.warnings") == [{TEAM: "care", POLICY: "standard"}]
    assert recorded.series("clamor.router.sla.breaches") == [{TEAM: "care", POLICY: "standard"}]
    # A warning tells the owner; only the breach and the next level escalate.
    assert by_team(recorded, ESCALATED) == {"leads": 1, "managers": 1}


async def test_crm_attempts_count_as_retried_then_delivered(nc: NatsClient, tmp_path: Path) -> None:
    fake = TimedZendesk()
    fake.fail_next(2, 503)
    recorded = RecordedMetrics()
    async with (
        crm_server(fake),
        running_router(nc.jetstream(), settings_for(zendesk(fake), tmp_path), counters=recorded.counters) as running,
    ):
        await publish_complaints(nc, 1, "metrics")
        await eventually(lambda: len(fake.tickets) == 1, what="the ticket after two 503s")
        await running.settle()

    # Every attempt starts with the external-id lookup: two were answered 503, the third went through.
    assert [a.status for a in fake.arrivals if a.method == "GET"] == [503, 503, 200]
    assert by_outcome(recorded, REQUESTS) == {("zendesk", "retried"): 2, ("zendesk", "delivered"): 1}
    assert by_outcome(recorded, DURATION) == {("zendesk", "retried"): 2, ("zendesk", "delivered"): 1}
    assert recorded.series(DEAD) == []


async def test_a_refused_delivery_counts_as_failed_and_dead_lettered(nc: NatsClient, tmp_path: Path) -> None:
    fake = TimedZendesk()
    fake.fail_next(1, 401)
    recorded = RecordedMetrics()
    async with (
        crm_server(fake),
        running_router(nc.jetstream(), settings_for(zendesk(fake), tmp_path), counters=recorded.counters) as running,
    ):
        await publish_complaints(nc, 1, "refused")
        await eventually(lambda: dead_count(running, 1), what="the delivery in dead letters")
        await running.settle()

    assert len(fake.arrivals) == 1
    assert by_outcome(recorded, REQUESTS) == {("zendesk", "failed"): 1}
    assert recorded.value(DURATION, {DESTINATION_NAME: "zendesk", OUTCOME: "failed"}) == 1
    assert recorded.series(DEAD) == [{DESTINATION_NAME: "zendesk"}]
    assert recorded.value(DEAD, {DESTINATION_NAME: "zendesk"}) == 1
