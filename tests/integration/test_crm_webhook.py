"""The webhook destination against a local receiver: CloudEvents signed per Standard Webhooks, and its vectors."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from services.router.delivery.destinations.base import (
    DestinationGoneError,
    DestinationRejectedError,
    DestinationUnavailableError,
    Ticket,
)
from services.router.delivery.destinations.settings import WebhookDestinationSettings
from services.router.delivery.destinations.webhook import WebhookDestination
from services.router.domain import case_record
from services.shared.outbound import OutboundClient
from services.shared.standard_webhooks import WebhookVerificationError, verify
from tests.http_server import LocalHttpServer, RecordedRequest, serve
from tests.integration.case_samples import CASE_ID, HOSTILE_TEXT, hostile_case, resolved, sample_case, with_new_post
from tests.integration.crm_servers import HOOK_PATH, FakeWebhookReceiver, serve_crm
from tests.integration.source_cases import outbound
from tests.support.clock import ManualClock

OLD = "whsec_" + base64.b64encode(b"old-key-for-clamor-router-0001").decode()
NEW = "whsec_" + base64.b64encode(b"new-key-for-clamor-router-0002").decode()
OTHER = "whsec_" + base64.b64encode(b"somebody-else-s-key-000000003").decode()
NOW = 1_772_370_000  # 2026-03-01T13:00:00Z
# The sender's clock: a fraction into NOW's second, which the signature's timestamp rounds down to NOW.
SIGNED_AT = datetime.fromtimestamp(NOW + 0.9, UTC)


def settings(url: str) -> WebhookDestinationSettings:
    return WebhookDestinationSettings(
        kind="webhook", name="ops-hook", url=url, secrets=[OLD, NEW], allow_hosts=["127.0.0.1"]
    )


@pytest.fixture
def receiver() -> FakeWebhookReceiver:
    # The receiver already moved to the new key: rotation must not break delivery.
    return FakeWebhookReceiver(secrets=[NEW], now=NOW)


@pytest.fixture
async def server(receiver: FakeWebhookReceiver) -> AsyncIterator[LocalHttpServer]:
    async with serve_crm(receiver) as server:
        yield server


@pytest.fixture
def webhook(server: LocalHttpServer, http: OutboundClient) -> WebhookDestination:
    return WebhookDestination(settings(server.url(HOOK_PATH)), http=http, clock=lambda: SIGNED_AT)


async def sent_create(webhook: WebhookDestination, server: LocalHttpServer) -> RecordedRequest:
    await webhook.create(sample_case())
    return server.requests[-1]


async def test_create_posts_the_case_as_a_signed_cloudevent(
    webhook: WebhookDestination, server: LocalHttpServer, receiver: FakeWebhookReceiver
) -> None:
    case = sample_case()

    ticket = await webhook.create(case)

    (request,) = server.requests
    assert (request.method, request.path) == ("POST", HOOK_PATH)
    assert request.headers["Content-Type"] == "application/cloudevents+json"
    assert request.headers["webhook-id"] == f"{CASE_ID}.created"
    assert request.headers["webhook-timestamp"] == str(NOW)
    assert len(request.headers["webhook-signature"].split()) == 2
    assert json.loads(request.body) == {
        "specversion": "1.0",
        "id": f"{CASE_ID}.created",
        "source": "clamor/router",
        "type": "io.clamor.case.created",
        "subject": CASE_ID,
        "time": "2026-03-01T12:00:00Z",
        "datacontenttype": "application/json",
        "data": case_record(case),
    }
    assert json.loads(request.body)["data"]["mentions"][0]["mention"]["author"]["handle"] == "ana_b"
    assert ticket == Ticket(remote_id=CASE_ID)
    assert list(receiver.events) == [f"{CASE_ID}.created"]


async def test_an_update_carries_the_new_events_under_an_id_named_by_the_history_length(
    webhook: WebhookDestination, server: LocalHttpServer
) -> None:
    later, events = with_new_post(sample_case())

    assert await webhook.update(later, Ticket(remote_id=CASE_ID), events) == Ticket(remote_id=CASE_ID)

    event = json.loads(server.requests[-1].body)
    assert server.requests[-1].headers["webhook-id"] == event["id"] == f"{CASE_ID}.4"
    assert (event["type"], event["time"]) == ("io.clamor.case.updated", "2026-03-01T12:30:05Z")
    assert event["data"]["state"] == "CASE_STATE_ESCALATED"
    assert event["data"]["events"] == [
        {"at": "2026-03-01T12:30:00Z", "kind": "post added", "detail": "mention reddit:t3_2"},
        {
            "at": "2026-03-01T12:30:05Z",
            "kind": "escalated",
            "detail": "level 2 to escalations: first response SLA breached",
        },
    ]


async def test_a_retried_delivery_keeps_its_id_and_body_and_the_receiver_keeps_one(
    webhook: WebhookDestination, server: LocalHttpServer, receiver: FakeWebhookReceiver
) -> None:
    first = await sent_create(webhook, server)
    again = await sent_create(webhook, server)

    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    assert first.body == again.body
    assert len(receiver.events) == 1


async def test_each_update_gets_its_own_id(webhook: WebhookDestination, receiver: FakeWebhookReceiver) -> None:
    grown, events = with_new_post(sample_case())
    done, more = resolved(grown)

    await webhook.update(grown, Ticket(CASE_ID), events)
    await webhook.update(done, Ticket(CASE_ID), more)

    assert list(receiver.events) == [f"{CASE_ID}.4", f"{CASE_ID}.5"]
    assert receiver.events[f"{CASE_ID}.5"]["data"]["state"] == "CASE_STATE_RESOLVED"


# --- Standard Webhooks verification vectors, on what was actually sent ---------------------------


async def test_vector_valid_signature_verifies(webhook: WebhookDestination, server: LocalHttpServer) -> None:
    request = await sent_create(webhook, server)

    verify([OLD, NEW], request.headers, request.body, now=NOW)


@pytest.mark.parametrize("known", [[OLD], [NEW]], ids=["old-only", "new-only"])
async def test_vector_a_receiver_knowing_either_rotated_secret_verifies(
    webhook: WebhookDestination, server: LocalHttpServer, known: list[str]
) -> None:
    request = await sent_create(webhook, server)

    verify(known, request.headers, request.body, now=NOW)


async def test_vector_an_unrelated_secret_does_not_verify(webhook: WebhookDestination, server: LocalHttpServer) -> None:
    request = await sent_create(webhook, server)

    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify([OTHER], request.headers, request.body, now=NOW)


async def test_vector_a_tampered_body_is_rejected(webhook: WebhookDestination, server: LocalHttpServer) -> None:
    request = await sent_create(webhook, server)
    tampered = request.body.replace(b'"severity":"SEVERITY_HIGH"', b'"severity":"SEVERITY_LOW"')

    assert tampered != request.body
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify([NEW], request.headers, tampered, now=NOW)


async def test_vector_a_stale_timestamp_is_rejected(webhook: WebhookDestination, server: LocalHttpServer) -> None:
    request = await sent_create(webhook, server)

    with pytest.raises(WebhookVerificationError, match="stale"):
        verify([NEW], request.headers, request.body, now=NOW + 301)


async def test_a_receiver_refusing_the_signature_is_a_rejection(
    webhook: WebhookDestination, receiver: FakeWebhookReceiver
) -> None:
    receiver.now = NOW + 3600  # its clock says our timestamp is an hour old

    with pytest.raises(DestinationRejectedError, match="HTTP 401: bad signature"):
        await webhook.create(sample_case())


# --- Answers -----------------------------------------------------------------------------------


async def test_410_gone_means_the_destination_must_be_disabled(
    webhook: WebhookDestination, receiver: FakeWebhookReceiver
) -> None:
    receiver.fail_next(1, 410)

    with pytest.raises(DestinationGoneError, match="HTTP 410"):
        await webhook.create(sample_case())


async def test_a_302_is_rejected_and_not_followed(
    webhook: WebhookDestination, server: LocalHttpServer, receiver: FakeWebhookReceiver
) -> None:
    receiver.fail_next(1, 302, headers={"Location": "/elsewhere"})

    with pytest.raises(DestinationRejectedError, match="redirect"):
        await webhook.create(sample_case())

    assert [r.path for r in server.requests] == [HOOK_PATH]


async def test_a_3xx_without_location_is_rejected(webhook: WebhookDestination, receiver: FakeWebhookReceiver) -> None:
    receiver.fail_next(1, 300)

    with pytest.raises(DestinationRejectedError, match="redirect"):
        await webhook.create(sample_case())


@pytest.mark.parametrize(("status", "retry_after"), [(429, "2"), (503, "2"), (408, "60")])
async def test_throttling_and_outages_are_retried_after_the_wait_asked(
    webhook: WebhookDestination, receiver: FakeWebhookReceiver, status: int, retry_after: str
) -> None:
    receiver.fail_next(1, status, headers={"Retry-After": retry_after})

    with pytest.raises(DestinationUnavailableError, match=f"HTTP {status}") as caught:
        await webhook.create(sample_case())

    assert caught.value.retry_after_s == float(retry_after)


async def test_retry_after_as_an_http_date_is_honoured(server: LocalHttpServer, receiver: FakeWebhookReceiver) -> None:
    # The date counts from when the answer came, by the client's clock: exact under a manual one.
    clock = ManualClock()
    when = clock() + timedelta(seconds=120)
    receiver.fail_next(1, 503, headers={"Retry-After": format_datetime(when, usegmt=True)})

    async with outbound(clock=clock) as http:
        webhook = WebhookDestination(settings(server.url(HOOK_PATH)), http=http, clock=lambda: SIGNED_AT)
        with pytest.raises(DestinationUnavailableError) as caught:
            await webhook.create(sample_case())

    assert caught.value.retry_after_s == 120


async def test_errors_never_show_a_token_in_the_url(http: OutboundClient) -> None:
    async with serve({}) as missing:
        hook = WebhookDestination(settings(missing.url("/hooks/x?token=urlsecret42")), http=http)
        with pytest.raises(DestinationRejectedError, match="HTTP 404") as refused:
            await hook.create(sample_case())
    closed = WebhookDestination(settings(missing.url("/hooks/x?token=urlsecret42")), http=http)
    with pytest.raises(DestinationUnavailableError) as unreachable:
        await closed.create(sample_case())

    assert "urlsecret42" not in str(refused.value) + str(unreachable.value)


async def test_hostile_text_travels_verbatim_as_data_and_signed(
    webhook: WebhookDestination, server: LocalHttpServer
) -> None:
    await webhook.create(hostile_case())

    request = server.requests[-1]
    mention = json.loads(request.body)["data"]["mentions"][0]["mention"]
    assert mention["text"] == HOSTILE_TEXT
    assert mention["author"]["handle"] == "mallory\r\nX-Injected: 1"
    assert "X-Injected" not in request.headers
    verify([NEW], request.headers, request.body, now=NOW)
