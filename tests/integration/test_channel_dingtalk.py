"""The DingTalk channel against a local robot webhook that checks tokens and signatures as DingTalk does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from services.notifier.channels.dingtalk import CONTENT_BYTES, DingTalkChannel
from services.notifier.config import DingTalkChannelSettings
from services.notifier.errors import ChannelConfigError, ChannelError
from services.shared.nats_server import free_port
from services.shared.outbound import OutboundClient
from tests.http_server import LocalHttpServer, serve
from tests.integration.channel_cases import (
    DIGEST_SEVERITIES,
    HOSTILE_TEXT,
    digest,
    escalation,
    hostile_digest,
    hostile_escalation,
)

PATH = "/robot/send"
TOKEN = "d3adb33f-robot-access-token"
SECRET = "SEC0123456789abcdef"
HOSTILE_POST = HOSTILE_TEXT + " @all"

ESCALATION = escalation("esc-1:ding")
EXPECTED_CONTENT = (
    "[HIGH] case c-1 escalated to care (level 1)\n"
    "Severity: HIGH\n"
    "Risk flags: legal_threat, viral\n"
    "Reason: legal threat from a large account\n"
    "Author: ana (12000 followers) on mastodon\n"
    'Post: "I will sue you if my refund is not here by Friday"\n'
    "Link: https://social.example/@ana/1\n"
    "Case: c-1, team care, level 1\n"
    "First response due: 2026-03-01T13:00:00Z\n"
    "Acknowledge: https://clamor.example/ack/c-1?sig=abc\n"
    "-- Clamor"
)
EMPTY_AT: dict[str, list[str]] = {"atMobiles": [], "atUserIds": []}


@dataclass
class FakeRobot:
    """A group robot: access_token, and with a secret the timestamp/sign check of DingTalk's docs."""

    secret: str = ""
    # An errcode the robot answers instead of posting (after the token and signature checks pass).
    refuse_with: tuple[int, str] | None = None
    # An HTTP status other than 200, as a failing gateway in front of DingTalk answers.
    http_status: int = 200

    def signature_ok(self, query: Any) -> bool:
        timestamp = query.get("timestamp", "")
        if not timestamp.isdigit() or abs(int(timestamp) - time.time() * 1000) > 3600 * 1000:
            return False
        string_to_sign = f"{timestamp}\n{self.secret}"
        digest = hmac.new(self.secret.encode(), string_to_sign.encode(), hashlib.sha256).digest()
        return hmac.compare_digest(base64.b64encode(digest).decode(), query.get("sign", ""))

    async def send(self, request: web.Request) -> web.Response:
        if self.http_status != 200:
            return web.Response(status=self.http_status, text="<html>Bad Gateway</html>")
        if request.query.get("access_token") != TOKEN:
            return web.json_response({"errcode": 300001, "errmsg": "token is not exist"})
        if self.secret and not self.signature_ok(request.query):
            return web.json_response(
                {"errcode": 310000, "errmsg": "sign not match, more: [https://ding-doc.dingtalk.com/doc]"}
            )
        json.loads(await request.read())
        if self.refuse_with is not None:
            errcode, errmsg = self.refuse_with
            return web.json_response({"errcode": errcode, "errmsg": errmsg})
        return web.json_response({"errcode": 0, "errmsg": "ok"})


@pytest.fixture
def robot() -> FakeRobot:
    return FakeRobot(secret=SECRET)


@pytest.fixture
async def server(robot: FakeRobot) -> AsyncIterator[LocalHttpServer]:
    async with serve({("POST", PATH): robot.send}) as running:
        yield running


def settings(server: LocalHttpServer, **changes: Any) -> DingTalkChannelSettings:
    values: dict[str, Any] = {
        "kind": "dingtalk",
        "name": "ding",
        "webhook_url": server.url(f"{PATH}?access_token={TOKEN}"),
        "secret": SECRET,
    }
    return DingTalkChannelSettings(**(values | changes))


def content(server: LocalHttpServer) -> str:
    return str(json.loads(server.requests[0].body)["text"]["content"])


async def test_posts_a_plain_text_message_that_at_mentions_nobody(
    server: LocalHttpServer, robot: FakeRobot, http: OutboundClient
) -> None:
    robot.secret = ""
    delivery = await DingTalkChannel(settings(server, secret=""), http=http).send(ESCALATION)

    [request] = server.requests
    assert request.query == {"access_token": TOKEN}
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(request.body) == {"msgtype": "text", "text": {"content": EXPECTED_CONTENT}, "at": EMPTY_AT}
    assert delivery.channel == "ding"
    assert delivery.detail == "ok"


async def test_signed_request_passes_dingtalks_signature_check(server: LocalHttpServer, http: OutboundClient) -> None:
    await DingTalkChannel(settings(server), http=http).send(ESCALATION)

    [request] = server.requests
    assert sorted(request.query) == ["access_token", "sign", "timestamp"]
    assert request.query["access_token"] == TOKEN
    assert json.loads(request.body) == {"msgtype": "text", "text": {"content": EXPECTED_CONTENT}, "at": EMPTY_AT}


async def test_wrong_secret_is_a_config_error_naming_dingtalks_errcode(
    server: LocalHttpServer, http: OutboundClient
) -> None:
    with pytest.raises(ChannelConfigError, match="errcode 310000: sign not match"):
        await DingTalkChannel(settings(server, secret="SECwrong"), http=http).send(ESCALATION)


async def test_unknown_token_is_a_config_error(server: LocalHttpServer, http: OutboundClient) -> None:
    url = server.url(f"{PATH}?access_token=revoked")

    with pytest.raises(ChannelConfigError, match="errcode 300001: token is not exist"):
        await DingTalkChannel(settings(server, webhook_url=url), http=http).send(ESCALATION)


async def test_sending_too_fast_is_retried_after_a_minute(
    server: LocalHttpServer, robot: FakeRobot, http: OutboundClient
) -> None:
    robot.refuse_with = (130101, "send too fast, exceed 20 times per minute")

    with pytest.raises(ChannelError, match="130101") as raised:
        await DingTalkChannel(settings(server), http=http).send(ESCALATION)
    assert not isinstance(raised.value, ChannelConfigError)
    assert raised.value.retry_after_s == 60.0


async def test_hostile_text_stays_literal_on_its_own_line(server: LocalHttpServer, http: OutboundClient) -> None:
    hostile = hostile_escalation("esc-1:ding", post_text=HOSTILE_POST)
    await DingTalkChannel(settings(server), http=http).send(hostile)

    body = json.loads(server.requests[0].body)
    assert body["msgtype"] == "text"
    assert body["at"] == EMPTY_AT
    assert "\r" not in body["text"]["content"]
    assert body["text"]["content"].split("\n") == [
        "Refund now Bcc: victim@example.com",
        "Severity: HIGH",
        "Risk flags: legal_threat, viral",
        "Reason: legal threat from a large account",
        "Author: mallory Bcc: victim@example.com (12000 followers) on mastodon",
        'Post: "<!channel> <@U123> <https://evil|bank> <script>alert(1)</script> line1 Bcc: victim@example.com '
        '[bank](https://evil.example) javascript:alert(1) @all"',
        "Case: c-1, team care, level 1",
        "First response due: 2026-03-01T13:00:00Z",
        "Acknowledge: https://clamor.example/ack/c-1?sig=abc",
        "-- Clamor",
    ]


async def test_a_digest_lists_every_item_as_plain_text(server: LocalHttpServer, http: OutboundClient) -> None:
    await DingTalkChannel(settings(server), http=http).send(digest("dg-1:ding", n=2))

    assert json.loads(server.requests[0].body) == {
        "msgtype": "text",
        "text": {
            "content": (
                "2 notifications for care (CRITICAL)\n"
                "\n"
                "1. HIGH: [HIGH] case c-1 escalated to care (level 1)\n"
                'Post: "I will sue you if my refund is not here by Friday"\n'
                "Author: ana (12,000 followers)\n"
                "Link: https://social.example/@ana/1\n"
                "Acknowledge: https://clamor.example/ack/c-1?sig=abc\n"
                "\n"
                "2. CRITICAL: [CRITICAL] case c-2 escalated to care (level 1)\n"
                'Post: "I will sue you if my refund is not here by Friday"\n'
                "Author: ana (12,000 followers)\n"
                "Link: https://social.example/@ana/2\n"
                "Acknowledge: https://clamor.example/ack/c-2?sig=abc\n"
                "-- Clamor"
            )
        },
        "at": EMPTY_AT,
    }


async def test_a_digest_of_25_shows_every_item_and_a_larger_one_fits_dingtalks_size_limit(
    server: LocalHttpServer, http: OutboundClient
) -> None:
    channel = DingTalkChannel(settings(server), http=http)
    await channel.send(digest("dg-1:ding", n=25))
    await channel.send(hostile_digest("dg-2:ding", n=200, title="\u6c47\u603b" * 100))

    everything, capped = (json.loads(request.body)["text"]["content"] for request in server.requests)
    for number in range(1, 26):
        severity = DIGEST_SEVERITIES[(number - 1) % len(DIGEST_SEVERITIES)]
        assert f"\n{number}. {severity}: [{severity}] case c-{number} escalated to care (level 1)\n" in everything
    assert "more" not in everything
    assert len(json.dumps(capped, ensure_ascii=False).encode()) <= CONTENT_BYTES
    shown = capped.count(" refund now ")
    assert 25 <= shown < 200
    assert capped.endswith(f"\n\n\u2026and {200 - shown} more\n-- Clamor")


async def test_a_hostile_digest_stays_literal_one_fact_a_line_and_mentions_nobody(
    server: LocalHttpServer, http: OutboundClient
) -> None:
    await DingTalkChannel(settings(server), http=http).send(hostile_digest("dg-2:ding", title="@all " + HOSTILE_POST))

    body = json.loads(server.requests[0].body)
    assert body["msgtype"] == "text"
    assert body["at"] == EMPTY_AT
    lines = body["text"]["content"].split("\n")
    assert "\r" not in body["text"]["content"]
    assert lines[0].startswith("@all <!channel> <@U123> <https://evil|bank> <script>alert(1)</script> line1 Bcc:")
    assert lines[2:8] == [
        "1. HIGH: [HIGH] c-1 <!here> refund now Bcc: victim@example.com",
        'Post: "<!channel> <@U123> <https://evil|bank> <script>alert(1)</script> line1 Bcc: victim@example.com '
        '[bank](https://evil.example) javascript:alert(1)"',
        "Author: mallory Bcc: victim@example.com (12,000 followers)",
        "Acknowledge: https://clamor.example/ack/c-1?sig=abc",
        "",
        "2. CRITICAL: [CRITICAL] c-2 <!here> refund now Bcc: victim@example.com",
    ]
    assert not [line for line in lines if line.startswith("Link:")]
    assert "javascript:alert(2)" not in body["text"]["content"]
    assert lines[-1] == "-- Clamor"


async def test_server_error_is_retried(server: LocalHttpServer, robot: FakeRobot, http: OutboundClient) -> None:
    robot.http_status = 502

    with pytest.raises(ChannelError, match="HTTP 502") as raised:
        await DingTalkChannel(settings(server), http=http).send(ESCALATION)
    assert not isinstance(raised.value, ChannelConfigError)


async def test_errors_never_reveal_the_access_token_or_signature(http: OutboundClient) -> None:
    url = f"http://127.0.0.1:{free_port()}{PATH}?access_token={TOKEN}"

    with pytest.raises(ChannelError) as raised:
        await DingTalkChannel(
            DingTalkChannelSettings(kind="dingtalk", name="ding", webhook_url=url, secret=SECRET), http=http
        ).send(ESCALATION)
    logged = "".join(traceback.format_exception(raised.value))
    assert "127.0.0.1" in logged
    assert TOKEN not in logged
    assert "sign=" not in logged


async def test_without_a_client_it_opens_one_within_allow_hosts_and_closes_it(server: LocalHttpServer) -> None:
    channel = DingTalkChannel(settings(server, allow_hosts=["127.0.0.1"]))
    await channel.send(ESCALATION)
    await channel.aclose()

    assert len(server.requests) == 1
