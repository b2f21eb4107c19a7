"""The Teams channel against a local server answering as a Teams Workflows webhook documents (202 Accepted)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from services.notifier.channels.teams import CARD_BYTES, TeamsChannel, teams_payload
from services.notifier.config import TeamsChannelSettings
from services.notifier.errors import ChannelConfigError, ChannelError
from services.shared.outbound import OutboundClient
from tests.http_server import LocalHttpServer, serve
from tests.integration.channel_cases import (
    CASE_C42,
    DIGEST_SEVERITIES,
    digest,
    escalation,
    hostile_digest,
    hostile_escalation,
)
from tests.integration.source_cases import answering

FLOW_PATH = "/workflows/4f1c/triggers/manual/paths/invoke"
FLOW_QUERY = "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=flowsecret42"

MESSAGE = escalation("esc-1:teams", **CASE_C42 | {"author_handle": "@angry_ann"})


def fact(label: str, value: str) -> dict[str, Any]:
    return {
        "type": "RichTextBlock",
        "inlines": [{"type": "TextRun", "text": f"{label}: ", "weight": "Bolder"}, {"type": "TextRun", "text": value}],
    }


EXPECTED_CARD: dict[str, Any] = {
    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
    "type": "AdaptiveCard",
    "version": "1.4",
    "body": [
        {
            "type": "RichTextBlock",
            "inlines": [
                {
                    "type": "TextRun",
                    "text": "[HIGH] case c-42 escalated to social-care (level 2)",
                    "weight": "Bolder",
                    "size": "Medium",
                }
            ],
        },
        fact("Severity", "HIGH"),
        fact("Risk flags", "legal_threat, outage"),
        fact("Reason", "no first response within 30 minutes"),
        fact("Author", "@angry_ann (12,345 followers) on mastodon"),
        fact("Case", "c-42, team social-care, level 2"),
        fact("SLA due", "2026-03-01T13:30:00Z"),
        {
            "type": "RichTextBlock",
            "inlines": [
                {"type": "TextRun", "text": "Acme ate my deposit & nobody answers. Lawyers next.", "italic": True}
            ],
            "separator": True,
        },
    ],
    "actions": [
        {"type": "Action.OpenUrl", "title": "Acknowledge", "url": "https://clamor.example/ack?case=c-42&sig=abc"},
        {"type": "Action.OpenUrl", "title": "Open the post", "url": "https://social.example/@angry_ann/1"},
    ],
}


def settings(server: LocalHttpServer) -> TeamsChannelSettings:
    return TeamsChannelSettings(kind="teams", name="teams", webhook_url=server.url(FLOW_PATH + FLOW_QUERY))


def sent(server: LocalHttpServer) -> Any:
    (request,) = server.requests
    return json.loads(request.body)


def nodes(tree: Any) -> Iterator[dict[str, Any]]:
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


@pytest.mark.parametrize("status", [202, 200])
async def test_posts_an_adaptive_card_and_succeeds_when_accepted(http: OutboundClient, status: int) -> None:
    async with serve({("POST", FLOW_PATH): answering(b"", status=status)}) as server:
        delivery = await TeamsChannel(settings(server), http=http).send(MESSAGE)
    assert sent(server) == {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": EXPECTED_CARD}
        ],
    }
    (request,) = server.requests
    assert request.query["sig"] == "flowsecret42"
    assert request.headers["Content-Type"] == "application/json"
    assert delivery.detail == f"HTTP {status}"


async def test_hostile_text_appears_only_as_literal_one_line_text_runs(http: OutboundClient) -> None:
    hostile = hostile_escalation(
        "esc-2:teams",
        title="**urgent** [click](https://evil.example)",
        reason="[bank](https://evil.example)",
        author_handle="evil\n**Severity**: LOW",
        author_followers=0,
        platform="",
        ack_url="http://clamor.example/ack",
    )
    async with serve({("POST", FLOW_PATH): answering(b"", status=202)}) as server:
        await TeamsChannel(settings(server), http=http).send(hostile)
    card = sent(server)["attachments"][0]["content"]
    texts = [node for node in nodes(card["body"]) if "text" in node]
    assert all(node["type"] == "TextRun" for node in texts)
    assert all(node["type"] in {"RichTextBlock", "TextRun"} for node in nodes(card["body"]))
    assert all("\r" not in node["text"] and "\n" not in node["text"] for node in texts)
    assert any("line1 Bcc: victim@example.com [bank](https://evil.example)" in node["text"] for node in texts)
    assert any(node["text"] == "@evil **Severity**: LOW (0 followers)" for node in texts)
    assert card["actions"] == []


async def test_429_is_retried_after_retry_after(http: OutboundClient) -> None:
    body = json.dumps({"error": {"code": "TooManyRequests", "message": "Rate limit is exceeded."}}).encode()
    async with serve({("POST", FLOW_PATH): answering(body, status=429, headers={"Retry-After": "45"})}) as server:
        with pytest.raises(ChannelError, match="TooManyRequests") as caught:
            await TeamsChannel(settings(server), http=http).send(MESSAGE)
    assert caught.value.retry_after_s == 45.0


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "InvalidRequestContent"),
        (401, "DirectApiAuthorizationRequired"),
        (403, "AuthorizationFailed"),
        (404, "WorkflowNotFound"),
    ],
)
async def test_refusals_are_configuration_errors_without_the_url_signature(
    http: OutboundClient, status: int, code: str
) -> None:
    body = json.dumps({"error": {"code": code, "message": "The request failed."}}).encode()
    async with serve({("POST", FLOW_PATH): answering(body, status=status)}) as server:
        with pytest.raises(ChannelConfigError, match=code) as caught:
            await TeamsChannel(settings(server), http=http).send(MESSAGE)
    assert "flowsecret42" not in str(caught.value)


async def test_server_error_is_retried(http: OutboundClient) -> None:
    async with serve({("POST", FLOW_PATH): answering(b"Bad Gateway", status=502, content_type="text/plain")}) as server:
        with pytest.raises(ChannelError, match="HTTP 502") as caught:
            await TeamsChannel(settings(server), http=http).send(MESSAGE)
    assert caught.value.retry_after_s is None


async def test_unreachable_flow_is_retried_without_naming_its_signature(http: OutboundClient) -> None:
    async with serve({}) as closed:
        unreachable = settings(closed)
    with pytest.raises(ChannelError) as caught:
        await TeamsChannel(unreachable, http=http).send(MESSAGE)
    assert "flowsecret42" not in str(caught.value)


def test_empty_webhook_url_is_refused() -> None:
    with pytest.raises(ChannelConfigError, match="webhook_url"):
        TeamsChannel(TeamsChannelSettings(kind="teams", name="teams", webhook_url=""))


def digest_item(number: int, severity: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "RichTextBlock",
            "inlines": [
                {"type": "TextRun", "text": f"{severity} ", "weight": "Bolder"},
                {"type": "TextRun", "text": f"[{severity}] case c-{number} escalated to care (level 1)"},
            ],
            "separator": True,
        },
        {
            "type": "RichTextBlock",
            "inlines": [
                {
                    "type": "TextRun",
                    "text": "\u201cI will sue you if my refund is not here by Friday\u201d",
                    "italic": True,
                },
                {"type": "TextRun", "text": " \u2014 "},
                {"type": "TextRun", "text": "@ana (12,000 followers)"},
            ],
            "spacing": "None",
        },
        {
            "type": "ActionSet",
            "actions": [
                {
                    "type": "Action.OpenUrl",
                    "title": "Acknowledge",
                    "url": f"https://clamor.example/ack/c-{number}?sig=abc",
                },
                {"type": "Action.OpenUrl", "title": "Open the post", "url": f"https://social.example/@ana/{number}"},
            ],
            "spacing": "Small",
        },
    ]


async def test_a_digest_card_lists_every_item_with_its_own_links(http: OutboundClient) -> None:
    async with serve({("POST", FLOW_PATH): answering(b"", status=202)}) as server:
        await TeamsChannel(settings(server), http=http).send(digest("dg-1:teams", n=2))
    card = sent(server)["attachments"][0]["content"]
    title = {"type": "TextRun", "text": "2 notifications for care (CRITICAL)", "weight": "Bolder", "size": "Medium"}
    assert card["body"] == [
        {"type": "RichTextBlock", "inlines": [title]},
        *digest_item(1, "HIGH"),
        *digest_item(2, "CRITICAL"),
    ]
    assert card["actions"] == []


def test_a_digest_of_25_items_shows_all_and_a_larger_one_stops_within_the_size_limit() -> None:
    def body(n: int) -> list[dict[str, Any]]:
        card: dict[str, Any] = teams_payload(digest("dg-1:teams", n=n))["attachments"][0]["content"]
        assert len(json.dumps(card, ensure_ascii=False).encode()) <= CARD_BYTES + 500
        return list(card["body"])

    texts = [node["text"] for node in nodes(body(25)) if node.get("type") == "TextRun"]
    for number in range(1, 26):
        severity = DIGEST_SEVERITIES[(number - 1) % len(DIGEST_SEVERITIES)]
        assert f"[{severity}] case c-{number} escalated to care (level 1)" in texts
    large = body(200)
    shown = sum(1 for node in large if node.get("separator") and len(node["inlines"]) == 2)
    assert 25 <= shown < 200
    assert large[-1]["inlines"] == [{"type": "TextRun", "text": f"\u2026and {200 - shown} more", "italic": True}]


async def test_a_hostile_digest_shows_only_literal_text_runs_and_https_actions(http: OutboundClient) -> None:
    hostile = hostile_digest("dg-2:teams", title="**urgent** [click](https://evil.example)" + "\r\nX: 1")
    async with serve({("POST", FLOW_PATH): answering(b"", status=202)}) as server:
        await TeamsChannel(settings(server), http=http).send(hostile)
    card = sent(server)["attachments"][0]["content"]
    texts = [node for node in nodes(card["body"]) if "text" in node]
    assert all(node["type"] == "TextRun" for node in texts)
    assert {node["type"] for node in nodes(card["body"])} == {"RichTextBlock", "TextRun", "ActionSet", "Action.OpenUrl"}
    assert all("\r" not in node["text"] and "\n" not in node["text"] for node in texts)
    assert any(node["text"] == "**urgent** [click](https://evil.example) X: 1" for node in texts)
    assert any("<!channel> <@U123> <https://evil|bank> <script>" in node["text"] for node in texts)
    actions = [node for node in nodes(card["body"]) if node["type"] == "Action.OpenUrl"]
    assert sorted((a["title"], a["url"]) for a in actions) == [
        ("Acknowledge", "https://clamor.example/ack/c-1?sig=abc"),
        ("Acknowledge", "https://clamor.example/ack/c-2?sig=abc"),
    ]
    assert card["actions"] == []
