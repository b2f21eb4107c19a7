"""The CRM callback endpoint over real HTTP, against a running router that consumes the actions it publishes.

``CallbackServer`` listens on a free loopback port with two secrets (a rotation in progress); requests
are signed per Standard Webhooks by ``services.shared.standard_webhooks.sign``, the way a CRM would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from clamor.v1 import case_pb2
from services.router.config import CallbackSettings
from services.router.domain import case_id_for
from services.router.http import MAX_BODY_BYTES, CallbackServer
from services.shared.standard_webhooks import new_secret, sign
from tests.integration.router_harness import RunningRouter, complaint, publish_triaged, router_settings, running_router
from tests.support.clock import ManualClock

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client as NatsClient

CASE_ID = case_id_for("mastodon:cb1")


@dataclass
class Endpoint:
    client: httpx.AsyncClient
    running: RunningRouter
    old: str
    new: str
    clock: ManualClock

    async def post(
        self,
        payload: Any,
        *,
        secrets: list[str] | None = None,
        msg_id: str = "",
        age_s: float = 0.0,
        tamper: bool = False,
        drop: str = "",
    ) -> httpx.Response:
        """POST ``payload`` (JSON, or bytes as they are) signed with ``secrets`` (the new one by default)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = sign(
            secrets or [self.new], msg_id or f"msg_{uuid.uuid4().hex}", int(self.clock().timestamp() - age_s), body
        )
        headers = {name: value for name, value in headers.items() if name != drop}
        sent = body.replace(b"acknowledge", b"resolve") if tamper else body
        return await self.client.post("/callbacks/case", content=sent, headers=headers)

    async def history(self) -> list[str]:
        await self.running.settle()
        return [event.detail for event in (await self.running.case(CASE_ID)).history]


@pytest.fixture
async def endpoint(nc: NatsClient, tmp_path: Path) -> AsyncIterator[Endpoint]:
    js = nc.jetstream()
    async with running_router(js, router_settings({"outbox": {"path": "outbox.jsonl"}}, tmp_path)) as running:
        await publish_triaged(js, complaint("mastodon:cb1"))
        await running.settle()
        old, new = new_secret(), new_secret()
        settings = CallbackSettings(enabled=True, host="127.0.0.1", port=0, secrets=[new, old])
        # The endpoint judges timestamps by this clock, so "stale" and "from the future" are exact.
        clock = ManualClock()
        server = CallbackServer(
            settings, cases=running.router.cases, actions=running.router.actions, destinations=["zendesk"], clock=clock
        )
        port = await server.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                yield Endpoint(client, running, old, new, clock)
        finally:
            await server.stop()


def action(kind: str, *, actor: Any = "Dana (Zendesk)", case_id: str = CASE_ID) -> dict[str, Any]:
    return {"case_id": case_id, "action": kind, "actor": actor, "note": "handled in ZD#4711"}


async def test_a_signed_acknowledge_acknowledges_the_case_with_its_actor(endpoint: Endpoint) -> None:
    response = await endpoint.post(action("acknowledge"))
    assert response.status_code == 202
    action_id = response.json()["action_id"]
    assert (await endpoint.history())[-1] == f"acknowledge by Dana (Zendesk) via crm [{action_id}]"
    case = await endpoint.running.case(CASE_ID)
    assert (case.state, case.owner) == (case_pb2.CASE_STATE_ACKNOWLEDGED, "Dana (Zendesk)")


async def test_a_signed_resolve_resolves_the_case(endpoint: Endpoint) -> None:
    response = await endpoint.post(action("resolve"))
    assert response.status_code == 202
    assert (await endpoint.history())[-1] == f"resolve by Dana (Zendesk) via crm [{response.json()['action_id']}]"
    assert (await endpoint.running.case(CASE_ID)).state == case_pb2.CASE_STATE_RESOLVED


async def test_a_request_signed_with_the_old_secret_is_accepted_during_a_rotation(endpoint: Endpoint) -> None:
    response = await endpoint.post(action("acknowledge"), secrets=[endpoint.old])
    assert response.status_code == 202
    await endpoint.running.settle()
    assert (await endpoint.running.case(CASE_ID)).state == case_pb2.CASE_STATE_ACKNOWLEDGED


@pytest.mark.parametrize(
    ("vector", "options", "said"),
    [
        ("tampered body", {"tamper": True}, "no matching signature"),
        ("stale timestamp", {"age_s": 600}, "stale"),
        ("timestamp from the future", {"age_s": -600}, "in the future"),
        ("missing webhook-id", {"drop": "webhook-id"}, "missing webhook-id"),
        ("missing webhook-timestamp", {"drop": "webhook-timestamp"}, "missing webhook-timestamp"),
        ("missing webhook-signature", {"drop": "webhook-signature"}, "missing webhook-signature"),
        ("someone else's secret", {"secrets": [new_secret()]}, "no matching signature"),
    ],
    ids=["tampered", "stale", "future", "no-id", "no-timestamp", "no-signature", "unknown-secret"],
)
async def test_a_request_without_a_valid_signature_is_refused_and_changes_nothing(
    endpoint: Endpoint, vector: str, options: dict[str, Any], said: str
) -> None:
    before = await endpoint.history()
    response = await endpoint.post(action("acknowledge"), **options)
    assert response.status_code == 401, vector
    assert said in response.json()["error"]
    assert await endpoint.history() == before


async def test_an_unknown_case_is_404(endpoint: Endpoint) -> None:
    response = await endpoint.post(action("acknowledge", case_id="c_00000000000000000000"))
    assert response.status_code == 404
    assert "c_00000000000000000000" in response.json()["error"]


async def test_a_case_id_that_cannot_exist_is_404_not_503(endpoint: Endpoint) -> None:
    response = await endpoint.post(action("acknowledge", case_id="ZD#4711"))
    assert response.status_code == 404


async def test_the_note_and_the_calling_destination_are_kept_in_the_history(endpoint: Endpoint) -> None:
    response = await endpoint.post({**action("resolve"), "destination": "zendesk"})
    assert response.status_code == 202
    await endpoint.running.settle()
    entry = (await endpoint.running.case(CASE_ID)).history[-1]
    assert (entry.note, entry.arrived_via, entry.origin_destination) == (
        "handled in ZD#4711",
        case_pb2.CASE_ACTION_VIA_CRM,
        "zendesk",
    )


async def test_a_destination_the_router_does_not_have_is_400(endpoint: Endpoint) -> None:
    before = await endpoint.history()
    response = await endpoint.post({**action("resolve"), "destination": "freshdesk"})
    assert response.status_code == 400
    assert "'freshdesk'" in response.json()["error"]
    assert await endpoint.history() == before


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        (b"{not json", "Expecting property name"),
        (b"[1, 2]", "must be a JSON object"),
        ({"action": "acknowledge"}, "case_id"),
        (action("escalate"), "action must be one of acknowledge, resolve, not_a_complaint"),
        (action("acknowledge", actor=42), "actor must be a string"),
        (action("acknowledge", actor="x" * 201), "actor is longer than 200"),
    ],
    ids=["bad-json", "not-an-object", "no-case-id", "unknown-action", "non-string-actor", "long-actor"],
)
async def test_a_body_that_cannot_be_read_is_400_naming_the_field(endpoint: Endpoint, payload: Any, said: str) -> None:
    before = await endpoint.history()
    response = await endpoint.post(payload)
    assert response.status_code == 400
    assert said in response.json()["error"]
    assert await endpoint.history() == before


async def test_an_oversized_body_is_413(endpoint: Endpoint) -> None:
    response = await endpoint.post(action("acknowledge") | {"note": "x" * MAX_BODY_BYTES})
    assert response.status_code == 413


async def test_an_oversized_chunked_body_is_413(endpoint: Endpoint) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b"x" * 1024

    response = await endpoint.client.post("/callbacks/case", content=chunks())
    assert response.status_code == 413


async def test_a_webhook_id_sent_twice_is_one_action(endpoint: Endpoint) -> None:
    first = await endpoint.post(action("acknowledge"), msg_id="msg_2Uv1ZqfKz")
    # The CRM retries the same message, signed again a moment later.
    again = await endpoint.post(action("acknowledge"), msg_id="msg_2Uv1ZqfKz", age_s=-1)
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["action_id"] == again.json()["action_id"]
    history = await endpoint.history()
    assert sum("msg_2Uv1ZqfKz" in detail for detail in history) == 1
