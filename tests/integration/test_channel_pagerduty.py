"""The PagerDuty channel against a local Events API v2 that validates events and folds them by dedup_key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from aiohttp import web

from services.notifier.channels.pagerduty import DIGEST_ITEMS, PagerDutyChannel, trigger_event
from services.notifier.config import PagerDutyChannelSettings
from services.notifier.errors import ChannelConfigError, ChannelError
from services.shared.outbound import OutboundClient
from tests.http_server import LocalHttpServer, serve
from tests.integration.channel_cases import HOSTILE_TEXT, digest, escalation, hostile_digest, hostile_escalation
from tests.integration.channel_cases import alert as sample_alert

PATH = "/v2/enqueue"
ROUTING_KEY = "R0123456789abcdef0123456789abcde"

ESCALATION = escalation("esc-1:pd")
EXPECTED_TRIGGER = {
    "routing_key": ROUTING_KEY,
    "event_action": "trigger",
    "dedup_key": "clamor-case-c-1",
    "payload": {
        "summary": "[HIGH] case c-1 escalated to care (level 1): legal threat from a large account",
        "source": "clamor-test",
        "severity": "error",
        "timestamp": "2026-03-01T12:00:00Z",
        "component": "mastodon",
        "group": "care",
        "class": "escalation",
        "custom_details": {
            "post": "I will sue you if my refund is not here by Friday",
            "author": "ana",
            "followers": 12000,
            "risk_flags": ["legal_threat", "viral"],
            "case_id": "c-1",
            "level": 1,
            "sla_due": "2026-03-01T13:00:00Z",
            "mention_id": "m-1",
        },
    },
    "links": [
        {"href": "https://social.example/@ana/1", "text": "Original post"},
        {"href": "https://clamor.example/ack/c-1?sig=abc", "text": "Acknowledge in Clamor"},
    ],
}


def invalid(*errors: str) -> web.Response:
    return web.json_response(
        {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)}, status=400
    )


@dataclass
class FakeEventsApi:
    """Events API v2 as documented: validation, 202 with the dedup_key, one incident per dedup_key."""

    incidents: dict[str, str] = field(default_factory=dict)
    # Answers (status, headers) given, in order, before events are processed again.
    scripted: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    async def enqueue(self, request: web.Request) -> web.Response:
        if self.scripted:
            status, headers = self.scripted.pop(0)
            return web.json_response(
                {"status": "throttle event", "message": "Requests for this service are arriving too quickly."}
                if status == 429
                else {"status": "error", "message": "internal error"},
                status=status,
                headers=headers,
            )
        event = json.loads(await request.read())
        errors = []
        if len(event.get("routing_key", "")) != 32:
            errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
        action = event.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid (must be one of the following: 'trigger', ...)")
        if action == "trigger":
            payload = event.get("payload", {})
            for name in ("summary", "source", "severity"):
                if not payload.get(name):
                    errors.append(f"'payload.{name}' is missing or blank")
            if payload.get("severity") not in ("critical", "error", "warning", "info"):
                errors.append("'payload.severity' is invalid")
        elif not event.get("dedup_key"):
            errors.append("'dedup_key' is missing or blank")
        if errors:
            return invalid(*errors)
        key = event.get("dedup_key") or f"generated-{len(self.incidents)}"
        if action == "trigger":
            self.incidents.setdefault(key, "triggered")
        elif key in self.incidents:
            self.incidents[key] = {"acknowledge": "acknowledged", "resolve": "resolved"}[action]
        return web.json_response({"status": "success", "message": "Event processed", "dedup_key": key}, status=202)


@pytest.fixture
def api() -> FakeEventsApi:
    return FakeEventsApi()


@pytest.fixture
async def server(api: FakeEventsApi) -> AsyncIterator[LocalHttpServer]:
    async with serve({("POST", PATH): api.enqueue}) as running:
        yield running


def settings(server: LocalHttpServer, **changes: Any) -> PagerDutyChannelSettings:
    values: dict[str, Any] = {
        "kind": "pagerduty",
        "name": "pd",
        "routing_key": ROUTING_KEY,
        "api_base_url": server.base_url,
        "source": "clamor-test",
    }
    return PagerDutyChannelSettings(**(values | changes))


def events(server: LocalHttpServer) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in server.requests]


async def test_trigger_sends_the_documented_event_and_returns_the_dedup_key(
    server: LocalHttpServer, http: OutboundClient
) -> None:
    delivery = await PagerDutyChannel(settings(server), http=http).send(ESCALATION)

    [request] = server.requests
    assert (request.method, request.path, request.headers["Content-Type"]) == ("POST", PATH, "application/json")
    assert events(server) == [EXPECTED_TRIGGER]
    assert delivery.channel == "pd"
    assert delivery.remote_id == "clamor-case-c-1"


async def test_acknowledge_and_resolve_send_the_same_dedup_key_without_payload(
    server: LocalHttpServer, api: FakeEventsApi, http: OutboundClient
) -> None:
    channel = PagerDutyChannel(settings(server), http=http)
    await channel.send(ESCALATION)
    await channel.acknowledge(ESCALATION)
    assert api.incidents == {"clamor-case-c-1": "acknowledged"}
    await channel.resolve(ESCALATION)

    assert events(server)[1:] == [
        {"routing_key": ROUTING_KEY, "event_action": "acknowledge", "dedup_key": "clamor-case-c-1"},
        {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "clamor-case-c-1"},
    ]
    assert api.incidents == {"clamor-case-c-1": "resolved"}


async def test_a_repeated_trigger_folds_into_the_incident_already_open(
    server: LocalHttpServer, api: FakeEventsApi, http: OutboundClient
) -> None:
    channel = PagerDutyChannel(settings(server), http=http)
    first = await channel.send(ESCALATION)
    again = await channel.send(replace(ESCALATION, id="esc-2:pd", level=2))

    assert first.remote_id == again.remote_id == "clamor-case-c-1"
    assert api.incidents == {"clamor-case-c-1": "triggered"}


async def test_throttled_event_waits_as_pagerduty_asks(
    server: LocalHttpServer, api: FakeEventsApi, http: OutboundClient
) -> None:
    api.scripted = [(429, {"Retry-After": "12"})]

    with pytest.raises(ChannelError, match="throttled") as raised:
        await PagerDutyChannel(settings(server), http=http).send(ESCALATION)
    assert raised.value.retry_after_s == 12.0


async def test_throttled_event_without_retry_after_waits_thirty_seconds(
    server: LocalHttpServer, api: FakeEventsApi, http: OutboundClient
) -> None:
    api.scripted = [(429, {})]

    with pytest.raises(ChannelError) as raised:
        await PagerDutyChannel(settings(server), http=http).acknowledge(ESCALATION)
    assert raised.value.retry_after_s == 30.0


async def test_invalid_event_is_a_config_error_listing_pagerdutys_errors(
    server: LocalHttpServer, http: OutboundClient
) -> None:
    with pytest.raises(ChannelConfigError, match=r"invalid event: Length of 'routing_key' is incorrect"):
        await PagerDutyChannel(settings(server, routing_key="too-short"), http=http).send(ESCALATION)


async def test_server_error_is_retried(server: LocalHttpServer, api: FakeEventsApi, http: OutboundClient) -> None:
    api.scripted = [(502, {})]

    with pytest.raises(ChannelError, match="HTTP 502") as raised:
        await PagerDutyChannel(settings(server), http=http).resolve(ESCALATION)
    assert not isinstance(raised.value, ChannelConfigError)


async def test_hostile_text_yields_a_one_line_summary_and_only_https_links(
    server: LocalHttpServer, http: OutboundClient
) -> None:
    hostile = hostile_escalation("esc-1:pd", reason=HOSTILE_TEXT)
    await PagerDutyChannel(settings(server), http=http).send(hostile)

    [event] = events(server)
    assert event["links"] == [{"href": "https://clamor.example/ack/c-1?sig=abc", "text": "Acknowledge in Clamor"}]
    summary = event["payload"]["summary"]
    assert "\r" not in summary
    assert "\n" not in summary
    assert summary.startswith("Refund now Bcc: victim@example.com: <!channel>")
    assert event["payload"]["custom_details"]["author"] == "mallory Bcc: victim@example.com"
    assert "line1 Bcc: victim@example.com" in event["payload"]["custom_details"]["post"]


async def test_no_links_at_all_when_neither_url_is_https(server: LocalHttpServer, http: OutboundClient) -> None:
    await PagerDutyChannel(settings(server), http=http).send(
        replace(ESCALATION, post_url="http://social.example/@ana/1", ack_url="")
    )

    assert "links" not in events(server)[0]


@pytest.mark.parametrize(
    ("severity", "expected"), [("CRITICAL", "critical"), ("HIGH", "error"), ("MEDIUM", "warning"), ("LOW", "info")]
)
def test_severity_maps_to_pagerdutys_levels(severity: str, expected: str) -> None:
    event = trigger_event(replace(ESCALATION, severity=severity), routing_key=ROUTING_KEY, source="clamor")
    assert event["payload"]["severity"] == expected


def test_summary_is_cut_to_pagerdutys_limit() -> None:
    event = trigger_event(replace(ESCALATION, reason="r" * 5000), routing_key=ROUTING_KEY, source="clamor")
    assert len(event["payload"]["summary"]) == 1024


async def test_without_a_client_it_opens_one_within_allow_hosts_and_closes_it(server: LocalHttpServer) -> None:
    channel = PagerDutyChannel(settings(server, allow_hosts=["127.0.0.1"]))
    await channel.send(ESCALATION)
    await channel.aclose()

    assert len(server.requests) == 1


def test_alert_event_leaves_out_what_an_alert_does_not_have() -> None:
    alert = sample_alert("al-1:pd", title="[alert] spike: refunds", reason="5x volume")

    payload = trigger_event(alert, routing_key=ROUTING_KEY, source="clamor")["payload"]

    assert sorted(payload) == ["class", "custom_details", "severity", "source", "summary"]
    assert payload["class"] == "alert"
    assert payload["summary"] == "[alert] spike: refunds: 5x volume"


async def test_a_digest_is_one_trigger_summarised_by_its_title_listing_its_items(
    server: LocalHttpServer, api: FakeEventsApi, http: OutboundClient
) -> None:
    delivery = await PagerDutyChannel(settings(server), http=http).send(digest("dg-1:pd", n=2))

    assert events(server) == [
        {
            "routing_key": ROUTING_KEY,
            "event_action": "trigger",
            "dedup_key": "clamor-group-care",
            "payload": {
                "summary": "2 notifications for care (CRITICAL)",
                "source": "clamor-test",
                "severity": "critical",
                "timestamp": "2026-03-01T12:05:00Z",
                "class": "digest",
                "custom_details": {
                    "count": 2,
                    "items": [
                        {
                            "severity": "HIGH",
                            "title": "[HIGH] case c-1 escalated to care (level 1)",
                            "case_id": "c-1",
                            "ack_url": "https://clamor.example/ack/c-1?sig=abc",
                        },
                        {
                            "severity": "CRITICAL",
                            "title": "[CRITICAL] case c-2 escalated to care (level 1)",
                            "case_id": "c-2",
                            "ack_url": "https://clamor.example/ack/c-2?sig=abc",
                        },
                    ],
                },
            },
        }
    ]
    assert api.incidents == {"clamor-group-care": "triggered"}
    assert delivery.remote_id == "clamor-group-care"


def test_a_digest_without_a_dedup_key_uses_its_id_and_lists_a_bounded_number_of_items() -> None:
    event = trigger_event(digest("dg-1:pd", n=200, dedup_key=""), routing_key=ROUTING_KEY, source="clamor")

    assert event["dedup_key"] == "dg-1:pd"
    details = event["payload"]["custom_details"]
    assert details["count"] == 200
    assert [item["case_id"] for item in details["items"]] == [f"c-{n}" for n in range(1, DIGEST_ITEMS + 1)]
    assert details["more"] == 200 - DIGEST_ITEMS
    assert len(json.dumps(event).encode()) < 64 * 1024


async def test_a_hostile_digest_yields_one_line_text_and_only_https_links(
    server: LocalHttpServer, http: OutboundClient
) -> None:
    await PagerDutyChannel(settings(server), http=http).send(hostile_digest("dg-2:pd"))

    [event] = events(server)
    payload = event["payload"]
    assert payload["summary"] == (
        "<!channel> <script>alert(1)</script> [bank](https://evil.example) Bcc: victim@example.com"
    )
    assert "links" not in event
    items = payload["custom_details"]["items"]
    assert [item["title"] for item in items] == [
        f"[{severity}] c-{n} <!here> refund now Bcc: victim@example.com"
        for n, severity in ((1, "HIGH"), (2, "CRITICAL"), (3, "MEDIUM"))
    ]
    assert [item["ack_url"] for item in items] == [
        "https://clamor.example/ack/c-1?sig=abc",
        "https://clamor.example/ack/c-2?sig=abc",
        "",
    ]
    assert HOSTILE_TEXT not in json.dumps(event)
