"""The brand's own posts through the real router: never a case, never an escalation, a line in the thread's case.

Real nats-server and the router's real durables (tests/integration/router_harness.py), a manual clock;
deliveries go to the outbox file and to a local Zendesk (tests/integration/crm_servers.py). The brand's
posts come in as triage publishes them (``own_account``, noise), and also with a forged verdict (a
complaint, CRITICAL, with a safety flag) to show that the router refuses on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from clamor.v1 import case_pb2, triage_pb2
from services.router.domain import BRAND_REPLY, case_id_for, event_label
from tests.integration.crm_servers import FakeZendesk, serve_crm
from tests.integration.router_harness import (
    RunningRouter,
    complaint,
    escalations_published,
    publish_triaged,
    router_settings,
    running_router,
)
from tests.support.clock import ManualClock

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client as NatsClient

SAFETY = triage_pb2.RISK_FLAG_SAFETY
THREAD = "th-lumo-007"
APOLOGY = "@kev_oconnor Hi Kevin, really sorry about this. Your refund failed again, DM us the reference."
# Rules that would route and escalate the brand's post if it were anybody else's: big-account noise to
# PR, and any safety flag to the safety leads at once.
RULES: list[dict[str, Any]] = [
    {
        "name": "loud-noise",
        "match": {"verdict": ["noise"], "min_followers": 50000},
        "team": "pr",
        "escalate_to": ["pr-leads"],
    },
    {"name": "safety", "match": {"risk_flags_any": ["safety"]}, "team": "safety", "escalate_to": ["safety-leads"]},
]


def customer_complaint(mention_id: str = "x:c1", *, thread_id: str = THREAD) -> triage_pb2.TriagedMention:
    return complaint(
        mention_id,
        platform="x",
        handle="kev_oconnor",
        watch="lumo",
        thread_id=thread_id,
        followers=122,
        text="third day without home internet, thanks @LumoMobile",
        severity=triage_pb2.SEVERITY_MEDIUM,
    )


def brand_post(mention_id: str = "x:b1", *, forged: bool = False, thread_id: str = THREAD) -> triage_pb2.TriagedMention:
    """The brand's reply as triage publishes it; ``forged``: with a verdict that would open and escalate a case."""
    if forged:
        return complaint(
            mention_id,
            platform="x",
            handle="LumoMobile",
            watch="lumo",
            thread_id=thread_id,
            followers=95_800,
            text=APOLOGY,
            severity=triage_pb2.SEVERITY_CRITICAL,
            flags=(SAFETY,),
            own_account=True,
        )
    triaged = complaint(
        mention_id,
        platform="x",
        handle="LumoMobile",
        watch="lumo",
        thread_id=thread_id,
        followers=95_800,
        text=APOLOGY,
        verdict=triage_pb2.VERDICT_NOISE,
        severity=triage_pb2.SEVERITY_UNSPECIFIED,
        category="",
        own_account=True,
    )
    triaged.result.complaint_score = 0.0
    triaged.result.reasons.add(rule="own-account", matched="LumoMobile")
    return triaged


def brand_replies(case: case_pb2.Case) -> list[str]:
    return [event.detail for event in case.history if event_label(event) == BRAND_REPLY]


async def open_customer_case(running: RunningRouter) -> case_pb2.Case:
    await publish_triaged(running.js, customer_complaint())
    await running.counted("cases", 1)
    case = await running.case(case_id_for("x:c1"))
    assert case.state == case_pb2.CASE_STATE_ROUTED
    return case


@pytest.mark.parametrize("forged", [False, True], ids=["as-triaged", "forged-critical-complaint"])
async def test_a_brand_reply_joins_the_threads_case_history_and_changes_nothing_else(
    nc: NatsClient, tmp_path: Path, forged: bool
) -> None:
    js = nc.jetstream()
    clock = ManualClock()
    settings = router_settings({"outbox": {"path": "outbox.jsonl"}, "rules": RULES, "escalate_at": "HIGH"}, tmp_path)
    async with running_router(js, settings, clock=clock) as running:
        before = await open_customer_case(running)
        clock.advance(600)
        await publish_triaged(js, brand_post(forged=forged))
        await running.counted("own_posts", 1)
        case = await running.case(before.id)
        assert await running.router.cases.get(case_id_for("x:b1")) is None
        assert await escalations_published(js) == []
        assert (case.state, case.severity, list(case.risk_flags), case.escalation_level) == (
            before.state,
            before.severity,
            list(before.risk_flags),
            before.escalation_level,
        )
        assert (case.team, list(case.matched_rules)) == (before.team, list(before.matched_rules))
        assert [m.mention.id for m in case.mentions] == ["x:c1"]
        assert brand_replies(case) == ['@LumoMobile: "' + APOLOGY + '" [x:b1]']
        [event] = [e for e in case.history if event_label(e) == BRAND_REPLY]
        assert event.at.ToDatetime().timestamp() == clock().timestamp()
        assert running.counters.get("brand_replies") == 1
        assert running.counters.get("cases") == 1


async def test_a_redelivered_brand_reply_is_recorded_once(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    settings = router_settings({"outbox": {"path": "outbox.jsonl"}, "rules": RULES}, tmp_path)
    async with running_router(js, settings, clock=ManualClock()) as running:
        first = await open_customer_case(running)
        await publish_triaged(js, brand_post())
        await running.counted("own_posts", 1)
        # Past JetStream's duplicate window, as after a crash between the case write and the ack.
        await publish_triaged(js, brand_post(), attempt=2)
        await publish_triaged(js, brand_post(forged=True), attempt=3)
        await running.counted("own_posts", 3)
        case = await running.case(first.id)
    assert len(brand_replies(case)) == 1
    assert running.counters.get("brand_replies") == 1
    assert await escalations_published(js) == []


async def test_a_brand_reply_that_comes_with_the_complaint_it_answers_is_recorded(
    nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    settings = router_settings({"outbox": {"path": "outbox.jsonl"}, "rules": RULES}, tmp_path)
    async with running_router(js, settings, clock=ManualClock()) as running:
        # Fetched in one batch (a replay, a backlog): the reply is handled before the case exists,
        # and finds it when it looks again.
        await publish_triaged(js, brand_post(forged=True))
        await publish_triaged(js, customer_complaint())
        await running.counted("own_posts", 1)
        case = await running.case(case_id_for("x:c1"))
    assert len(brand_replies(case)) == 1
    assert [m.mention.id for m in case.mentions] == ["x:c1"]
    assert await escalations_published(js) == []


async def test_an_own_post_with_no_open_case_opens_nothing(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    settings = router_settings({"outbox": {"path": "outbox.jsonl"}, "rules": RULES}, tmp_path)
    async with running_router(js, settings, clock=ManualClock()) as running:
        # A brand post in a thread nobody complained in, then two more by the same account: the
        # author key would group them, but the brand is nobody's customer.
        await publish_triaged(js, brand_post("x:b1", forged=True))
        await publish_triaged(js, brand_post("x:b2", thread_id=""))
        await publish_triaged(js, brand_post("x:b3", forged=True, thread_id="th-other"))
        await running.counted("own_posts", 3)
        # A customer's complaint in another thread afterwards opens its own case, untouched by them.
        await publish_triaged(js, customer_complaint("x:c9", thread_id="th-else"))
        await running.counted("cases", 1)
        for mention_id in ("x:b1", "x:b2", "x:b3"):
            assert await running.router.cases.get(case_id_for(mention_id)) is None
        cases = await running.router.cases.list(limit=10)
        assert [c.id for c in cases] == [case_id_for("x:c9")]
        assert brand_replies(cases[0]) == []
    assert await escalations_published(js) == []
    assert running.counters.get("brand_replies") == 0
    assert (tmp_path / "outbox.jsonl").read_text().count(case_id_for("x:c9")) >= 1


async def test_a_brand_reply_to_a_resolved_case_is_not_recorded(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    settings = router_settings({"outbox": {"path": "outbox.jsonl"}}, tmp_path)
    async with running_router(js, settings, clock=ManualClock()) as running:
        first = await open_customer_case(running)
        await running.router.actions.publish(
            first.id, case_pb2.CASE_ACTION_KIND_RESOLVE, actor="agent", via="grpc", request_id="r1"
        )
        await running.counted("case_actions", 1)
        await publish_triaged(js, brand_post())
        await running.counted("own_posts", 1)
        case = await running.case(first.id)
        assert await running.router.cases.get(case_id_for("x:b1")) is None
    assert (case.state, brand_replies(case)) == (case_pb2.CASE_STATE_RESOLVED, [])


async def test_without_grouping_by_thread_a_brand_reply_finds_no_case(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    grouping = {"by_author": True, "by_thread": False}
    settings = router_settings({"outbox": {"path": "outbox.jsonl"}, "grouping": grouping}, tmp_path)
    async with running_router(js, settings, clock=ManualClock()) as running:
        first = await open_customer_case(running)
        await publish_triaged(js, brand_post(forged=True))
        await running.counted("own_posts", 1)
        case = await running.case(first.id)
        assert await running.router.cases.get(case_id_for("x:b1")) is None
    assert brand_replies(case) == []
    assert await escalations_published(js) == []


async def test_the_crm_ticket_gets_the_brand_reply_as_an_internal_comment(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    fake = FakeZendesk()
    async with serve_crm(fake) as server:
        zendesk = {
            "kind": "zendesk",
            "name": "zendesk",
            "base_url": server.base_url,
            "email": fake.email,
            "api_token": fake.api_token,
            "allow_hosts": ["127.0.0.1"],
        }
        settings = router_settings(
            {"outbox": {"path": "outbox.jsonl"}, "destinations": [zendesk], "default_destinations": ["zendesk"]},
            tmp_path,
        )
        async with running_router(js, settings, clock=ManualClock()) as running:
            await open_customer_case(running)
            await running.counted("delivered:zendesk", 1)
            await publish_triaged(js, brand_post())
            await running.counted("delivered:zendesk", 2)
    [(ticket_id, ticket)] = fake.tickets.items()
    assert ticket["external_id"] == case_id_for("x:c1")
    [update] = fake.comments[ticket_id][1:]
    assert update["public"] is False
    assert "brand reply" in update["body"]
    assert "really sorry about this" in update["body"]
