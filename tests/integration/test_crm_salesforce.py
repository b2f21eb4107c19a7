"""The Salesforce destination against a local org: client-credentials tokens, upsert by external id, comments."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

import pytest

from services.router.delivery.destinations.base import DestinationRejectedError, DestinationUnavailableError, Ticket
from services.router.delivery.destinations.render import description, update_comment
from services.router.delivery.destinations.salesforce import REQUEST_LIMIT_WAIT_S, SalesforceDestination
from services.router.delivery.destinations.settings import SalesforceDestinationSettings
from services.shared.outbound import OutboundClient
from tests.http_server import LocalHttpServer, RecordedRequest
from tests.integration.case_samples import CASE_ID, HOSTILE_MARKERS, hostile_case, resolved, sample_case, with_new_post
from tests.integration.crm_servers import SF_DATA, FakeSalesforce, serve_crm

CLIENT_ID = "3MVG9-consumer-key"
SECRET = "sf-secret-8c2b1e"
CASE_PATH = f"{SF_DATA}/Case/Clamor_Case_Id__c/{CASE_ID}"
NOT_FOUND = b'[{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]'


def settings(base_url: str, *, client_secret: str = SECRET) -> SalesforceDestinationSettings:
    return SalesforceDestinationSettings(
        kind="salesforce",
        name="sf-service",
        instance_url=base_url,
        client_id=CLIENT_ID,
        client_secret=client_secret,
        allow_hosts=["127.0.0.1"],
    )


@pytest.fixture
def fake() -> FakeSalesforce:
    return FakeSalesforce(client_id=CLIENT_ID, client_secret=SECRET)


@pytest.fixture
async def server(fake: FakeSalesforce) -> AsyncIterator[LocalHttpServer]:
    async with serve_crm(fake) as server:
        yield server


@pytest.fixture
def salesforce(server: LocalHttpServer, http: OutboundClient) -> SalesforceDestination:
    return SalesforceDestination(settings(server.base_url), http=http)


def token_requests(server: LocalHttpServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.path == "/services/oauth2/token"]


async def test_create_gets_a_token_then_upserts_the_case_by_its_external_id(
    salesforce: SalesforceDestination, server: LocalHttpServer, fake: FakeSalesforce
) -> None:
    case = sample_case()

    ticket = await salesforce.create(case)

    token, lookup, upsert = server.requests
    assert (token.method, token.headers["Content-Type"]) == ("POST", "application/x-www-form-urlencoded")
    assert parse_qs(token.body.decode()) == {
        "grant_type": ["client_credentials"],
        "client_id": [CLIENT_ID],
        "client_secret": [SECRET],
    }
    assert (lookup.method, lookup.path, lookup.query) == ("GET", CASE_PATH, {"fields": "Id"})
    assert (upsert.method, upsert.path, upsert.query) == ("PATCH", CASE_PATH, {})
    assert lookup.headers["Authorization"] == upsert.headers["Authorization"] == f"Bearer {fake.issued[0]}"
    assert json.loads(upsert.body) == {
        "Subject": "[HIGH] billing from @ana_b on mastodon: "
        "Charged twice for my March bill and support won't answer. My lawyer will hear about this.",
        "Description": description(case, limit=32000),
        "Priority": "High",
        "Origin": "Social",
        "Status": "New",
    }
    record_id = "500000000000001AAA"
    assert ticket == Ticket(
        remote_id=record_id, url=f"{server.base_url}/lightning/r/Case/{record_id}/view", created=True
    )
    assert fake.cases[record_id]["Clamor_Case_Id__c"] == CASE_ID


async def test_create_returns_the_case_salesforce_already_holds_untouched(
    salesforce: SalesforceDestination, server: LocalHttpServer, fake: FakeSalesforce
) -> None:
    existing = fake.add_case(CASE_ID, Status="Working")

    ticket = await salesforce.create(sample_case())

    assert ticket.remote_id == existing
    assert [r.method for r in server.requests] == ["POST", "GET"]
    assert fake.cases[existing]["Status"] == "Working"


async def test_creating_twice_makes_one_case(salesforce: SalesforceDestination, fake: FakeSalesforce) -> None:
    first = await salesforce.create(sample_case())
    second = await salesforce.create(sample_case())

    # The second create found the first one's ticket: it says so, and the worker syncs what it may lack.
    assert (first.remote_id, first.created, second.created) == (second.remote_id, True, False)
    assert len(fake.cases) == 1


async def test_an_upsert_that_finds_a_case_made_meanwhile_updates_it_instead_of_adding_one(
    salesforce: SalesforceDestination, fake: FakeSalesforce
) -> None:
    await salesforce.create(sample_case("c_other"))
    made_meanwhile = fake.add_case(CASE_ID)
    fake.fail_next(1, 404, body=NOT_FOUND)  # the lookup raced the other replica's create

    ticket = await salesforce.create(sample_case())

    assert ticket.remote_id == made_meanwhile
    assert len(fake.cases) == 2


async def test_the_token_is_reused_across_calls(salesforce: SalesforceDestination, server: LocalHttpServer) -> None:
    ticket = await salesforce.create(sample_case())
    later, events = with_new_post(sample_case())
    await salesforce.update(later, ticket, events)

    assert len(token_requests(server)) == 1


async def test_an_expired_session_gets_one_new_token_and_the_request_is_sent_again(
    salesforce: SalesforceDestination, server: LocalHttpServer, fake: FakeSalesforce
) -> None:
    ticket = await salesforce.create(sample_case())
    fake.expire_sessions()
    later, events = with_new_post(sample_case())

    await salesforce.update(later, ticket, events)

    assert len(token_requests(server)) == 2
    assert [(r.method, r.path) for r in server.requests[3:]] == [
        ("PATCH", f"{SF_DATA}/Case/{ticket.remote_id}"),
        ("POST", "/services/oauth2/token"),
        ("PATCH", f"{SF_DATA}/Case/{ticket.remote_id}"),
        ("POST", f"{SF_DATA}/CaseComment"),
    ]
    assert server.requests[-1].headers["Authorization"] == f"Bearer {fake.issued[1]}"


async def test_a_session_refused_again_after_a_new_token_is_rejected(
    salesforce: SalesforceDestination, server: LocalHttpServer, fake: FakeSalesforce
) -> None:
    fake.refuse_sessions = True

    with pytest.raises(DestinationRejectedError, match=r"HTTP 401: .*INVALID_SESSION_ID") as caught:
        await salesforce.create(sample_case())

    assert len(token_requests(server)) == 2
    assert not any(token in str(caught.value) for token in fake.issued)


async def test_wrong_client_credentials_are_rejected_without_showing_them(
    server: LocalHttpServer, http: OutboundClient
) -> None:
    wrong = "sf-wrong-secret-77"
    salesforce = SalesforceDestination(settings(server.base_url, client_secret=wrong), http=http)

    with pytest.raises(DestinationRejectedError, match=r"access token: HTTP 400: .*invalid_client") as caught:
        await salesforce.create(sample_case())

    assert wrong not in str(caught.value)
    assert server.base_url not in str(caught.value)


async def test_update_sets_priority_then_adds_one_private_comment(
    salesforce: SalesforceDestination, server: LocalHttpServer, fake: FakeSalesforce
) -> None:
    ticket = await salesforce.create(sample_case())
    later, events = with_new_post(sample_case())

    assert await salesforce.update(later, ticket, events) == ticket

    patch, comment = server.requests[-2:]
    assert (patch.method, patch.path, json.loads(patch.body)) == (
        "PATCH",
        f"{SF_DATA}/Case/{ticket.remote_id}",
        {"Priority": "High"},
    )
    assert (comment.method, comment.path) == ("POST", f"{SF_DATA}/CaseComment")
    assert json.loads(comment.body) == {
        "ParentId": ticket.remote_id,
        "CommentBody": update_comment(later, events, limit=4000),
        "IsPublished": False,
    }
    assert fake.comments[0]["ParentId"] == ticket.remote_id


async def test_resolution_closes_the_case(salesforce: SalesforceDestination, fake: FakeSalesforce) -> None:
    ticket = await salesforce.create(sample_case())
    done, events = resolved(sample_case())

    await salesforce.update(done, ticket, events)

    assert fake.cases[ticket.remote_id]["Status"] == "Closed"
    assert "resolve by maria via crm" in fake.comments[-1]["CommentBody"]


@pytest.mark.parametrize(("status", "retry_after"), [(429, "2"), (503, "30")])
async def test_throttling_and_outages_are_retried_after_the_wait_asked(
    salesforce: SalesforceDestination, fake: FakeSalesforce, status: int, retry_after: str
) -> None:
    fake.fail_next(1, status, headers={"Retry-After": retry_after})

    with pytest.raises(DestinationUnavailableError, match=f"HTTP {status}") as caught:
        await salesforce.create(sample_case())

    assert caught.value.retry_after_s == float(retry_after)


async def test_a_spent_daily_allowance_is_retried_later_not_dead_lettered(
    salesforce: SalesforceDestination, fake: FakeSalesforce
) -> None:
    await salesforce.create(sample_case("c_first"))
    limit = b'[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]'
    fake.fail_next(1, 403, body=limit)

    with pytest.raises(DestinationUnavailableError, match="daily API allowance") as caught:
        await salesforce.create(sample_case())

    assert caught.value.retry_after_s == REQUEST_LIMIT_WAIT_S


async def test_a_redirect_is_rejected_and_not_followed(
    salesforce: SalesforceDestination, server: LocalHttpServer, fake: FakeSalesforce
) -> None:
    fake.fail_next(1, 301, headers={"Location": "https://login.salesforce.com/"})

    with pytest.raises(DestinationRejectedError, match="redirect"):
        await salesforce.create(sample_case())

    assert len(server.requests) == 1


async def test_hostile_post_text_reaches_salesforce_as_inert_plain_text(
    salesforce: SalesforceDestination, fake: FakeSalesforce
) -> None:
    ticket = await salesforce.create(hostile_case())

    record = fake.cases[ticket.remote_id]
    assert "Text: <script>alert(1)</script> {{7*7}} ${7*7} [ code]<img" in record["Description"]
    assert not any(marker in record["Description"] for marker in HOSTILE_MARKERS)
    assert "\n" not in record["Subject"]
    assert "\r" not in record["Subject"]
