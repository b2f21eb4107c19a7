"""The Zendesk destination against a local Zendesk: find by external id, private comments, solved status."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest

from services.router.delivery.destinations.base import DestinationRejectedError, DestinationUnavailableError, Ticket
from services.router.delivery.destinations.render import description, update_comment
from services.router.delivery.destinations.settings import ZendeskDestinationSettings
from services.router.delivery.destinations.zendesk import ZendeskDestination
from services.shared.outbound import OutboundClient
from tests.http_server import LocalHttpServer
from tests.integration.case_samples import CASE_ID, HOSTILE_MARKERS, hostile_case, resolved, sample_case, with_new_post
from tests.integration.crm_servers import FakeZendesk, serve_crm

EMAIL = "agent@acme.example"
TOKEN = "zd-token-6d1f3a"
AUTH = "Basic " + base64.b64encode(f"{EMAIL}/token:{TOKEN}".encode()).decode()


def settings(base_url: str, *, api_token: str = TOKEN) -> ZendeskDestinationSettings:
    return ZendeskDestinationSettings(
        kind="zendesk", name="zd-care", base_url=base_url, email=EMAIL, api_token=api_token, allow_hosts=["127.0.0.1"]
    )


@pytest.fixture
def fake() -> FakeZendesk:
    return FakeZendesk(email=EMAIL, api_token=TOKEN)


@pytest.fixture
async def server(fake: FakeZendesk) -> AsyncIterator[LocalHttpServer]:
    async with serve_crm(fake) as server:
        yield server


@pytest.fixture
def zendesk(server: LocalHttpServer, http: OutboundClient) -> ZendeskDestination:
    return ZendeskDestination(settings(server.base_url), http=http)


async def test_create_looks_up_the_external_id_then_opens_a_private_ticket(
    zendesk: ZendeskDestination, server: LocalHttpServer, fake: FakeZendesk
) -> None:
    case = sample_case()

    ticket = await zendesk.create(case)

    lookup, post = server.requests
    assert (lookup.method, lookup.path, lookup.query) == ("GET", "/api/v2/tickets.json", {"external_id": CASE_ID})
    assert (post.method, post.path, post.query) == ("POST", "/api/v2/tickets.json", {})
    assert lookup.headers["Authorization"] == post.headers["Authorization"] == AUTH
    assert post.headers["Content-Type"] == "application/json"
    assert json.loads(post.body) == {
        "ticket": {
            "subject": "[HIGH] billing from @ana_b on mastodon: "
            "Charged twice for my March bill and support won't answer. My lawyer will hear about this.",
            "comment": {"body": description(case, limit=8000), "public": False},
            "external_id": CASE_ID,
            "priority": "high",
            "tags": ["clamor", "billing", "mastodon"],
            "type": "problem",
        }
    }
    assert ticket == Ticket(remote_id="35436", url=f"{server.base_url}/agent/tickets/35436", created=True)
    assert fake.tickets[35436]["external_id"] == CASE_ID


async def test_create_returns_the_ticket_zendesk_already_holds_for_the_case(
    zendesk: ZendeskDestination, server: LocalHttpServer, fake: FakeZendesk
) -> None:
    existing = fake.add_ticket(CASE_ID)

    ticket = await zendesk.create(sample_case())

    assert ticket.remote_id == str(existing)
    assert [r.method for r in server.requests] == ["GET"]
    assert len(fake.tickets) == 1


async def test_creating_twice_opens_one_ticket(zendesk: ZendeskDestination, fake: FakeZendesk) -> None:
    first = await zendesk.create(sample_case())
    second = await zendesk.create(sample_case())

    # The second create found the first one's ticket: it says so, and the worker syncs what it may lack.
    assert (first.remote_id, first.created, second.created) == (second.remote_id, True, False)
    assert len(fake.tickets) == 1


async def test_update_adds_one_private_comment_and_raises_the_priority(
    zendesk: ZendeskDestination, server: LocalHttpServer, fake: FakeZendesk
) -> None:
    ticket = await zendesk.create(sample_case())
    later, events = with_new_post(sample_case())

    assert await zendesk.update(later, ticket, events) == ticket

    put = server.requests[-1]
    assert (put.method, put.path) == ("PUT", f"/api/v2/tickets/{ticket.remote_id}.json")
    assert put.headers["Authorization"] == AUTH
    assert json.loads(put.body) == {
        "ticket": {"priority": "urgent", "comment": {"body": update_comment(later, events), "public": False}}
    }
    comment = fake.comments[int(ticket.remote_id)][-1]["body"]
    assert "Text: Still no refund, day three." in comment
    assert "escalated: level 2 to escalations" in comment


async def test_resolution_solves_the_ticket(zendesk: ZendeskDestination, fake: FakeZendesk) -> None:
    ticket = await zendesk.create(sample_case())
    done, events = resolved(sample_case())

    await zendesk.update(done, ticket, events)

    assert fake.tickets[int(ticket.remote_id)]["status"] == "solved"
    assert "resolve by maria via crm" in fake.comments[int(ticket.remote_id)][-1]["body"]


async def test_update_without_events_adds_no_comment(
    zendesk: ZendeskDestination, server: LocalHttpServer, fake: FakeZendesk
) -> None:
    ticket = await zendesk.create(sample_case())

    await zendesk.update(sample_case(priority="low"), ticket, [])

    assert json.loads(server.requests[-1].body) == {"ticket": {"priority": "low"}}
    assert len(fake.comments[int(ticket.remote_id)]) == 1


@pytest.mark.parametrize(("status", "retry_after"), [(429, "2"), (503, "7")])
async def test_throttling_and_outages_are_retried_after_the_wait_asked(
    zendesk: ZendeskDestination, fake: FakeZendesk, status: int, retry_after: str
) -> None:
    fake.fail_next(1, status, headers={"Retry-After": retry_after}, body=b'{"error": "busy"}')

    with pytest.raises(DestinationUnavailableError, match=f"HTTP {status}") as caught:
        await zendesk.create(sample_case())

    assert caught.value.retry_after_s == float(retry_after)


async def test_wrong_credentials_are_rejected_without_showing_them(
    server: LocalHttpServer, http: OutboundClient
) -> None:
    wrong = "zd-wrong-token-99"
    zendesk = ZendeskDestination(settings(server.base_url, api_token=wrong), http=http)

    with pytest.raises(DestinationRejectedError, match="HTTP 401") as caught:
        await zendesk.create(sample_case())

    message = str(caught.value)
    assert "zd-care" in message
    assert "Couldn't authenticate you" in message
    assert wrong not in message
    assert base64.b64encode(f"{EMAIL}/token:{wrong}".encode()).decode() not in message
    assert server.base_url not in message


async def test_a_redirect_is_rejected_and_not_followed(
    zendesk: ZendeskDestination, server: LocalHttpServer, fake: FakeZendesk
) -> None:
    fake.fail_next(1, 302, headers={"Location": "/login"})

    with pytest.raises(DestinationRejectedError, match="redirect"):
        await zendesk.create(sample_case())

    assert [r.path for r in server.requests] == ["/api/v2/tickets.json"]


async def test_an_invalid_ticket_is_rejected_with_zendesk_s_reason(
    zendesk: ZendeskDestination, fake: FakeZendesk
) -> None:
    fake.fail_next(1, 422, body=b'{"error": "RecordInvalid", "description": "Record validation errors"}')

    with pytest.raises(DestinationRejectedError, match=r"HTTP 422: .*RecordInvalid"):
        await zendesk.create(sample_case())


async def test_updating_a_deleted_ticket_is_rejected(zendesk: ZendeskDestination) -> None:
    later, events = with_new_post(sample_case())

    with pytest.raises(DestinationRejectedError, match="HTTP 404"):
        await zendesk.update(later, Ticket(remote_id="999"), events)


async def test_hostile_post_text_reaches_zendesk_as_inert_plain_text(
    zendesk: ZendeskDestination, server: LocalHttpServer, fake: FakeZendesk
) -> None:
    ticket = await zendesk.create(hostile_case())

    sent = json.loads(server.requests[-1].body)["ticket"]
    body = fake.comments[int(ticket.remote_id)][0]["body"]
    assert "html_body" not in sent["comment"]
    assert "Text: <script>alert(1)</script> {{7*7}} ${7*7} [ code]<img" in body
    assert "@mallory X-Injected: 1 " in body
    assert "\r" not in sent["subject"] + body
    assert "\n" not in sent["subject"]
    assert not any(marker in body for marker in HOSTILE_MARKERS)
    assert "X-Injected" not in server.requests[-1].headers
