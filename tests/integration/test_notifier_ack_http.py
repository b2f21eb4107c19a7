"""AckServer as a real HTTP server: acknowledgement links and PagerDuty V3 webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from clamor.v1 import case_pb2
from services.notifier.ack_links import AckLinks
from services.notifier.config import AckSettings
from services.notifier.http import MAX_BODY_BYTES, AckServer
from services.shared.errors import TransientError

LINK_SECRET = "link-secret-for-tests-0123"
OLD_PD_SECRET = "pd-old-secret-for-tests"
NEW_PD_SECRET = "pd-new-secret-for-tests"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TTL_S = 3600.0
CASE = "c_0123abcd4567ef89"
ACKNOWLEDGE = case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE
RESOLVE = case_pb2.CASE_ACTION_KIND_RESOLVE


@dataclass(frozen=True)
class Call:
    case_id: str
    kind: case_pb2.CaseActionKind.ValueType
    actor: str
    via: str
    request_id: str


@dataclass
class RecordingSink:
    """Stands in for the publisher of case actions: records each call, or fails as told."""

    calls: list[Call] = field(default_factory=list)
    fail_with: Exception | None = None

    async def __call__(
        self, case_id: str, kind: case_pb2.CaseActionKind.ValueType, *, actor: str, via: str, request_id: str
    ) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        self.calls.append(Call(case_id, kind, actor, via, request_id))
        return f"{case_id}:{kind}:{request_id}"


@dataclass
class Endpoint:
    client: httpx.AsyncClient
    sink: RecordingSink
    links: AckLinks

    def path(self, case_id: str = CASE, *, made_at: datetime = NOW) -> str:
        return "/ack/" + self.links.token_for(case_id, now=made_at)

    async def pagerduty(self, body: bytes, signature: str | None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-PagerDuty-Signature"] = signature
        return await self.client.post("/pagerduty", content=body, headers=headers)


def pd_signature(body: bytes, *secrets: str) -> str:
    return ",".join("v1=" + hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets)


def pd_event(
    event_type: str = "incident.acknowledged",
    *,
    incident_key: str = f"clamor-case-{CASE}",
    agent: dict[str, Any] | None = None,
) -> bytes:
    """A V3 webhook body shaped like the example in PagerDuty's webhooks overview."""
    agent = {"id": "PLH1HKV", "type": "user_reference", "summary": "Ana Responder"} if agent is None else agent
    event = {
        "event": {
            "id": "5ac64822-4adc-4fda-ade0-410becf0de4f",
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": "2025-03-01T12:00:05.169Z",
            "agent": agent or None,
            "client": None,
            "data": {
                "id": "PGR0VU2",
                "type": "incident",
                "number": 2,
                "status": event_type.removeprefix("incident."),
                "incident_key": incident_key,
                "title": "Complaint case",
            },
        }
    }
    return json.dumps(event).encode()


def make_server(sink: RecordingSink, links: AckLinks, *, pd_secrets: list[str]) -> AckServer:
    settings = AckSettings(
        enabled=True,
        host="127.0.0.1",
        port=0,
        public_url="https://clamor.example.com",
        secret=LINK_SECRET,
        link_ttl_s=TTL_S,
        pagerduty_webhook_secrets=pd_secrets,
    )
    return AckServer(settings, links=links, sink=sink, clock=lambda: NOW)


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    sink = RecordingSink()
    links = AckLinks(secret=LINK_SECRET, public_url="https://clamor.example.com", ttl_s=TTL_S)
    server = make_server(sink, links, pd_secrets=[OLD_PD_SECRET, NEW_PD_SECRET])
    port = await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield Endpoint(client, sink, links)
    finally:
        await server.stop()


async def test_healthz_is_ok(endpoint: Endpoint) -> None:
    response = await endpoint.client.get("/healthz")

    assert (response.status_code, response.text) == (200, "ok")


async def test_get_shows_the_case_and_a_form_that_posts_back_and_records_nothing(endpoint: Endpoint) -> None:
    response = await endpoint.client.get(endpoint.path())

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert CASE in response.text
    assert '<form method="post">' in response.text
    assert 'name="name"' in response.text
    assert endpoint.sink.calls == []


async def test_pages_forbid_caching_referrers_sniffing_scripts_and_framing(endpoint: Endpoint) -> None:
    response = await endpoint.client.get(endpoint.path())

    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = response.headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "style-src 'unsafe-inline'", "form-action 'self'", "frame-ancestors"):
        assert directive in policy


async def test_post_records_one_acknowledge_via_link(endpoint: Endpoint) -> None:
    response = await endpoint.client.post(endpoint.path())

    assert response.status_code == 200
    assert "Acknowledged" in response.text
    [call] = endpoint.sink.calls
    assert (call.case_id, call.kind, call.actor, call.via) == (CASE, ACKNOWLEDGE, "link", "link")
    assert call.request_id


async def test_post_with_a_name_records_it_as_the_actor(endpoint: Endpoint) -> None:
    response = await endpoint.client.post(endpoint.path(), data={"name": "  Ana  Lima "})

    assert response.status_code == 200
    assert [call.actor for call in endpoint.sink.calls] == ["Ana Lima"]
    assert "Ana Lima" in response.text


async def test_pressing_twice_gives_the_same_request_id(endpoint: Endpoint) -> None:
    path = endpoint.path()

    await endpoint.client.post(path, data={"name": "Ana"})
    await endpoint.client.post(path, data={"name": "Bo"})

    first, second = endpoint.sink.calls
    assert first.request_id == second.request_id
    assert endpoint.path().removeprefix("/ack/") not in first.request_id


async def test_links_for_different_cases_give_different_request_ids(endpoint: Endpoint) -> None:
    await endpoint.client.post(endpoint.path(CASE))
    await endpoint.client.post(endpoint.path("c_another"))

    first, second = endpoint.sink.calls
    assert first.request_id != second.request_id


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_expired_link_is_410_and_records_nothing(endpoint: Endpoint, method: str) -> None:
    path = endpoint.path(made_at=NOW - timedelta(seconds=TTL_S + 1))

    response = await endpoint.client.request(method, path)

    assert response.status_code == 410
    assert "expired" in response.text
    assert endpoint.sink.calls == []


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_tampered_link_is_403_and_records_nothing(endpoint: Endpoint, method: str) -> None:
    path = endpoint.path()
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")

    response = await endpoint.client.request(method, tampered)

    assert response.status_code == 403
    assert response.headers["Cache-Control"] == "no-store"
    assert endpoint.sink.calls == []


async def test_hostile_name_is_stored_inert_and_escaped_on_the_page(endpoint: Endpoint) -> None:
    hostile = "<script>alert(1)</script>\r\nX-Injected: yes\x1b[31m\u202e" + "x" * 200

    response = await endpoint.client.post(endpoint.path(), data={"name": hostile})

    assert response.status_code == 200
    [call] = endpoint.sink.calls
    assert call.actor.startswith("<script>alert(1)</script> X-Injected: yes")
    assert not any(c in call.actor for c in "\r\n\x1b\u202e")
    assert len(call.actor) <= 100
    assert "<script>" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


async def test_form_body_over_the_limit_is_413_and_records_nothing(endpoint: Endpoint) -> None:
    response = await endpoint.client.post(endpoint.path(), data={"name": "x" * MAX_BODY_BYTES})

    assert response.status_code == 413
    assert endpoint.sink.calls == []


async def test_transient_failure_downstream_is_503_with_retry_after(endpoint: Endpoint) -> None:
    endpoint.sink.fail_with = TransientError("NATS is unavailable")

    response = await endpoint.client.post(endpoint.path())

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "NATS" not in response.text


async def test_pagerduty_acknowledged_acknowledges_the_case_in_its_incident_key(endpoint: Endpoint) -> None:
    body = pd_event("incident.acknowledged")

    response = await endpoint.pagerduty(body, pd_signature(body, OLD_PD_SECRET))

    assert response.status_code == 200
    assert endpoint.sink.calls == [
        Call(CASE, ACKNOWLEDGE, "Ana Responder", "pagerduty", "5ac64822-4adc-4fda-ade0-410becf0de4f")
    ]


async def test_pagerduty_resolved_resolves_the_case(endpoint: Endpoint) -> None:
    body = pd_event("incident.resolved")

    response = await endpoint.pagerduty(body, pd_signature(body, OLD_PD_SECRET))

    assert response.status_code == 200
    assert [(call.case_id, call.kind) for call in endpoint.sink.calls] == [(CASE, RESOLVE)]


async def test_pagerduty_event_without_an_agent_is_credited_to_pagerduty(endpoint: Endpoint) -> None:
    body = pd_event(agent={})

    await endpoint.pagerduty(body, pd_signature(body, OLD_PD_SECRET))

    assert [call.actor for call in endpoint.sink.calls] == ["pagerduty"]


async def test_pagerduty_signature_with_the_rotated_second_secret_is_accepted(endpoint: Endpoint) -> None:
    body = pd_event()

    response = await endpoint.pagerduty(body, pd_signature(body, NEW_PD_SECRET))

    assert response.status_code == 200
    assert len(endpoint.sink.calls) == 1


async def test_pagerduty_header_with_several_signatures_is_accepted_when_one_matches(endpoint: Endpoint) -> None:
    body = pd_event()

    response = await endpoint.pagerduty(body, pd_signature(body, "retired-secret", NEW_PD_SECRET))

    assert response.status_code == 200


async def test_pagerduty_tampered_body_is_401_and_records_nothing(endpoint: Endpoint) -> None:
    body = pd_event("incident.acknowledged")
    signature = pd_signature(body, OLD_PD_SECRET)

    response = await endpoint.pagerduty(body.replace(b"acknowledged", b"resolved"), signature)

    assert response.status_code == 401
    assert endpoint.sink.calls == []


@pytest.mark.parametrize("signature", [None, "", "v1=zz", "v0=" + "0" * 64, "sha256=abc"])
async def test_pagerduty_missing_or_malformed_signature_is_401(endpoint: Endpoint, signature: str | None) -> None:
    response = await endpoint.pagerduty(pd_event(), signature)

    assert response.status_code == 401
    assert endpoint.sink.calls == []


async def test_pagerduty_without_configured_secrets_is_401() -> None:
    sink = RecordingSink()
    links = AckLinks(secret=LINK_SECRET, public_url="https://clamor.example.com", ttl_s=TTL_S)
    server = make_server(sink, links, pd_secrets=[])
    port = await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            body = pd_event()
            response = await Endpoint(client, sink, links).pagerduty(body, pd_signature(body, ""))
    finally:
        await server.stop()

    assert response.status_code == 401
    assert sink.calls == []


@pytest.mark.parametrize(
    "incident_key", ["d3640fbd41094207a1c11e58e46b1662", "clamor-alert-spike-brand", "clamor-case-"]
)
async def test_pagerduty_incident_not_opened_for_a_case_is_202_and_ignored(
    endpoint: Endpoint, incident_key: str
) -> None:
    body = pd_event(incident_key=incident_key)

    response = await endpoint.pagerduty(body, pd_signature(body, OLD_PD_SECRET))

    assert response.status_code == 202
    assert endpoint.sink.calls == []


async def test_pagerduty_other_event_types_are_202_and_ignored(endpoint: Endpoint) -> None:
    body = pd_event("incident.priority_updated")

    response = await endpoint.pagerduty(body, pd_signature(body, OLD_PD_SECRET))

    assert response.status_code == 202
    assert endpoint.sink.calls == []


@pytest.mark.parametrize("body", [b'{"event": ', b"[]", b'{"event": {"event_type": 3}}', b"\xff\xfe"])
async def test_pagerduty_body_that_is_no_event_is_400_with_a_one_line_reason(endpoint: Endpoint, body: bytes) -> None:
    response = await endpoint.pagerduty(body, pd_signature(body, OLD_PD_SECRET))

    assert response.status_code == 400
    reason = response.json()["error"]
    assert reason
    assert "\n" not in reason


async def test_pagerduty_body_over_the_limit_is_413(endpoint: Endpoint) -> None:
    body = pd_event(agent={"summary": "x" * MAX_BODY_BYTES})

    response = await endpoint.pagerduty(body, pd_signature(body, OLD_PD_SECRET))

    assert response.status_code == 413
    assert endpoint.sink.calls == []


async def test_pagerduty_transient_failure_downstream_is_503_with_retry_after(endpoint: Endpoint) -> None:
    endpoint.sink.fail_with = TransientError("NATS is unavailable")
    body = pd_event()

    response = await endpoint.pagerduty(body, pd_signature(body, OLD_PD_SECRET))

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
