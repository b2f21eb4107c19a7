"""A create whose answer was lost, and a post that joined the case meanwhile: the ticket gets both posts, each once.

Real nats-server, the router's real durables and delivery worker (``running_router``) and each
strict local CRM from tests/integration/crm_servers.py. The CRM makes the ticket from the case's
first post, then, before it answers, the customer's second post joins the case, and the answer is
lost (the connection drops). The retried create finds the ticket the first attempt made: the
worker must send that ticket the second post, which it never carried (docs/adr/0013).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from services.router.domain import case_id_for
from services.shared.standard_webhooks import new_secret
from tests.http_server import serve
from tests.integration.crm_outage import losing_first_answer
from tests.integration.crm_servers import (
    HOOK_PATH,
    SF_DATA,
    FakeCrm,
    FakeHubSpot,
    FakeSalesforce,
    FakeServiceNow,
    FakeWebhookReceiver,
    FakeZendesk,
)
from tests.integration.router_harness import complaint, publish_triaged, router_settings, running_router
from tests.support.eventually import eventually

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client as NatsClient

    from tests.integration.router_harness import RunningRouter

FIRST = "First post: charged twice for one order"
SECOND = "Second post: still no refund after a week"
LOCAL = ["127.0.0.1"]


@dataclass(frozen=True)
class Crm:
    """One CRM under test: its fake, the route that makes a ticket, its destination, and its tickets' text."""

    fake: FakeCrm
    create_route: tuple[str, str]
    destination: Callable[[str], dict[str, Any]]
    # Every piece of text the CRM holds per ticket: descriptions, comments, notes, events.
    tickets: Callable[[], list[list[str]]]


def zendesk() -> Crm:
    fake = FakeZendesk()
    return Crm(
        fake,
        ("POST", "/api/v2/tickets.json"),
        lambda url: {"kind": "zendesk", "base_url": url, "email": fake.email, "api_token": fake.api_token},
        lambda: [[str(c["body"]) for c in comments] for comments in fake.comments.values()],
    )


def salesforce() -> Crm:
    fake = FakeSalesforce()
    return Crm(
        fake,
        ("PATCH", SF_DATA + "/Case/{field}/{value}"),
        lambda url: {
            "kind": "salesforce",
            "instance_url": url,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
        },
        lambda: [
            [str(case.get("Description", "")), *(c["CommentBody"] for c in fake.comments if c["ParentId"] == case_id)]
            for case_id, case in fake.cases.items()
        ],
    )


def hubspot() -> Crm:
    fake = FakeHubSpot()

    def note_texts(ticket_id: str) -> Iterator[str]:
        for note in fake.notes:
            if any(a["to"]["id"] == ticket_id for a in note["associations"]):
                yield str(note["properties"]["hs_note_body"])

    return Crm(
        fake,
        ("POST", "/crm/v3/objects/tickets"),
        lambda url: {"kind": "hubspot", "base_url": url, "access_token": fake.access_token},
        lambda: [[ticket.get("content", ""), *note_texts(ticket_id)] for ticket_id, ticket in fake.tickets.items()],
    )


def servicenow() -> Crm:
    fake = FakeServiceNow()
    return Crm(
        fake,
        ("POST", "/api/now/table/incident"),
        lambda url: {"kind": "servicenow", "instance_url": url, "username": fake.username, "password": fake.password},
        lambda: [
            [incident.get("description", ""), *fake.work_notes[sys_id]] for sys_id, incident in fake.incidents.items()
        ],
    )


def webhook() -> Crm:
    secret = new_secret()
    fake = FakeWebhookReceiver(secrets=[secret], now=time.time())

    def posts_heard() -> list[str]:
        """The text of each post the receiver heard of: in the created event, then in each update's events."""
        heard: list[str] = []
        for event in fake.events.values():
            data = event["data"]
            texts = {m["mention"]["id"]: m["mention"]["text"] for m in data.get("mentions", [])}
            if event["type"] == "io.clamor.case.created":
                heard += texts.values()
            for entry in data.get("events", []):
                if entry["kind"] == "post added":
                    heard.append(texts[entry["detail"].removeprefix("mention ")])
        return heard

    return Crm(
        fake,
        ("POST", HOOK_PATH),
        lambda url: {"kind": "webhook", "url": url + HOOK_PATH, "secrets": [secret]},
        lambda: [posts_heard()] if fake.events else [],
    )


CRMS = {"zendesk": zendesk, "salesforce": salesforce, "hubspot": hubspot, "servicenow": servicenow, "webhook": webhook}


def posts_in(texts: list[str]) -> tuple[int, int]:
    """How many times each of the two posts shows in one ticket's text."""
    return sum(t.count(FIRST) for t in texts), sum(t.count(SECOND) for t in texts)


@pytest.mark.parametrize("kind", sorted(CRMS))
async def test_a_post_that_joined_while_the_create_answer_was_lost_reaches_the_ticket_once(
    kind: str, nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    crm = CRMS[kind]()
    case_id = case_id_for("mastodon:lost1")
    router: list[RunningRouter] = []

    async def has_both_posts() -> bool:
        return len((await router[0].case(case_id)).mentions) == 2

    async def second_post_joins() -> None:
        await publish_triaged(js, complaint("mastodon:lost2", handle="ana", text=SECOND))
        await eventually(has_both_posts, what="the second post to join the case")

    routes = crm.fake.routes()
    routes[crm.create_route] = losing_first_answer(routes[crm.create_route], second_post_joins)
    async with serve(routes) as server:
        crm.fake.base_url = server.base_url
        destination = {"name": kind, "allow_hosts": LOCAL} | crm.destination(server.base_url)
        settings = router_settings(
            {
                "outbox": {"path": "outbox.jsonl"},
                "destinations": [destination],
                "default_destinations": [kind],
                "delivery": {"first_retry_s": 0.2, "max_retry_s": 1.0},
            },
            tmp_path,
        )
        async with running_router(js, settings) as running:
            router.append(running)
            await publish_triaged(js, complaint("mastodon:lost1", handle="ana", text=FIRST))
            await eventually(
                lambda: any(posts_in(texts)[1] for texts in crm.tickets()), what="the second post in the ticket"
            )
            await running.settle()
            assert [posts_in(texts) for texts in crm.tickets()] == [(1, 1)]
            assert await running.router.dead_letters.list() == []
