"""The SMS channel against a local server that answers as Twilio's Messages API documents."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp import web

from services.notifier.channels.sms import MAX_BODY_CHARS, SmsChannel
from services.notifier.config import SmsChannelSettings
from services.notifier.errors import ChannelConfigError, ChannelError
from services.shared.outbound import OutboundClient
from tests.http_server import LocalHttpServer, RecordedRequest, serve
from tests.integration.channel_cases import digest, escalation, hostile_digest, hostile_escalation

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "twilio-auth-token"
PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
FROM = "+15005550006"
ONCALL = "+15551230001"
LEAD = "+15551230002"

ESCALATION = escalation("esc-1:sms")
EXPECTED_BODY = (
    "[HIGH] case c-1 escalated to care (level 1)\n"
    "Flags: legal_threat, viral\n"
    "Why: legal threat from a large account\n"
    "By: @ana (12000 followers) on mastodon\n"
    'Post: "I will sue you if my refund is not here by Friday"\n'
    "Case: c-1, team care, level 1\n"
    "Due: 2026-03-01T13:00:00Z\n"
    "Link: https://social.example/@ana/1\n"
    "Ack: https://clamor.example/ack/c-1?sig=abc"
)


@dataclass
class FakeTwilio:
    """Messages.json: basic auth with the account's SID and token, form fields To, From and Body."""

    # Answers (status, JSON, headers) given, in order, to requests for one number; then 201.
    scripted: dict[str, list[tuple[int, dict[str, Any], dict[str, str]]]] = field(default_factory=dict)
    created: int = 0

    async def messages(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response(
                {"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003"},
                status=401,
            )
        form = await request.post()
        to = str(form["To"])
        if self.scripted.get(to):
            status, answer, headers = self.scripted[to].pop(0)
            return web.json_response(answer, status=status, headers=headers)
        self.created += 1
        return web.json_response(
            {"sid": f"SM{self.created:032x}", "to": to, "from": form["From"], "body": form["Body"], "status": "queued"},
            status=201,
        )


def twilio_error(code: int, message: str, status: int) -> tuple[int, dict[str, Any], dict[str, str]]:
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    return status, {"code": code, "message": message, "more_info": more_info, "status": status}, {}


@pytest.fixture
def twilio() -> FakeTwilio:
    return FakeTwilio()


@pytest.fixture
async def server(twilio: FakeTwilio) -> AsyncIterator[LocalHttpServer]:
    async with serve({("POST", PATH): twilio.messages}) as running:
        yield running


def settings(server: LocalHttpServer, **changes: Any) -> SmsChannelSettings:
    values: dict[str, Any] = {
        "kind": "sms",
        "name": "pager-sms",
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from_number": FROM,
        "to_numbers": [ONCALL, LEAD],
        "api_base_url": server.base_url,
    }
    return SmsChannelSettings(**(values | changes))


def form(request: RecordedRequest) -> dict[str, list[str]]:
    return parse_qs(request.body.decode(), keep_blank_values=True, strict_parsing=True)


def sid(number: int) -> str:
    return f"SM{number:032x}"


async def test_posts_one_form_per_number_with_basic_auth(server: LocalHttpServer, http: OutboundClient) -> None:
    delivery = await SmsChannel(settings(server), http=http).send(ESCALATION)

    basic = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert [(r.method, r.path, r.headers["Authorization"]) for r in server.requests] == [("POST", PATH, basic)] * 2
    assert {r.headers["Content-Type"] for r in server.requests} == {"application/x-www-form-urlencoded"}
    assert [form(r) for r in server.requests] == [
        {"To": [ONCALL], "From": [FROM], "Body": [EXPECTED_BODY]},
        {"To": [LEAD], "From": [FROM], "Body": [EXPECTED_BODY]},
    ]
    assert delivery.channel == "pager-sms"
    assert delivery.remote_id == f"{sid(1)},{sid(2)}"


async def test_a_long_post_is_cut_so_the_body_fits_one_twilio_message(
    server: LocalHttpServer, http: OutboundClient
) -> None:
    await SmsChannel(settings(server, to_numbers=[ONCALL]), http=http).send(
        replace(ESCALATION, post_text="late again " * 400, reason="r" * 400, title="t" * 400)
    )

    [body] = form(server.requests[0])["Body"]
    assert len(body) <= MAX_BODY_CHARS
    lines = body.split("\n")
    assert [line.split(":", 1)[0] for line in lines] == [
        "t" * 199 + "…",
        "Flags",
        "Why",
        "By",
        "Post",
        "Case",
        "Due",
        "Link",
        "Ack",
    ]
    assert lines[4].endswith('…"')


async def test_hostile_text_stays_on_its_own_line_and_its_javascript_link_is_dropped(
    server: LocalHttpServer, http: OutboundClient
) -> None:
    hostile = hostile_escalation("esc-1:sms")
    await SmsChannel(settings(server, to_numbers=[ONCALL]), http=http).send(hostile)

    [body] = form(server.requests[0])["Body"]
    assert "\r" not in body
    assert body.split("\n") == [
        "Refund now Bcc: victim@example.com",
        "Flags: legal_threat, viral",
        "Why: legal threat from a large account",
        "By: @mallory Bcc: victim@example.com (12000 followers) on mastodon",
        'Post: "<!channel> <@U123> <https://evil|bank> <script>alert(1)</script> line1 Bcc: victim@example.com '
        '[bank](https://evil.example) javascript:alert(1)"',
        "Case: c-1, team care, level 1",
        "Due: 2026-03-01T13:00:00Z",
        "Ack: https://clamor.example/ack/c-1?sig=abc",
    ]


async def test_a_digest_is_texted_as_its_title_count_and_most_severe_item(
    server: LocalHttpServer, http: OutboundClient
) -> None:
    await SmsChannel(settings(server), http=http).send(digest("dg-1:sms", n=12))

    assert [form(r)["Body"] for r in server.requests] == [
        [
            "12 notifications for care (CRITICAL)\n"
            "Items: 12\n"
            "Top: CRITICAL: [CRITICAL] case c-2 escalated to care (level 1)"
        ]
    ] * 2


async def test_a_hostile_digest_stays_three_lines_within_the_length_cap(
    server: LocalHttpServer, http: OutboundClient
) -> None:
    hostile = hostile_digest("dg-2:sms", n=200, title="x" * 3000 + "\r\nBcc: victim@example.com")
    await SmsChannel(settings(server, to_numbers=[ONCALL]), http=http).send(hostile)

    [body] = form(server.requests[0])["Body"]
    assert len(body) <= MAX_BODY_CHARS
    assert "\r" not in body
    assert body.split("\n") == [
        "x" * 199 + "…",
        "Items: 200",
        "Top: CRITICAL: [CRITICAL] c-2 <!here> refund now Bcc: victim@example.com",
    ]


async def test_throttled_request_waits_as_twilio_asks(
    server: LocalHttpServer, twilio: FakeTwilio, http: OutboundClient
) -> None:
    twilio.scripted[ONCALL] = [(429, {"code": 20429, "message": "Too Many Requests"}, {"Retry-After": "7"})]

    with pytest.raises(ChannelError, match="20429") as raised:
        await SmsChannel(settings(server), http=http).send(ESCALATION)
    assert raised.value.retry_after_s == 7.0
    assert len(server.requests) == 1


async def test_wrong_credentials_are_a_config_error(server: LocalHttpServer, http: OutboundClient) -> None:
    with pytest.raises(ChannelConfigError, match=r"HTTP 401.*20003: Authenticate"):
        await SmsChannel(settings(server, auth_token="wrong"), http=http).send(ESCALATION)


async def test_twilio_refusal_names_its_code_and_message(
    server: LocalHttpServer, twilio: FakeTwilio, http: OutboundClient
) -> None:
    twilio.scripted[ONCALL] = [twilio_error(21211, "The 'To' number +15551230001 is not a valid phone number.", 400)]

    with pytest.raises(ChannelConfigError, match=r"Twilio error 21211: The 'To' number .* is not a valid phone number"):
        await SmsChannel(settings(server, to_numbers=[ONCALL]), http=http).send(ESCALATION)


async def test_a_number_refused_for_good_does_not_keep_the_others_from_the_message(
    server: LocalHttpServer, twilio: FakeTwilio, http: OutboundClient
) -> None:
    twilio.scripted[ONCALL] = [twilio_error(21610, "Attempt to send to unsubscribed recipient", 400)]

    delivery = await SmsChannel(settings(server), http=http).send(ESCALATION)

    assert [form(r)["To"] for r in server.requests] == [[ONCALL], [LEAD]]
    assert delivery.remote_id == sid(1)
    assert "+15551230001" in delivery.detail
    assert "21610" in delivery.detail


async def test_retry_after_a_server_error_texts_only_the_numbers_still_missing_it(
    server: LocalHttpServer, twilio: FakeTwilio, http: OutboundClient
) -> None:
    twilio.scripted[LEAD] = [twilio_error(20500, "Internal Server Error", 500)]
    channel = SmsChannel(settings(server), http=http)

    with pytest.raises(ChannelError, match="HTTP 500") as raised:
        await channel.send(ESCALATION)
    assert not isinstance(raised.value, ChannelConfigError)
    delivery = await channel.send(ESCALATION)

    assert [form(r)["To"] for r in server.requests] == [[ONCALL], [LEAD], [LEAD]]
    assert delivery.remote_id == f"{sid(1)},{sid(2)}"


async def test_without_a_client_it_opens_one_within_allow_hosts_and_closes_it(
    server: LocalHttpServer, http: OutboundClient
) -> None:
    channel = SmsChannel(settings(server, to_numbers=[ONCALL], allow_hosts=["127.0.0.1"]))
    await channel.send(ESCALATION)
    await channel.aclose()

    borrowing = SmsChannel(settings(server, to_numbers=[LEAD]), http=http)
    await borrowing.aclose()
    await borrowing.send(ESCALATION)
    assert [form(r)["To"] for r in server.requests] == [[ONCALL], [LEAD]]


async def test_loopback_api_is_refused_unless_allowed(server: LocalHttpServer) -> None:
    channel = SmsChannel(settings(server))
    try:
        with pytest.raises(ChannelConfigError, match="loopback"):
            await channel.send(ESCALATION)
    finally:
        await channel.aclose()
    assert server.requests == []
