"""The Slack channel against a local server answering as Slack's incoming webhooks and chat.postMessage document."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from services.notifier.channels.slack import MAX_BLOCKS, SECTION_CHARS, SlackChannel, slack_payload
from services.notifier.config import SlackChannelSettings
from services.notifier.errors import ChannelConfigError, ChannelError
from services.shared.outbound import OutboundClient
from tests.http_server import LocalHttpServer, serve
from tests.integration.channel_cases import CASE_C42, digest, escalation, hostile_digest, hostile_escalation
from tests.integration.channel_cases import alert as sample_alert
from tests.integration.source_cases import answering

HOOK_PATH = "/services/T0001/B0001/hooksecret42"
TOKEN = "xoxb-1-test-token"
CHANNEL = "C0123ABCD"

MESSAGE = escalation(
    "esc-1:slack",
    **CASE_C42
    | {
        "author_handle": "@angry_ann",
        "post_url": "https://social.example/@angry_ann/1?x=1&y=2",
        "raised_at": datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    },
)

EXPECTED_BLOCKS: list[dict[str, Any]] = [
    {"type": "header", "text": {"type": "plain_text", "text": "[HIGH] case c-42 escalated to social-care (level 2)"}},
    {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": "*Severity*\nHIGH"},
            {"type": "mrkdwn", "text": "*Risk flags*\nlegal_threat, outage"},
            {"type": "mrkdwn", "text": "*Author*\n@angry_ann (12,345 followers) on mastodon"},
            {"type": "mrkdwn", "text": "*Case*\nc-42, team social-care, level 2"},
            {"type": "mrkdwn", "text": "*SLA due*\n2026-03-01T13:30:00Z"},
        ],
    },
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Reason*\nno first response within 30 minutes"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": ">Acme ate my deposit &amp; nobody answers. Lawyers next."}},
    {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "<https://social.example/@angry_ann/1?x=1&amp;y=2|open the post>"}],
    },
    {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": "acknowledge",
                "text": {"type": "plain_text", "text": "Acknowledge"},
                "url": "https://clamor.example/ack?case=c-42&sig=abc",
                "style": "primary",
            }
        ],
    },
]

EXPECTED_PAYLOAD: dict[str, Any] = {
    "text": "[HIGH] case c-42 escalated to social-care (level 2)",
    "blocks": EXPECTED_BLOCKS,
    "unfurl_links": False,
    "unfurl_media": False,
}


def webhook_settings(server: LocalHttpServer) -> SlackChannelSettings:
    return SlackChannelSettings(kind="slack", name="slack", webhook_url=server.url(HOOK_PATH))


def api_settings(server: LocalHttpServer) -> SlackChannelSettings:
    return SlackChannelSettings(
        kind="slack", name="slack", token=TOKEN, channel=CHANNEL, api_base_url=server.url("/api")
    )


def sent(server: LocalHttpServer) -> Any:
    (request,) = server.requests
    return json.loads(request.body)


def mrkdwn_texts(payload: Any) -> Iterator[str]:
    """Every string Slack parses as mrkdwn: the fallback ``text`` and each mrkdwn text object."""
    yield payload["text"]
    stack = [payload["blocks"]]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                yield node["text"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def urls(payload: Any) -> list[str]:
    found: list[str] = []
    stack = [payload]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.extend(value for key, value in node.items() if key == "url")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


async def test_webhook_posts_the_block_kit_message_and_succeeds_on_ok(http: OutboundClient) -> None:
    async with serve({("POST", HOOK_PATH): answering(b"ok", content_type="text/html")}) as server:
        delivery = await SlackChannel(webhook_settings(server), http=http).send(MESSAGE)
    assert sent(server) == EXPECTED_PAYLOAD
    assert server.requests[0].headers["Content-Type"] == "application/json; charset=utf-8"
    assert delivery.channel == "slack"


async def test_api_mode_posts_with_bearer_token_and_returns_the_message_ts(http: OutboundClient) -> None:
    answer = {"ok": True, "channel": CHANNEL, "ts": "1772366400.000200", "message": {"text": "…"}}
    async with serve({("POST", "/api/chat.postMessage"): answering(json.dumps(answer).encode())}) as server:
        delivery = await SlackChannel(api_settings(server), http=http).send(MESSAGE)
    assert sent(server) == {"channel": CHANNEL} | EXPECTED_PAYLOAD
    assert server.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert server.requests[0].headers["Content-Type"] == "application/json; charset=utf-8"
    assert delivery.remote_id == "1772366400.000200"


async def test_an_alert_carries_only_its_title_severity_and_reason(http: OutboundClient) -> None:
    alert = sample_alert("al-1:slack")
    async with serve({("POST", HOOK_PATH): answering(b"ok", content_type="text/html")}) as server:
        await SlackChannel(webhook_settings(server), http=http).send(alert)
    assert sent(server) == {
        "text": "[alert] volume_spike: acme",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "[alert] volume_spike: acme"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Severity*\nHIGH"}]},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Reason*\n5x"}},
        ],
        "unfurl_links": False,
        "unfurl_media": False,
    }


async def test_hostile_post_text_stays_inert_text(http: OutboundClient) -> None:
    hostile = hostile_escalation(
        "esc-2:slack",
        title="<!here> " + "x" * 300,
        reason="<@U999> said so",
        author_handle="evil\n*Severity*\nLOW <!channel>",
        ack_url="https://clamor.example/ack?case=c-9",
    )
    async with serve({("POST", HOOK_PATH): answering(b"ok", content_type="text/html")}) as server:
        await SlackChannel(webhook_settings(server), http=http).send(hostile)
    payload = sent(server)
    texts = list(mrkdwn_texts(payload))
    assert all("<" not in text and ">" not in text.removeprefix(">") for text in texts)
    (quote,) = [text for text in texts if text.startswith(">")]
    assert quote.startswith(">&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil|bank&gt; &lt;script&gt;")
    assert "\r" not in quote
    assert "\n" not in quote
    (author,) = [text for text in texts if text.startswith("*Author*\n")]
    assert "\n" not in author.removeprefix("*Author*\n")
    assert "&lt;!channel&gt;" in author
    assert urls(payload) == ["https://clamor.example/ack?case=c-9"]
    assert all(block["type"] != "context" for block in payload["blocks"])
    assert len(payload["blocks"][0]["text"]["text"]) == 150


async def test_webhook_429_is_retried_after_retry_after(http: OutboundClient) -> None:
    limited = answering(b"rate_limited", status=429, content_type="text/plain", headers={"Retry-After": "30"})
    async with serve({("POST", HOOK_PATH): limited}) as server:
        with pytest.raises(ChannelError) as caught:
            await SlackChannel(webhook_settings(server), http=http).send(MESSAGE)
    assert caught.value.retry_after_s == 30.0


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, "invalid_payload"),
        (400, "no_text"),
        (404, "channel_not_found"),
        (404, "no_service"),
        (403, "action_prohibited"),
        (410, "channel_is_archived"),
    ],
)
async def test_webhook_error_bodies_are_configuration_errors(http: OutboundClient, status: int, error: str) -> None:
    refusing = answering(error.encode(), status=status, content_type="text/html")
    async with serve({("POST", HOOK_PATH): refusing}) as server:
        with pytest.raises(ChannelConfigError, match=error) as caught:
            await SlackChannel(webhook_settings(server), http=http).send(MESSAGE)
    assert "hooksecret42" not in str(caught.value)


async def test_webhook_server_error_is_retried(http: OutboundClient) -> None:
    async with serve({("POST", HOOK_PATH): answering(b"rollup_error", status=500, content_type="text/html")}) as server:
        with pytest.raises(ChannelError, match="rollup_error"):
            await SlackChannel(webhook_settings(server), http=http).send(MESSAGE)


async def test_webhook_answer_other_than_ok_is_retried(http: OutboundClient) -> None:
    portal = answering(b"<html>sign in</html>", content_type="text/html")
    async with serve({("POST", HOOK_PATH): portal}) as server:
        with pytest.raises(ChannelError, match="without Slack's ok"):
            await SlackChannel(webhook_settings(server), http=http).send(MESSAGE)


async def test_unreachable_webhook_is_retried_without_naming_its_url(http: OutboundClient) -> None:
    async with serve({}) as closed:
        settings = webhook_settings(closed)
    with pytest.raises(ChannelError) as caught:
        await SlackChannel(settings, http=http).send(MESSAGE)
    assert "hooksecret42" not in str(caught.value)


async def test_api_http_429_is_retried_after_retry_after(http: OutboundClient) -> None:
    body = json.dumps({"ok": False, "error": "ratelimited"}).encode()
    async with serve(
        {("POST", "/api/chat.postMessage"): answering(body, status=429, headers={"Retry-After": "7"})}
    ) as s:
        with pytest.raises(ChannelError) as caught:
            await SlackChannel(api_settings(s), http=http).send(MESSAGE)
    assert caught.value.retry_after_s == 7.0


async def test_api_ratelimited_error_is_retried_after_retry_after(http: OutboundClient) -> None:
    body = json.dumps({"ok": False, "error": "ratelimited"}).encode()
    async with serve({("POST", "/api/chat.postMessage"): answering(body, headers={"Retry-After": "12"})}) as server:
        with pytest.raises(ChannelError, match="ratelimited") as caught:
            await SlackChannel(api_settings(server), http=http).send(MESSAGE)
    assert caught.value.retry_after_s == 12.0


@pytest.mark.parametrize("error", ["invalid_auth", "channel_not_found", "not_in_channel", "account_inactive"])
async def test_api_errors_are_configuration_errors(http: OutboundClient, error: str) -> None:
    body = json.dumps({"ok": False, "error": error}).encode()
    async with serve({("POST", "/api/chat.postMessage"): answering(body)}) as server:
        with pytest.raises(ChannelConfigError, match=error):
            await SlackChannel(api_settings(server), http=http).send(MESSAGE)


async def test_api_internal_error_is_retried(http: OutboundClient) -> None:
    body = json.dumps({"ok": False, "error": "internal_error"}).encode()
    async with serve({("POST", "/api/chat.postMessage"): answering(body)}) as server:
        with pytest.raises(ChannelError, match="internal_error"):
            await SlackChannel(api_settings(server), http=http).send(MESSAGE)


async def test_api_answer_that_is_not_json_is_retried(http: OutboundClient) -> None:
    async with serve({("POST", "/api/chat.postMessage"): answering(b"<html>", content_type="text/html")}) as server:
        with pytest.raises(ChannelError, match="not a Slack API answer"):
            await SlackChannel(api_settings(server), http=http).send(MESSAGE)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({}, id="nothing"),
        pytest.param({"token": TOKEN}, id="token-without-channel"),
        pytest.param({"channel": CHANNEL}, id="channel-without-token"),
        pytest.param({"webhook_url": "https://hooks.slack.com/services/T/B/X", "token": TOKEN}, id="both-modes"),
    ],
)
def test_settings_without_exactly_one_mode_are_refused(fields: dict[str, str]) -> None:
    with pytest.raises(ChannelConfigError, match="webhook_url"):
        SlackChannel(SlackChannelSettings.model_validate({"kind": "slack", "name": "slack"} | fields))


# Our own links in a digest's mrkdwn; anything else starting with "<" would be Slack markup.
OUR_LINK = re.compile(r"<https://[^<>|\s]+\|(?:open the post|acknowledge)>")


def digest_item_text(number: int, severity: str) -> str:
    return (
        f"*{severity}* [{severity}] case c-{number} escalated to care (level 1)\n"
        ">I will sue you if my refund is not here by Friday\n"
        f"@ana (12,000 followers) · <https://social.example/@ana/{number}|open the post>"
        f" · <https://clamor.example/ack/c-{number}?sig=abc|acknowledge>"
    )


async def test_a_digest_lists_every_item_under_its_title(http: OutboundClient) -> None:
    async with serve({("POST", HOOK_PATH): answering(b"ok", content_type="text/html")}) as server:
        await SlackChannel(webhook_settings(server), http=http).send(digest("dg-1:slack", n=3))
    assert sent(server) == {
        "text": "3 notifications for care (CRITICAL)",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "3 notifications for care (CRITICAL)"}},
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "\n\n".join(
                        digest_item_text(number, severity)
                        for number, severity in ((1, "HIGH"), (2, "CRITICAL"), (3, "MEDIUM"))
                    ),
                },
            },
        ],
        "unfurl_links": False,
        "unfurl_media": False,
    }


def test_a_digest_of_25_long_items_shows_every_one_within_slacks_limits() -> None:
    longest = digest("dg-1:slack", n=25)
    longest = replace(
        longest,
        items=tuple(
            replace(
                item,
                title=f"{item.case_id} " + "&" * 300,
                post_text="<&>" * 200,
                author_handle="&" * 100,
                post_url="https://social.example/?" + "a=1&" * 99,
            )
            for item in longest.items
        ),
    )
    payload = slack_payload(longest)
    sections = [block["text"]["text"] for block in payload["blocks"] if block["type"] == "section"]
    assert len(payload["blocks"]) <= MAX_BLOCKS
    assert all(len(text) <= SECTION_CHARS for text in sections)
    for number in range(1, 26):
        assert sum(f"* c-{number} &amp;" in text for text in sections) == 1
    assert all(block["type"] != "context" for block in payload["blocks"])


def test_a_digest_too_large_for_50_blocks_says_how_many_items_are_left_out() -> None:
    huge = hostile_digest("dg-1:slack", n=200)
    huge = replace(huge, items=tuple(replace(item, post_text="&" * 500) for item in huge.items))
    payload = slack_payload(huge)
    blocks = payload["blocks"]
    assert len(blocks) == MAX_BLOCKS
    assert all(len(block["text"]["text"]) <= SECTION_CHARS for block in blocks[1:-1])
    shown = sum(text.count("refund now") for text in mrkdwn_texts(payload))
    assert blocks[-1] == {"type": "context", "elements": [{"type": "mrkdwn", "text": f"…and {200 - shown} more"}]}
    assert 0 < shown < 200


async def test_a_hostile_digest_stays_inert_text_with_only_our_https_links(http: OutboundClient) -> None:
    async with serve({("POST", HOOK_PATH): answering(b"ok", content_type="text/html")}) as server:
        await SlackChannel(webhook_settings(server), http=http).send(hostile_digest("dg-2:slack"))
    payload = sent(server)
    texts = list(mrkdwn_texts(payload))
    for text in texts:
        for line in OUR_LINK.sub("", text).split("\n"):
            assert "<" not in line
            assert ">" not in line.removeprefix(">")
    section = payload["blocks"][1]["text"]["text"]
    assert section.count(">&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil|bank&gt; &lt;script&gt;") == 3
    assert section.count("@mallory Bcc: victim@example.com (12,000 followers)") == 3
    assert "\r" not in section
    assert "javascript:alert(2)" not in section
    assert [link for text in texts for link in OUR_LINK.findall(text)] == [
        "<https://clamor.example/ack/c-1?sig=abc|acknowledge>",
        "<https://clamor.example/ack/c-2?sig=abc|acknowledge>",
    ]
    assert payload["text"].startswith("&lt;!channel&gt; &lt;script&gt;")
    header = payload["blocks"][0]["text"]
    assert header["type"] == "plain_text"
    assert "\n" not in header["text"]
    assert urls(payload) == []
