"""The HubSpot destination against a local portal: a unique case-id property, the 409 path, notes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from services.router.delivery.destinations.base import DestinationRejectedError, DestinationUnavailableError, Ticket
from services.router.delivery.destinations.hubspot import HubSpotDestination, note_body
from services.router.delivery.destinations.render import description, update_comment
from services.router.delivery.destinations.settings import HubSpotDestinationSettings
from services.shared.outbound import OutboundClient
from tests.http_server import LocalHttpServer
from tests.integration.case_samples import CASE_ID, HOSTILE_MARKERS, hostile_case, resolved, sample_case, with_new_post
from tests.integration.crm_servers import FakeHubSpot, serve_crm

TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
TICKETS = "/crm/v3/objects/tickets"


def settings(base_url: str, *, access_token: str = TOKEN) -> HubSpotDestinationSettings:
    return HubSpotDestinationSettings(
        kind="hubspot",
        name="hs-support",
        base_url=base_url,
        access_token=access_token,
        portal_id="4711",
        allow_hosts=["127.0.0.1"],
    )


@pytest.fixture
def fake() -> FakeHubSpot:
    return FakeHubSpot(access_token=TOKEN)


@pytest.fixture
async def server(fake: FakeHubSpot) -> AsyncIterator[LocalHttpServer]:
    async with serve_crm(fake) as server:
        yield server


@pytest.fixture
def hubspot(server: LocalHttpServer, http: OutboundClient) -> HubSpotDestination:
    return HubSpotDestination(settings(server.base_url), http=http)


async def test_create_posts_a_ticket_carrying_the_case_id_in_the_unique_property(
    hubspot: HubSpotDestination, server: LocalHttpServer, fake: FakeHubSpot
) -> None:
    case = sample_case()

    ticket = await hubspot.create(case)

    (post,) = server.requests
    assert (post.method, post.path, post.query) == ("POST", TICKETS, {})
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(post.body) == {
        "properties": {
            "subject": "[HIGH] billing from @ana_b on mastodon: "
            "Charged twice for my March bill and support won't answer. My lawyer will hear about this.",
            "content": description(case, limit=8000),
            "hs_pipeline": "0",
            "hs_pipeline_stage": "1",
            "hs_ticket_priority": "HIGH",
            "clamor_case_id": CASE_ID,
        }
    }
    assert ticket == Ticket(
        remote_id="1786110000", url="https://app.hubspot.com/contacts/4711/record/0-5/1786110000", created=True
    )
    assert fake.tickets["1786110000"]["clamor_case_id"] == CASE_ID


async def test_a_409_conflict_returns_the_ticket_holding_the_case_id(
    hubspot: HubSpotDestination, server: LocalHttpServer, fake: FakeHubSpot
) -> None:
    existing = fake.add_ticket(CASE_ID, subject="made by an earlier attempt")

    ticket = await hubspot.create(sample_case())

    assert ticket.remote_id == existing
    post, lookup = server.requests
    assert post.method == "POST"
    assert (lookup.method, lookup.path, lookup.query) == (
        "GET",
        f"{TICKETS}/{CASE_ID}",
        {"idProperty": "clamor_case_id"},
    )
    assert lookup.headers["Authorization"] == f"Bearer {TOKEN}"
    assert len(fake.tickets) == 1


async def test_creating_twice_makes_one_ticket(hubspot: HubSpotDestination, fake: FakeHubSpot) -> None:
    first = await hubspot.create(sample_case())
    second = await hubspot.create(sample_case())

    # The second create found the first one's ticket: it says so, and the worker syncs what it may lack.
    assert (first.remote_id, first.created, second.created) == (second.remote_id, True, False)
    assert len(fake.tickets) == 1


async def test_a_409_for_another_reason_is_rejected(hubspot: HubSpotDestination, fake: FakeHubSpot) -> None:
    fake.fail_next(1, 409, body=b'{"status": "error", "message": "pipeline stage conflict", "category": "CONFLICT"}')

    with pytest.raises(DestinationRejectedError, match=r"HTTP 409: .*pipeline stage conflict"):
        await hubspot.create(sample_case())


async def test_update_patches_priority_then_adds_a_note_associated_with_the_ticket(
    hubspot: HubSpotDestination, server: LocalHttpServer, fake: FakeHubSpot
) -> None:
    ticket = await hubspot.create(sample_case())
    later, events = with_new_post(sample_case())

    assert await hubspot.update(later, ticket, events) == ticket

    patch, note = server.requests[-2:]
    assert (patch.method, patch.path) == ("PATCH", f"{TICKETS}/{ticket.remote_id}")
    assert json.loads(patch.body) == {"properties": {"hs_ticket_priority": "HIGH"}}
    assert (note.method, note.path) == ("POST", "/crm/v3/objects/notes")
    assert note.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(note.body) == {
        "properties": {
            "hs_timestamp": "2026-03-01T12:30:05Z",
            "hs_note_body": note_body(update_comment(later, events)),
        },
        "associations": [
            {
                "to": {"id": ticket.remote_id},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 228}],
            }
        ],
    }
    assert "Text: Still no refund, day three.<br>" in fake.notes[0]["properties"]["hs_note_body"]


async def test_resolution_moves_the_ticket_to_the_closed_stage(hubspot: HubSpotDestination, fake: FakeHubSpot) -> None:
    ticket = await hubspot.create(sample_case())
    done, events = resolved(sample_case())

    await hubspot.update(done, ticket, events)

    assert fake.tickets[ticket.remote_id]["hs_pipeline_stage"] == "4"
    assert len(fake.notes) == 1


async def test_update_without_events_adds_no_note(hubspot: HubSpotDestination, fake: FakeHubSpot) -> None:
    ticket = await hubspot.create(sample_case())

    await hubspot.update(sample_case(priority="low"), ticket, [])

    assert fake.tickets[ticket.remote_id]["hs_ticket_priority"] == "LOW"
    assert fake.notes == []


@pytest.mark.parametrize(("status", "retry_after"), [(429, "2"), (503, "5")])
async def test_throttling_and_outages_are_retried_after_the_wait_asked(
    hubspot: HubSpotDestination, fake: FakeHubSpot, status: int, retry_after: str
) -> None:
    fake.fail_next(1, status, headers={"Retry-After": retry_after})

    with pytest.raises(DestinationUnavailableError, match=f"HTTP {status}") as caught:
        await hubspot.create(sample_case())

    assert caught.value.retry_after_s == float(retry_after)


async def test_a_429_without_retry_after_waits_for_the_rate_window(
    hubspot: HubSpotDestination, fake: FakeHubSpot
) -> None:
    body = (
        b'{"status": "error", "message": "You have reached your ten_secondly_rolling limit.",'
        b' "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}'
    )
    fake.fail_next(1, 429, headers={"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}, body=body)

    with pytest.raises(DestinationUnavailableError, match="ten_secondly_rolling") as caught:
        await hubspot.create(sample_case())

    assert caught.value.retry_after_s == 10.0


async def test_a_wrong_token_is_rejected_without_showing_it(server: LocalHttpServer, http: OutboundClient) -> None:
    wrong = "pat-na1-wrong-0000"
    hubspot = HubSpotDestination(settings(server.base_url, access_token=wrong), http=http)

    with pytest.raises(DestinationRejectedError, match=r"HTTP 401: .*INVALID_AUTHENTICATION") as caught:
        await hubspot.create(sample_case())

    assert wrong not in str(caught.value)
    assert "hs-support" in str(caught.value)


async def test_a_redirect_is_rejected_and_not_followed(
    hubspot: HubSpotDestination, server: LocalHttpServer, fake: FakeHubSpot
) -> None:
    fake.fail_next(1, 307, headers={"Location": "/elsewhere"})

    with pytest.raises(DestinationRejectedError, match="redirect"):
        await hubspot.create(sample_case())

    assert len(server.requests) == 1


async def test_hostile_post_text_is_plain_in_the_ticket_and_escaped_in_the_html_note(
    hubspot: HubSpotDestination, fake: FakeHubSpot
) -> None:
    case = hostile_case()
    ticket = await hubspot.create(case)
    later, events = with_new_post(case, text="<img src=x onerror=alert(3)> {{7*7}}\r\nStatus: solved")
    await hubspot.update(later, ticket, events)

    content = fake.tickets[ticket.remote_id]["content"]
    assert "Text: <script>alert(1)</script> {{7*7}}" in content
    assert not any(marker in content for marker in HOSTILE_MARKERS)
    note = fake.notes[0]["properties"]["hs_note_body"]
    assert "Text: &lt;img src=x onerror=alert(3)&gt; {{7*7}} Status: solved<br>" in note
    assert "<img" not in note
    assert "\n" not in note
