"""The webhook channel against a local receiver: a CloudEvents 1.0 JSON event, signed per Standard Webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from services.notifier.channels.webhook import WebhookChannel
from services.notifier.config import WebhookChannelSettings
from services.notifier.errors import ChannelConfigError, ChannelError
from services.shared.outbound import OutboundClient
from services.shared.standard_webhooks import verify
from tests.http_server import LocalHttpServer, serve
from tests.integration.channel_cases import (
    CASE_C42,
    HOSTILE_TEXT,
    digest,
    escalation,
    hostile_digest,
    hostile_escalation,
)
from tests.integration.channel_cases import alert as sample_alert
from tests.integration.source_cases import answering

HOOK_PATH = "/hooks/clamor"
OLD_KEY = b"old-key-for-clamor-webhooks-0001"
NEW_KEY = b"new-key-for-clamor-webhooks-0002"
SECRETS = ["whsec_" + base64.b64encode(OLD_KEY).decode(), "whsec_" + base64.b64encode(NEW_KEY).decode()]
NOW = 1_772_370_000  # 2026-03-01T13:00:00Z
# The sender's clock: a fraction into NOW's second, which the signature's timestamp rounds down to NOW.
SIGNED_AT = datetime.fromtimestamp(NOW + 0.9, UTC)

MESSAGE = escalation("esc-1:hook", **CASE_C42 | {"raised_at": datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)})

EXPECTED_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "esc-1:hook",
    "source": "clamor/notifier",
    "type": "io.clamor.notification.escalation",
    "time": "2026-03-01T12:00:05Z",
    "datacontenttype": "application/json",
    "data": {
        "title": "[HIGH] case c-42 escalated to social-care (level 2)",
        "severity": "HIGH",
        "risk_flags": ["legal_threat", "outage"],
        "reason": "no first response within 30 minutes",
        "post": {
            "text": "Acme ate my deposit & nobody answers. Lawyers next.",
            "url": "https://social.example/@angry_ann/1",
            "author": {"handle": "angry_ann", "followers": 12345},
            "platform": "mastodon",
        },
        "case": {"id": "c-42", "team": "social-care", "level": 2, "sla_due": "2026-03-01T13:30:00Z"},
        "ack_url": "https://clamor.example/ack?case=c-42&sig=abc",
        "dedup_key": "clamor-case-c-42",
    },
}


def settings(url: str, *, allow_hosts: tuple[str, ...] = ()) -> WebhookChannelSettings:
    return WebhookChannelSettings(kind="webhook", name="hook", url=url, secrets=SECRETS, allow_hosts=list(allow_hosts))


def channel(server: LocalHttpServer, http: OutboundClient) -> WebhookChannel:
    return WebhookChannel(settings(server.url(HOOK_PATH)), http=http, clock=lambda: SIGNED_AT)


def by_hand(key: bytes, msg_id: str, body: bytes) -> str:
    digest = hmac.new(key, f"{msg_id}.{NOW}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


async def test_posts_a_cloudevent_signed_with_every_secret(http: OutboundClient) -> None:
    async with serve({("POST", HOOK_PATH): answering(b"", status=204)}) as server:
        delivery = await channel(server, http).send(MESSAGE)
    (request,) = server.requests
    assert json.loads(request.body) == EXPECTED_EVENT
    assert request.headers["Content-Type"] == "application/cloudevents+json"
    assert request.headers["webhook-id"] == "esc-1:hook"
    assert request.headers["webhook-timestamp"] == str(NOW)
    assert request.headers["webhook-signature"] == (
        f"{by_hand(OLD_KEY, 'esc-1:hook', request.body)} {by_hand(NEW_KEY, 'esc-1:hook', request.body)}"
    )
    verify(SECRETS[1:], request.headers, request.body, now=NOW)
    assert delivery.detail == "HTTP 204"


async def test_an_alert_is_typed_as_one_and_timed_at_sending_when_it_has_no_raise_time(http: OutboundClient) -> None:
    alert = sample_alert("al-1:hook")
    async with serve({("POST", HOOK_PATH): answering(b"{}", status=200)}) as server:
        await channel(server, http).send(alert)
    event = json.loads(server.requests[0].body)
    assert event["type"] == "io.clamor.notification.alert"
    assert event["time"] == "2026-03-01T13:00:00Z"
    assert event["data"]["case"] == {"id": "", "team": "", "level": 0, "sla_due": None}


async def test_hostile_text_is_carried_verbatim_as_data_and_signed(http: OutboundClient) -> None:
    hostile = hostile_escalation("esc-2:hook", title="t", author_handle="evil\nX-Injected: 1")
    async with serve({("POST", HOOK_PATH): answering(b"", status=202)}) as server:
        await channel(server, http).send(hostile)
    (request,) = server.requests
    post = json.loads(request.body)["data"]["post"]
    assert post["text"] == HOSTILE_TEXT
    assert post["author"]["handle"] == "evil\nX-Injected: 1"
    assert post["url"] == "javascript:alert(1)"
    assert "X-Injected" not in request.headers
    verify(SECRETS, request.headers, request.body, now=NOW)


async def test_a_digest_is_one_event_whose_data_carries_every_item(http: OutboundClient) -> None:
    async with serve({("POST", HOOK_PATH): answering(b"", status=202)}) as server:
        await channel(server, http).send(digest("dg-1:hook", n=3))
    (request,) = server.requests
    event = json.loads(request.body)
    assert request.headers["webhook-id"] == "dg-1:hook"
    verify(SECRETS, request.headers, request.body, now=NOW)
    assert (event["id"], event["type"], event["time"]) == (
        "dg-1:hook",
        "io.clamor.notification.digest",
        "2026-03-01T12:05:00Z",
    )
    data = event["data"]
    assert (data["title"], data["severity"], data["dedup_key"]) == (
        "3 notifications for care (CRITICAL)",
        "CRITICAL",
        "clamor-group-care",
    )
    assert [(item["id"], item["kind"], item["case"]["id"], item["severity"]) for item in data["items"]] == [
        ("esc-1:hook", "escalation", "c-1", "HIGH"),
        ("esc-2:hook", "escalation", "c-2", "CRITICAL"),
        ("esc-3:hook", "escalation", "c-3", "MEDIUM"),
    ]
    assert data["items"][1] == {
        "id": "esc-2:hook",
        "kind": "escalation",
        "raised_at": "2026-03-01T12:00:00Z",
        "title": "[CRITICAL] case c-2 escalated to care (level 1)",
        "severity": "CRITICAL",
        "risk_flags": ["legal_threat", "viral"],
        "reason": "legal threat from a large account",
        "post": {
            "text": "I will sue you if my refund is not here by Friday",
            "url": "https://social.example/@ana/2",
            "author": {"handle": "ana", "followers": 12000},
            "platform": "mastodon",
        },
        "case": {"id": "c-2", "team": "care", "level": 1, "sla_due": "2026-03-01T13:00:00Z"},
        "ack_url": "https://clamor.example/ack/c-2?sig=abc",
        "dedup_key": "clamor-case-c-2",
    }


async def test_a_single_message_carries_no_items(http: OutboundClient) -> None:
    async with serve({("POST", HOOK_PATH): answering(b"", status=202)}) as server:
        await channel(server, http).send(MESSAGE)
    assert "items" not in json.loads(server.requests[0].body)["data"]


async def test_a_hostile_digest_is_carried_verbatim_as_data_and_signed(http: OutboundClient) -> None:
    hostile = hostile_digest("dg-2:hook")
    async with serve({("POST", HOOK_PATH): answering(b"", status=202)}) as server:
        await channel(server, http).send(hostile)
    (request,) = server.requests
    data = json.loads(request.body)["data"]
    assert data["title"] == hostile.title
    assert [item["post"]["text"] for item in data["items"]] == [HOSTILE_TEXT] * 3
    assert [item["post"]["url"] for item in data["items"]] == ["javascript:alert(1)"] * 3
    assert data["items"][2]["ack_url"] == "javascript:alert(2)"
    assert "Bcc" not in request.headers
    verify(SECRETS, request.headers, request.body, now=NOW)


async def test_410_gone_is_a_configuration_error(http: OutboundClient) -> None:
    async with serve({("POST", HOOK_PATH): answering(b"", status=410)}) as server:
        with pytest.raises(ChannelConfigError, match="endpoint gone"):
            await channel(server, http).send(MESSAGE)


@pytest.mark.parametrize("status", [429, 503, 408])
async def test_throttling_and_server_errors_are_retried_after_retry_after(http: OutboundClient, status: int) -> None:
    busy = answering(b"busy", status=status, content_type="text/plain", headers={"Retry-After": "120"})
    async with serve({("POST", HOOK_PATH): busy}) as server:
        with pytest.raises(ChannelError, match=f"HTTP {status}") as caught:
            await channel(server, http).send(MESSAGE)
    assert caught.value.retry_after_s == 120.0


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_other_refusals_are_configuration_errors(http: OutboundClient, status: int) -> None:
    async with serve({("POST", HOOK_PATH): answering(b"bad signature", status=status, content_type="text/plain")}) as s:
        with pytest.raises(ChannelConfigError, match="bad signature"):
            await channel(s, http).send(MESSAGE)


async def redirect(_: web.Request) -> web.StreamResponse:
    raise web.HTTPTemporaryRedirect("/elsewhere")


async def test_a_redirect_is_not_followed(http: OutboundClient) -> None:
    routes = {("POST", HOOK_PATH): redirect, ("POST", "/elsewhere"): answering(b"", status=202)}
    async with serve(routes) as server:
        own_client = WebhookChannel(settings(server.url(HOOK_PATH), allow_hosts=("127.0.0.1",)))
        try:
            with pytest.raises(ChannelConfigError, match="redirects"):
                await own_client.send(MESSAGE)
        finally:
            await own_client.aclose()
    assert [request.path for request in server.requests] == [HOOK_PATH]


async def test_a_redirect_followed_by_a_handed_in_client_still_fails(http: OutboundClient) -> None:
    routes = {("POST", HOOK_PATH): redirect, ("POST", "/elsewhere"): answering(b"", status=202)}
    async with serve(routes) as server:
        with pytest.raises(ChannelConfigError, match="redirect"):
            await channel(server, http).send(MESSAGE)


async def test_a_3xx_without_location_is_a_failure(http: OutboundClient) -> None:
    async with serve({("POST", HOOK_PATH): answering(b"", status=300)}) as server:
        with pytest.raises(ChannelConfigError, match="HTTP 300"):
            await channel(server, http).send(MESSAGE)


async def test_unreachable_receiver_is_retried_without_naming_the_url(http: OutboundClient) -> None:
    async with serve({}) as closed:
        url = closed.url("/hooks/clamor?token=urlsecret42")
    with pytest.raises(ChannelError) as caught:
        await WebhookChannel(settings(url), http=http).send(MESSAGE)
    assert "urlsecret42" not in str(caught.value)


async def test_a_url_the_guard_refuses_is_a_configuration_error() -> None:
    refused = WebhookChannel(settings("http://169.254.169.254/latest/meta-data/"))
    try:
        with pytest.raises(ChannelConfigError, match="a link-local"):
            await refused.send(MESSAGE)
    finally:
        await refused.aclose()


def test_a_secret_that_is_not_base64_is_refused_at_construction() -> None:
    bad = WebhookChannelSettings(kind="webhook", name="hook", url="https://hooks.example/x", secrets=["whsec_no!"])
    with pytest.raises(ChannelConfigError, match="secrets"):
        WebhookChannel(bad)
