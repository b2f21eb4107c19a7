"""WebhookReceiver as a real HTTP server, called by a real aiohttp client."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from services.listener.config import WebhookSourceSettings
from services.listener.sources.base import Post
from services.listener.webhook import WebhookReceiver
from services.shared.errors import TransientError
from tests.support.clock import T0, ManualClock

OLD_SECRET = "old-secret-for-tests"
NEW_SECRET = "new-secret-for-tests"
MAX_BODY = 2048
# The receiver's clock stands still at T0: timestamps are fresh or stale against it, not the wall.
NOW_S = int(T0.timestamp())
POST = {
    "id": "t-1",
    "text": "My order arrived broken.",
    "url": "https://support.example/t/1",
    "author": {"handle": "@noor", "display_name": "Noor A", "followers": 12},
    "created_at": "2024-01-02T09:00:00Z",
    "language": "en-GB",
    "thread_id": "case-7",
}


@dataclass
class Inbox:
    """The receiver's callback: records what it was handed, or fails as told."""

    received: list[tuple[str, list[Post]]] = field(default_factory=list)
    fail_with: Exception | None = None

    async def __call__(self, settings: WebhookSourceSettings, posts: list[Post]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.received.append((settings.name, posts))


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Hook:
    base_url: str
    inbox: Inbox
    session: aiohttp.ClientSession

    async def send(
        self, body: bytes | Any, *, headers: dict[str, str] | None = None, name: str = "support", method: str = "POST"
    ) -> Answer:
        sent = {"Content-Type": "application/json", **(headers or {})}
        async with self.session.request(method, f"{self.base_url}/hooks/{name}", data=body, headers=sent) as response:
            return Answer(response.status, await response.json(), dict(response.headers))

    async def send_signed(self, payload: object, *, secret: str = OLD_SECRET, timestamp: int | None = None) -> Answer:
        body = json.dumps(payload).encode()
        return await self.send(body, headers=signed(body, secret, timestamp=timestamp))


def signature(body: bytes, secret: str, *, timestamp: int | None = None) -> str:
    content = body if timestamp is None else f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), content, hashlib.sha256).hexdigest()


def signed(body: bytes, secret: str = OLD_SECRET, *, timestamp: int | None = None) -> dict[str, str]:
    headers = {"X-Clamor-Signature": signature(body, secret, timestamp=timestamp)}
    if timestamp is not None:
        headers["X-Clamor-Timestamp"] = str(timestamp)
    return headers


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    inbox = Inbox()
    sources = [
        WebhookSourceSettings(
            name="support",
            kind="webhook",
            platform="helpdesk",
            secrets=[OLD_SECRET, NEW_SECRET],
            max_body_bytes=MAX_BODY,
        )
    ]
    receiver = WebhookReceiver(sources, inbox, clock=ManualClock())
    port = await receiver.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            yield Hook(f"http://127.0.0.1:{port}", inbox, session)
    finally:
        await receiver.stop()


async def test_signed_batch_is_accepted_and_handed_on_as_posts(hook: Hook) -> None:
    answer = await hook.send_signed({"posts": [POST, {"id": 2, "text": "Still waiting."}]})

    assert (answer.status, answer.body) == (202, {"accepted": 2})
    assert hook.inbox.received == [
        (
            "support",
            [
                Post(
                    native_id="t-1",
                    text="My order arrived broken.",
                    url="https://support.example/t/1",
                    author_handle="noor",
                    author_name="Noor A",
                    followers=12,
                    created_at=datetime(2024, 1, 2, 9, 0, tzinfo=UTC),
                    language="en",
                    thread_id="case-7",
                ),
                Post(native_id="2", text="Still waiting."),
            ],
        )
    ]


async def test_single_post_object_is_accepted(hook: Hook) -> None:
    answer = await hook.send_signed(POST)

    assert (answer.status, answer.body) == (202, {"accepted": 1})


async def test_signature_made_with_the_rotated_second_secret_is_accepted(hook: Hook) -> None:
    answer = await hook.send_signed(POST, secret=NEW_SECRET)

    assert answer.status == 202


async def test_signed_fresh_timestamp_is_accepted(hook: Hook) -> None:
    answer = await hook.send_signed(POST, timestamp=NOW_S)

    assert answer.status == 202


async def test_tampered_body_is_401_signature_mismatch(hook: Hook) -> None:
    body = json.dumps(POST).encode()
    headers = signed(body)

    answer = await hook.send(body.replace(b"broken", b"fine!!"), headers=headers)

    assert (answer.status, answer.body["reason"]) == (401, "signature_mismatch")
    assert hook.inbox.received == []


async def test_signature_from_an_unknown_secret_is_401_signature_mismatch(hook: Hook) -> None:
    answer = await hook.send_signed(POST, secret="not-a-configured-secret")

    assert (answer.status, answer.body["reason"]) == (401, "signature_mismatch")


async def test_stale_timestamp_is_401_even_when_signed(hook: Hook) -> None:
    answer = await hook.send_signed(POST, timestamp=NOW_S - 3600)

    assert (answer.status, answer.body["reason"]) == (401, "stale_timestamp")
    assert hook.inbox.received == []


async def test_timestamp_header_not_covered_by_the_signature_is_401(hook: Hook) -> None:
    body = json.dumps(POST).encode()
    headers = {**signed(body), "X-Clamor-Timestamp": str(NOW_S)}

    answer = await hook.send(body, headers=headers)

    assert (answer.status, answer.body["reason"]) == (401, "signature_mismatch")


async def test_missing_signature_is_401(hook: Hook) -> None:
    answer = await hook.send(json.dumps(POST).encode())

    assert (answer.status, answer.body["reason"]) == (401, "missing_signature")


async def test_signature_that_is_not_sha256_hex_is_401_malformed(hook: Hook) -> None:
    answer = await hook.send(json.dumps(POST).encode(), headers={"X-Clamor-Signature": "md5=abc"})

    assert (answer.status, answer.body["reason"]) == (401, "malformed_signature")


async def test_unknown_source_name_is_404(hook: Hook) -> None:
    body = json.dumps(POST).encode()

    answer = await hook.send(body, headers=signed(body), name="nobody")

    assert answer.status == 404


async def test_declared_body_over_the_limit_is_413(hook: Hook) -> None:
    body = json.dumps({**POST, "text": "x" * MAX_BODY}).encode()

    answer = await hook.send(body, headers=signed(body))

    assert answer.status == 413
    assert hook.inbox.received == []


async def test_streamed_body_over_the_limit_is_413(hook: Hook) -> None:
    body = json.dumps({**POST, "text": "x" * MAX_BODY}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    answer = await hook.send(chunks(), headers=signed(body))

    assert answer.status == 413


async def test_body_that_is_not_declared_json_is_415(hook: Hook) -> None:
    body = json.dumps(POST).encode()

    answer = await hook.send(body, headers={**signed(body), "Content-Type": "text/plain"})

    assert answer.status == 415


async def test_malformed_json_is_400_with_its_position(hook: Hook) -> None:
    body = b'{"id": "t-1", "text": '

    answer = await hook.send(body, headers=signed(body))

    assert answer.status == 400
    assert "invalid JSON at line 1, column 23" in answer.body["error"]


async def test_invalid_post_is_400_naming_the_item_index_and_field(hook: Hook) -> None:
    bad = {**POST, "author": {"followers": -1}}

    answer = await hook.send_signed({"posts": [bad]})

    assert answer.status == 400
    assert (answer.body["index"], answer.body["field"]) == (0, "author.followers")


async def test_batch_with_some_invalid_posts_accepts_the_rest_and_names_the_others(hook: Hook) -> None:
    answer = await hook.send_signed({"posts": [POST, {"id": "t-2"}]})

    assert answer.status == 202
    assert answer.body["accepted"] == 1
    assert [(r["index"], r["field"]) for r in answer.body["rejected"]] == [(1, "text")]


async def test_transient_failure_downstream_is_503_with_retry_after(hook: Hook) -> None:
    hook.inbox.fail_with = TransientError("NATS is unavailable")

    answer = await hook.send_signed(POST)

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "5"


async def test_unexpected_failure_downstream_is_503_without_details(hook: Hook) -> None:
    hook.inbox.fail_with = RuntimeError("secret internal detail")

    answer = await hook.send_signed(POST)

    assert answer.status == 503
    assert "secret internal detail" not in json.dumps(answer.body)


async def test_wrong_method_is_answered_in_json(hook: Hook) -> None:
    answer = await hook.send(b"", method="GET")

    assert answer.status == 405
    assert answer.body["error"]
