"""Complaints become cases: grouping by customer and thread, routing rules, CRM tickets and their updates.

Real nats-server and the router's real durables; deliveries go to the outbox file and to a local
Zendesk that implements the Tickets API (tests/integration/crm_servers.py).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from clamor.v1 import case_pb2, triage_pb2
from services.router.clients import CaseStore
from services.router.domain import add_destinations, case_id_for
from services.router.errors import PageTokenError
from services.shared.jetstream import ensure_streams
from tests.integration.crm_servers import FakeZendesk, serve_crm
from tests.integration.router_harness import (
    complaint,
    escalations_published,
    outbox_lines,
    publish_triaged,
    router_settings,
    running_router,
)
from tests.support.clock import T0, ManualClock

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client as NatsClient

    from services.router.config import RouterSettings

LEGAL = triage_pb2.RISK_FLAG_LEGAL_THREAT


def zendesk_settings(fake: FakeZendesk, base_url: str) -> dict[str, Any]:
    return {
        "kind": "zendesk",
        "name": "zendesk",
        "base_url": base_url,
        "email": fake.email,
        "api_token": fake.api_token,
        "allow_hosts": ["127.0.0.1"],
    }


def zendesk_by_default(fake: FakeZendesk, base_url: str, tmp_path: Path) -> RouterSettings:
    return router_settings(
        {
            "outbox": {"path": "outbox.jsonl"},
            "destinations": [zendesk_settings(fake, base_url)],
            "default_destinations": ["zendesk"],
        },
        tmp_path,
    )


async def test_a_complaint_becomes_a_routed_case_in_the_outbox(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    settings = router_settings({"outbox": {"path": "outbox.jsonl"}}, tmp_path)
    async with running_router(js, settings) as running:
        await publish_triaged(js, complaint("mastodon:1"))
        await running.settle()
        case = await running.case(case_id_for("mastodon:1"))
    assert case.state == case_pb2.CASE_STATE_ROUTED
    assert (list(case.destinations), case.team, case.priority_level) == (
        ["outbox"],
        "care",
        case_pb2.CASE_PRIORITY_NORMAL,
    )
    [line] = outbox_lines(tmp_path / "outbox.jsonl")
    assert line["id"] == case.id
    assert line["mentions"][0]["mention"]["id"] == "mastodon:1"


async def test_five_posts_of_one_customer_are_one_case_with_one_ticket_and_updates(
    nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    fake = FakeZendesk()
    async with serve_crm(fake) as server:
        settings = zendesk_by_default(fake, server.base_url, tmp_path)
        async with running_router(js, settings) as running:
            for n in range(5):
                await publish_triaged(js, complaint(f"mastodon:{n}", text=f"post {n}: still no refund"))
                await running.settle()
            case = await running.case(case_id_for("mastodon:0"))
            await running.settle()
    assert [m.mention.id for m in case.mentions] == [f"mastodon:{n}" for n in range(5)]
    assert len(fake.tickets) == 1
    [ticket_id] = fake.tickets
    assert fake.tickets[ticket_id]["external_id"] == case.id
    # The ticket's first comment is the description; each later post is one internal comment.
    later = fake.comments[ticket_id][1:]
    assert len(later) == 4
    assert all(c["public"] is False for c in later)
    assert "mastodon:4" in later[-1]["body"]


async def test_posts_in_one_thread_join_one_case_whoever_writes_them(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    settings = router_settings({"outbox": {"path": "outbox.jsonl"}}, tmp_path)
    async with running_router(js, settings) as running:
        await publish_triaged(js, complaint("reddit:t1", platform="reddit", handle="first", thread_id="t3_abc"))
        await running.settle()
        await publish_triaged(js, complaint("reddit:t2", platform="reddit", handle="second", thread_id="t3_abc"))
        await publish_triaged(js, complaint("reddit:t3", platform="reddit", handle="third", thread_id="t3_other"))
        await running.settle()
        case = await running.case(case_id_for("reddit:t1"))
        other = await running.case(case_id_for("reddit:t3"))
    assert [m.mention.id for m in case.mentions] == ["reddit:t1", "reddit:t2"]
    assert [m.mention.id for m in other.mentions] == ["reddit:t3"]


async def test_another_watch_or_a_resolved_case_starts_a_new_case(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    settings = router_settings({"outbox": {"path": "outbox.jsonl"}}, tmp_path)
    async with running_router(js, settings) as running:
        await publish_triaged(js, complaint("mastodon:a1", watch="acme"))
        await publish_triaged(js, complaint("mastodon:a2", watch="globex"))
        await running.settle()
        first = case_id_for("mastodon:a1")
        await running.router.actions.publish(
            first, case_pb2.CASE_ACTION_KIND_RESOLVE, actor="agent", via="grpc", request_id="r1"
        )
        await running.settle()
        await publish_triaged(js, complaint("mastodon:a3", watch="acme"))
        await running.settle()
        resolved = await running.case(first)
        assert resolved.state == case_pb2.CASE_STATE_RESOLVED
        assert [m.mention.id for m in resolved.mentions] == ["mastodon:a1"]
        assert [m.mention.id for m in (await running.case(case_id_for("mastodon:a2"))).mentions] == ["mastodon:a2"]
        assert [m.mention.id for m in (await running.case(case_id_for("mastodon:a3"))).mentions] == ["mastodon:a3"]


async def test_rules_choose_destinations_team_priority_and_escalate_once(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    fake = FakeZendesk()
    async with serve_crm(fake) as server:
        rules = [
            {"name": "everything-to-outbox", "destinations": ["outbox"], "continue": True},
            {
                "name": "legal",
                "match": {"risk_flags_any": ["legal_threat"]},
                "destinations": ["zendesk"],
                "team": "legal",
                "priority": "urgent",
                "escalate_to": ["legal-leads"],
            },
            {"name": "billing", "match": {"category": ["billing"]}, "team": "billing"},
        ]
        settings = router_settings(
            {
                "outbox": {"path": "outbox.jsonl"},
                "destinations": [zendesk_settings(fake, server.base_url)],
                "rules": rules,
                "escalate_at": "CRITICAL",
            },
            tmp_path,
        )
        async with running_router(js, settings) as running:
            await publish_triaged(js, complaint("x:1", handle="bob", flags=(LEGAL,), text="my lawyer will call you"))
            await publish_triaged(js, complaint("x:2", handle="cy"))
            await running.settle()
            # The legal customer posts again: the same case, and no second escalation.
            await publish_triaged(js, complaint("x:3", handle="bob", flags=(LEGAL,)))
            await running.settle()
            legal = await running.case(case_id_for("x:1"))
            billing = await running.case(case_id_for("x:2"))
            await running.settle()
    assert (legal.team, legal.priority_level, list(legal.matched_rules)) == (
        "legal",
        case_pb2.CASE_PRIORITY_URGENT,
        ["everything-to-outbox", "legal"],
    )
    assert list(legal.destinations) == ["outbox", "zendesk"]
    assert (billing.team, list(billing.destinations), list(billing.matched_rules)) == (
        "billing",
        ["outbox"],
        ["everything-to-outbox", "billing"],
    )
    assert [t["external_id"] for t in fake.tickets.values()] == [legal.id]
    escalations = await escalations_published(js)
    assert [(e.team, e.case.id, e.level) for e in escalations] == [("legal-leads", legal.id, 1)]
    assert legal.state == case_pb2.CASE_STATE_ESCALATED


async def test_noise_is_routed_only_by_a_rule_that_asks_for_it(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    rules = [{"name": "loud-noise", "match": {"verdict": ["noise"], "min_followers": 100000}, "team": "pr"}]
    settings = router_settings({"outbox": {"path": "outbox.jsonl"}, "rules": rules}, tmp_path)
    noise = triage_pb2.VERDICT_NOISE
    async with running_router(js, settings) as running:
        await publish_triaged(js, complaint("bsky:quiet", verdict=noise, followers=10))
        await publish_triaged(js, complaint("bsky:loud", verdict=noise, followers=250000))
        await running.settle()
        assert await running.router.cases.get(case_id_for("bsky:quiet")) is None
        loud = await running.case(case_id_for("bsky:loud"))
    assert (loud.team, list(loud.matched_rules)) == ("pr", ["loud-noise"])


async def test_a_resolution_reaches_the_crm_as_an_update_of_the_same_ticket(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    fake = FakeZendesk()
    async with serve_crm(fake) as server:
        settings = zendesk_by_default(fake, server.base_url, tmp_path)
        async with running_router(js, settings) as running:
            await publish_triaged(js, complaint("mastodon:r1"))
            await running.settle()
            case_id = case_id_for("mastodon:r1")
            await running.router.actions.publish(
                case_id, case_pb2.CASE_ACTION_KIND_RESOLVE, actor="dana", via="grpc", request_id="x"
            )
            await running.settle()
            await running.settle()
    [(ticket_id, ticket)] = fake.tickets.items()
    assert ticket["status"] == "solved"
    assert "resolve by dana" in fake.comments[ticket_id][-1]["body"]


async def test_a_burst_of_one_customers_posts_placed_at_once_is_one_case(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    settings = router_settings({"outbox": {"path": "outbox.jsonl"}, "concurrency": 16}, tmp_path)
    await ensure_streams(js)
    # Waiting before the router starts: its consumer takes them in one batch and places them concurrently.
    for n in range(8):
        await publish_triaged(js, complaint(f"mastodon:burst{n}", handle="ana", text=f"post {n}"))
    async with running_router(js, settings) as running:
        await running.settle(30)
        cases = await running.router.cases.list(100)
    assert len(cases) == 1
    assert sorted(m.mention.id for m in cases[0].mentions) == sorted(f"mastodon:burst{n}" for n in range(8))


async def test_a_group_key_claimed_by_a_router_that_died_is_taken_over(nc: NatsClient, tmp_path: Path) -> None:
    js = nc.jetstream()
    settings = router_settings({"outbox": {"path": "outbox.jsonl"}}, tmp_path)
    clock = ManualClock()
    async with running_router(js, settings, clock=clock) as running:
        # A post claimed the customer's key, and its router died before opening the case.
        key = "author:mastodon:ana:acme"
        await running.router.index.claim(key, case_id_for("mastodon:lost"), now=clock())
        clock.advance(60)
        await publish_triaged(js, complaint("mastodon:next", handle="ana"))
        await running.settle()
        case = await running.case(case_id_for("mastodon:next"))
        assert await running.router.index.lookup(key) == case.id
    assert [m.mention.id for m in case.mentions] == ["mastodon:next"]


async def test_a_post_waits_for_the_case_another_post_of_its_customer_is_opening(
    nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    settings = router_settings({"outbox": {"path": "outbox.jsonl"}}, tmp_path)
    clock = ManualClock()
    async with running_router(js, settings, clock=clock) as running:
        # Another replica has claimed the customer's key for its post and is about to open the case.
        first = case_id_for("mastodon:first")
        await running.router.index.claim("author:mastodon:ana:acme", first, now=clock())
        await publish_triaged(js, complaint("mastodon:second", handle="ana"))
        await asyncio.sleep(1.5)
        # The second post is not given a case of its own: it is retried until the first one's case exists.
        assert await running.router.cases.get(case_id_for("mastodon:second")) is None
        await publish_triaged(js, complaint("mastodon:first", handle="ana"))
        await running.settle(30)
        case = await running.case(first)
    assert sorted(m.mention.id for m in case.mentions) == ["mastodon:first", "mastodon:second"]


async def test_cases_are_listed_a_page_at_a_time_most_recently_changed_first(nc: NatsClient) -> None:
    store = await CaseStore.open(nc.jetstream(), replicas=1)
    ids = [f"c_page{n}" for n in range(5)]
    for case_id in ids:
        await store.create_or_get(case_pb2.Case(id=case_id))
    await store.update("c_page1", lambda case: add_destinations(case, ("outbox",), now=T0))
    pages: list[list[str]] = []
    token = ""
    while True:
        cases, token = await store.page(2, token)
        pages.append([case.id for case in cases])
        if not token:
            break
    assert pages == [["c_page1", "c_page4"], ["c_page3", "c_page2"], ["c_page0"]]


async def test_a_page_token_the_store_did_not_make_is_refused(nc: NatsClient) -> None:
    store = await CaseStore.open(nc.jetstream(), replicas=1)
    with pytest.raises(PageTokenError):
        await store.page(2, "not-a-token")
