"""The ServiceNow destination against a local instance: correlation id lookup, work notes, resolution."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest

from services.router.delivery.destinations.base import DestinationRejectedError, DestinationUnavailableError, Ticket
from services.router.delivery.destinations.render import description, update_comment
from services.router.delivery.destinations.servicenow import ServiceNowDestination
from services.router.delivery.destinations.settings import ServiceNowDestinationSettings
from services.shared.outbound import OutboundClient
from tests.http_server import LocalHttpServer
from tests.integration.case_samples import (
    CASE_ID,
    HOSTILE_MARKERS,
    HOSTILE_TEXT,
    hostile_case,
    resolved,
    sample_case,
    with_new_post,
)
from tests.integration.crm_servers import FakeServiceNow, serve_crm

USER = "clamor.integration"
PASSWORD = "sn-pass-4e9a7c"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
TABLE = "/api/now/table/incident"
CALLER = "6816f79cc0a8016401c5a33be04be441"


def settings(
    base_url: str, *, username: str = USER, password: str = PASSWORD, token: str = ""
) -> ServiceNowDestinationSettings:
    return ServiceNowDestinationSettings(
        kind="servicenow",
        name="snow-itsm",
        instance_url=base_url,
        username="" if token else username,
        password="" if token else password,
        token=token,
        caller_id=CALLER,
        allow_hosts=["127.0.0.1"],
    )


@pytest.fixture
def fake() -> FakeServiceNow:
    return FakeServiceNow(username=USER, password=PASSWORD)


@pytest.fixture
async def server(fake: FakeServiceNow) -> AsyncIterator[LocalHttpServer]:
    async with serve_crm(fake) as server:
        yield server


@pytest.fixture
def servicenow(server: LocalHttpServer, http: OutboundClient) -> ServiceNowDestination:
    return ServiceNowDestination(settings(server.base_url), http=http)


async def test_create_queries_the_correlation_id_then_inserts_an_incident(
    servicenow: ServiceNowDestination, server: LocalHttpServer, fake: FakeServiceNow
) -> None:
    case = sample_case()

    ticket = await servicenow.create(case)

    query, insert = server.requests
    assert (query.method, query.path) == ("GET", TABLE)
    assert query.query == {
        "sysparm_query": f"correlation_id={CASE_ID}",
        "sysparm_limit": "1",
        "sysparm_fields": "sys_id,number",
    }
    assert (insert.method, insert.path, insert.query) == ("POST", TABLE, {"sysparm_fields": "sys_id,number"})
    assert query.headers["Authorization"] == insert.headers["Authorization"] == BASIC
    assert json.loads(insert.body) == {
        "short_description": "[HIGH] billing from @ana_b on mastodon: "
        "Charged twice for my March bill and support won't answer. My lawyer will hear about this.",
        "description": description(case, limit=4000),
        "correlation_id": CASE_ID,
        "correlation_display": "Clamor",
        "urgency": "1",
        "impact": "2",
        "caller_id": CALLER,
    }
    sys_id = f"{1:032x}"
    assert ticket == Ticket(
        remote_id=sys_id, url=f"{server.base_url}/nav_to.do?uri=incident.do%3Fsys_id%3D{sys_id}", created=True
    )
    assert fake.incidents[sys_id]["number"] == "INC0010001"


async def test_create_returns_the_incident_the_instance_already_holds(
    servicenow: ServiceNowDestination, server: LocalHttpServer, fake: FakeServiceNow
) -> None:
    existing = fake.add_incident(CASE_ID)

    ticket = await servicenow.create(sample_case())

    assert ticket.remote_id == existing
    assert [r.method for r in server.requests] == ["GET"]


async def test_creating_twice_makes_one_incident(servicenow: ServiceNowDestination, fake: FakeServiceNow) -> None:
    first = await servicenow.create(sample_case())
    second = await servicenow.create(sample_case())

    # The second create found the first one's ticket: it says so, and the worker syncs what it may lack.
    assert (first.remote_id, first.created, second.created) == (second.remote_id, True, False)
    assert len(fake.incidents) == 1


async def test_a_bearer_token_authenticates_instead_of_basic_auth(http: OutboundClient) -> None:
    fake = FakeServiceNow(token="sn-oauth-token-31")
    async with serve_crm(fake) as server:
        await ServiceNowDestination(settings(server.base_url, token="sn-oauth-token-31"), http=http).create(
            sample_case()
        )

    assert {r.headers["Authorization"] for r in server.requests} == {"Bearer sn-oauth-token-31"}


async def test_a_case_id_that_would_change_the_query_is_refused_without_a_request(
    servicenow: ServiceNowDestination, server: LocalHttpServer
) -> None:
    with pytest.raises(DestinationRejectedError, match="cannot be used in a query"):
        await servicenow.create(sample_case("c_1^ORactive=true"))

    assert server.requests == []


async def test_update_patches_work_notes_urgency_and_impact(
    servicenow: ServiceNowDestination, server: LocalHttpServer, fake: FakeServiceNow
) -> None:
    ticket = await servicenow.create(sample_case())
    later, events = with_new_post(sample_case())

    assert await servicenow.update(later, ticket, events) == ticket

    patch = server.requests[-1]
    assert (patch.method, patch.path, patch.query) == (
        "PATCH",
        f"{TABLE}/{ticket.remote_id}",
        {"sysparm_fields": "sys_id,number"},
    )
    assert patch.headers["Authorization"] == BASIC
    assert json.loads(patch.body) == {"urgency": "1", "impact": "1", "work_notes": update_comment(later, events)}
    assert fake.work_notes[ticket.remote_id] == [update_comment(later, events)]


async def test_resolution_resolves_the_incident_with_a_code_and_notes(
    servicenow: ServiceNowDestination, fake: FakeServiceNow
) -> None:
    ticket = await servicenow.create(sample_case())
    done, events = resolved(sample_case())

    await servicenow.update(done, ticket, events)

    incident = fake.incidents[ticket.remote_id]
    assert (incident["state"], incident["close_code"]) == ("6", "Resolved by caller")
    assert "resolve by maria via crm" in incident["close_notes"]
    assert len(fake.work_notes[ticket.remote_id]) == 1


async def test_resolution_without_events_still_gives_close_notes(
    servicenow: ServiceNowDestination, fake: FakeServiceNow
) -> None:
    ticket = await servicenow.create(sample_case())
    done, _ = resolved(sample_case())

    await servicenow.update(done, ticket, [])

    assert fake.incidents[ticket.remote_id]["close_notes"] == f"Clamor case {CASE_ID} was resolved."
    assert fake.work_notes[ticket.remote_id] == []


@pytest.mark.parametrize(("status", "retry_after"), [(429, "2"), (503, "11")])
async def test_throttling_and_outages_are_retried_after_the_wait_asked(
    servicenow: ServiceNowDestination, fake: FakeServiceNow, status: int, retry_after: str
) -> None:
    fake.fail_next(1, status, headers={"Retry-After": retry_after})

    with pytest.raises(DestinationUnavailableError, match=f"HTTP {status}") as caught:
        await servicenow.create(sample_case())

    assert caught.value.retry_after_s == float(retry_after)


async def test_wrong_credentials_are_rejected_without_showing_them(
    server: LocalHttpServer, http: OutboundClient
) -> None:
    wrong = "sn-wrong-pass-12"
    servicenow = ServiceNowDestination(settings(server.base_url, username=USER, password=wrong), http=http)

    with pytest.raises(DestinationRejectedError, match=r"HTTP 401: .*User Not Authenticated") as caught:
        await servicenow.create(sample_case())

    assert wrong not in str(caught.value)
    assert base64.b64encode(f"{USER}:{wrong}".encode()).decode() not in str(caught.value)


async def test_a_redirect_is_rejected_and_not_followed(
    servicenow: ServiceNowDestination, server: LocalHttpServer, fake: FakeServiceNow
) -> None:
    fake.fail_next(1, 302, headers={"Location": "/login.do"})

    with pytest.raises(DestinationRejectedError, match="redirect"):
        await servicenow.create(sample_case())

    assert len(server.requests) == 1


async def test_hostile_post_text_reaches_servicenow_as_inert_plain_text(
    servicenow: ServiceNowDestination, fake: FakeServiceNow
) -> None:
    ticket = await servicenow.create(hostile_case())
    later, events = with_new_post(hostile_case(), text=HOSTILE_TEXT)

    await servicenow.update(later, ticket, events)

    incident = fake.incidents[ticket.remote_id]
    assert "\n" not in incident["short_description"]
    for text in (incident["description"], fake.work_notes[ticket.remote_id][0]):
        assert "Text: <script>alert(1)</script> {{7*7}} ${7*7} [ code]<img src=x onerror=alert(2)>[/ code]" in text
        assert not any(marker in text for marker in HOSTILE_MARKERS)
