"""The e-mail channel against a real SMTP server (aiosmtpd) on loopback, with and without STARTTLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from services.notifier.channels.email import EmailChannel, message_id
from services.notifier.config import EmailChannelSettings
from services.notifier.errors import ChannelConfigError, ChannelError
from services.shared.nats_server import free_port
from tests.integration.channel_cases import DIGEST_SEVERITIES, digest, escalation, hostile_digest, hostile_escalation

HOST = "127.0.0.1"
RECIPIENTS = ["oncall@acme.example", "care-lead@acme.example"]

ESCALATION = escalation("esc-1:mail")


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool

    def parsed(self) -> EmailMessage:
        parsed = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps what it accepts and answers RCPT and DATA as told."""

    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 2.0.0 Ok: queued as 4XyZ"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if not self.data_reply.startswith("250"):
            return self.data_reply
        assert isinstance(envelope.content, bytes)
        self.received.append(
            Received(str(envelope.mail_from), list(envelope.rcpt_tos), envelope.content, session.ssl is not None)
        )
        return self.data_reply

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=auth_data.password == b"s3cret", handled=False)


def start(mailbox: Mailbox, **smtp: Any) -> Controller:
    controller = Controller(mailbox, hostname=HOST, port=free_port(), **smtp)
    controller.start()
    return controller


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def plain_server(mailbox: Mailbox) -> Iterator[Controller]:
    controller = start(mailbox)
    yield controller
    controller.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(mailbox: Mailbox, ca: trustme.CA) -> Iterator[Controller]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    controller = start(
        mailbox, tls_context=context, require_starttls=True, authenticator=mailbox.authenticate, auth_required=False
    )
    yield controller
    controller.stop()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def settings(port: int, **changes: Any) -> EmailChannelSettings:
    values: dict[str, Any] = {
        "kind": "email",
        "name": "mail",
        "host": HOST,
        "port": port,
        "starttls": False,
        "sender": "Clamor <clamor@acme.example>",
        "recipients": RECIPIENTS,
        "timeout_s": 5.0,
    }
    return EmailChannelSettings(**(values | changes))


def parts(received: Received) -> tuple[str, str]:
    """The plain-text and HTML bodies, with line ends as the text was written."""
    parsed = received.parsed()
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None
    assert html is not None
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    return str(text.get_content()).replace("\r\n", "\n"), str(html.get_content()).replace("\r\n", "\n")


def header_lines(received: Received) -> list[str]:
    head = received.content.split(b"\r\n\r\n", 1)[0].decode()
    return head.split("\r\n")


async def test_sends_one_message_from_the_sender_to_exactly_the_configured_recipients(
    plain_server: Controller, mailbox: Mailbox
) -> None:
    delivery = await EmailChannel(settings(plain_server.port)).send(ESCALATION)

    [received] = mailbox.received
    assert received.mail_from == "clamor@acme.example"
    assert received.rcpt_tos == RECIPIENTS
    parsed = received.parsed()
    assert [parsed.get_all(name) for name in ("From", "To", "Subject")] == [
        ["Clamor <clamor@acme.example>"],
        ["oncall@acme.example, care-lead@acme.example"],
        ["[HIGH] case c-1 escalated to care (level 1)"],
    ]
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert delivery.channel == "mail"
    assert delivery.remote_id == message_id("esc-1:mail")
    assert "queued as 4XyZ" in delivery.detail


async def test_plain_text_part_shows_every_fact_a_responder_needs(plain_server: Controller, mailbox: Mailbox) -> None:
    await EmailChannel(settings(plain_server.port)).send(ESCALATION)

    text, _ = parts(mailbox.received[0])
    assert text == (
        "[HIGH] case c-1 escalated to care (level 1)\n"
        "\n"
        "Severity: HIGH\n"
        "Risk flags: legal_threat, viral\n"
        "Reason: legal threat from a large account\n"
        "\n"
        "Post by @ana (12000 followers) on mastodon:\n"
        "\n"
        "> I will sue you if my refund is not here by Friday\n"
        "Source: https://social.example/@ana/1\n"
        "\n"
        "Case: c-1\n"
        "Team: care\n"
        "Level: 1\n"
        "First response due: 2026-03-01T13:00:00Z\n"
        "\n"
        "Acknowledge: https://clamor.example/ack/c-1?sig=abc\n"
        "\n"
        "-- \n"
        "Sent by Clamor.\n"
    )


async def test_html_part_shows_the_same_facts_with_links(plain_server: Controller, mailbox: Mailbox) -> None:
    await EmailChannel(settings(plain_server.port)).send(ESCALATION)

    _, html = parts(mailbox.received[0])
    for fact in (
        '<h2 style="font-size: 18px;">[HIGH] case c-1 escalated to care (level 1)</h2>',
        '<th align="left">Severity</th><td>HIGH</td>',
        '<th align="left">Risk flags</th><td>legal_threat, viral</td>',
        '<th align="left">Reason</th><td>legal threat from a large account</td>',
        '<th align="left">Author</th><td>@ana (12000 followers)</td>',
        '<th align="left">Platform</th><td>mastodon</td>',
        '<th align="left">Case</th><td>c-1</td>',
        '<th align="left">Team</th><td>care</td>',
        '<th align="left">Level</th><td>1</td>',
        '<th align="left">First response due</th><td>2026-03-01T13:00:00Z</td>',
        ">I will sue you if my refund is not here by Friday</blockquote>",
        '<a href="https://social.example/@ana/1">View the post</a>',
        '<a href="https://clamor.example/ack/c-1?sig=abc"',
        ">Acknowledge</a>",
    ):
        assert fact in html


async def test_long_posts_are_quoted_up_to_a_thousand_characters(plain_server: Controller, mailbox: Mailbox) -> None:
    await EmailChannel(settings(plain_server.port)).send(replace(ESCALATION, post_text="late " * 1000))

    text, _ = parts(mailbox.received[0])
    [quoted] = [line for line in text.splitlines() if line.startswith("> ")]
    assert len(quoted) <= len("> ") + 1000
    assert quoted.endswith("…")


async def test_repeats_of_a_notification_carry_the_same_message_id(plain_server: Controller, mailbox: Mailbox) -> None:
    channel = EmailChannel(settings(plain_server.port))
    await channel.send(ESCALATION)
    await channel.send(ESCALATION)
    await channel.send(replace(ESCALATION, id="esc-2:mail"))

    ids = [r.parsed()["Message-ID"] for r in mailbox.received]
    assert ids == [message_id("esc-1:mail"), message_id("esc-1:mail"), message_id("esc-2:mail")]
    assert {r.parsed()["References"] for r in mailbox.received} == {message_id("clamor-case-c-1")}


async def test_acknowledge_link_appears_only_for_an_https_url(plain_server: Controller, mailbox: Mailbox) -> None:
    await EmailChannel(settings(plain_server.port)).send(replace(ESCALATION, ack_url="http://clamor.example/ack/c-1"))

    text, html = parts(mailbox.received[0])
    assert "Acknowledge" not in text
    assert "Acknowledge" not in html
    assert "http://clamor.example" not in html


async def test_hostile_post_and_author_text_cannot_add_headers_recipients_or_markup(
    plain_server: Controller, mailbox: Mailbox
) -> None:
    hostile = hostile_escalation("esc-1:mail")
    await EmailChannel(settings(plain_server.port)).send(hostile)

    [received] = mailbox.received
    assert received.rcpt_tos == RECIPIENTS
    parsed = received.parsed()
    assert parsed.get_all("Bcc") is None
    assert not [line for line in header_lines(received) if line.lower().startswith("bcc")]
    subject = parsed["Subject"]
    assert "\r" not in subject
    assert "\n" not in subject
    assert subject == "Refund now Bcc: victim@example.com"
    text, html = parts(received)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    assert 'href="javascript:' not in html.lower()
    assert "View the post" not in html
    assert "Source:" not in text
    [quote] = [line for line in text.splitlines() if line.startswith("> ")]
    assert "line1 Bcc: victim@example.com" in quote
    assert "Post by @mallory Bcc: victim@example.com (12000 followers)" in text


async def test_a_digest_is_one_mail_whose_subject_is_its_title_and_whose_parts_list_every_item(
    plain_server: Controller, mailbox: Mailbox
) -> None:
    delivery = await EmailChannel(settings(plain_server.port)).send(digest("dg-1:mail", n=2))

    [received] = mailbox.received
    assert received.rcpt_tos == RECIPIENTS
    parsed = received.parsed()
    assert parsed["Subject"] == "2 notifications for care (CRITICAL)"
    assert parsed["Message-ID"] == delivery.remote_id == message_id("dg-1:mail")
    assert parsed["References"] == message_id("clamor-group-care")
    text, html = parts(received)
    assert text == (
        "2 notifications for care (CRITICAL)\n"
        "\n"
        "2 items:\n"
        "\n"
        "1. HIGH: [HIGH] case c-1 escalated to care (level 1)\n"
        "   > I will sue you if my refund is not here by Friday\n"
        "   Post by @ana (12,000 followers)\n"
        "   Source: https://social.example/@ana/1\n"
        "   Acknowledge: https://clamor.example/ack/c-1?sig=abc\n"
        "\n"
        "2. CRITICAL: [CRITICAL] case c-2 escalated to care (level 1)\n"
        "   > I will sue you if my refund is not here by Friday\n"
        "   Post by @ana (12,000 followers)\n"
        "   Source: https://social.example/@ana/2\n"
        "   Acknowledge: https://clamor.example/ack/c-2?sig=abc\n"
        "\n"
        "-- \n"
        "Sent by Clamor.\n"
    )
    assert '<h2 style="font-size: 18px;">2 notifications for care (CRITICAL)</h2>' in html
    for number, severity in ((1, "HIGH"), (2, "CRITICAL")):
        assert f"<strong>{severity}</strong> [{severity}] case c-{number} escalated to care (level 1)</p>" in html
        assert f'<a href="https://social.example/@ana/{number}">View the post</a>' in html
        assert f'<a href="https://clamor.example/ack/c-{number}?sig=abc"' in html
    assert html.count(">I will sue you if my refund is not here by Friday</blockquote>") == 2
    assert html.count("<li ") == 2


async def test_a_large_digest_lists_all_of_its_items_in_both_parts(plain_server: Controller, mailbox: Mailbox) -> None:
    await EmailChannel(settings(plain_server.port)).send(digest("dg-1:mail", n=200))

    text, html = parts(mailbox.received[0])
    for number in range(1, 201):
        severity = DIGEST_SEVERITIES[(number - 1) % len(DIGEST_SEVERITIES)]
        assert f"{number}. {severity}: [{severity}] case c-{number} escalated to care (level 1)\n" in text
        assert f"[{severity}] case c-{number} escalated to care (level 1)</p>" in html


async def test_a_hostile_digest_cannot_add_headers_recipients_markup_or_script_links(
    plain_server: Controller, mailbox: Mailbox
) -> None:
    await EmailChannel(settings(plain_server.port)).send(hostile_digest("dg-2:mail"))

    [received] = mailbox.received
    assert received.rcpt_tos == RECIPIENTS
    parsed = received.parsed()
    assert parsed.get_all("Bcc") is None
    assert not [line for line in header_lines(received) if line.lower().startswith("bcc")]
    subject = parsed["Subject"]
    assert "\r" not in subject
    assert "\n" not in subject
    assert subject == "<!channel> <script>alert(1)</script> [bank](https://evil.example) Bcc: victim@example.com"
    text, html = parts(received)
    assert "<script>" not in html
    assert "&lt;!channel&gt; &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt; line1 Bcc: victim@example.com") == 3
    assert "javascript:alert(2)" not in html
    assert 'href="javascript:' not in html.lower()
    assert "View the post" not in html
    assert html.count(">Acknowledge</a>") == 2
    assert "Source:" not in text
    assert "javascript:alert(2)" not in text
    quotes = [line for line in text.splitlines() if line.startswith("   > ")]
    assert len(quotes) == 3
    assert all("line1 Bcc: victim@example.com" in quote for quote in quotes)
    assert "1. HIGH: [HIGH] c-1 <!here> refund now Bcc: victim@example.com\n" in text


async def test_starttls_verifies_the_server_against_the_configured_ca(
    tls_server: Controller, mailbox: Mailbox, ca_file: Path
) -> None:
    await EmailChannel(settings(tls_server.port, starttls=True, ca_file=ca_file)).send(ESCALATION)

    [received] = mailbox.received
    assert received.tls
    assert received.rcpt_tos == RECIPIENTS


async def test_certificate_from_an_untrusted_ca_is_a_config_error(tls_server: Controller, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))

    with pytest.raises(ChannelConfigError, match="certificate"):
        await EmailChannel(settings(tls_server.port, starttls=True, ca_file=other)).send(ESCALATION)


async def test_server_without_starttls_is_a_config_error_when_starttls_is_on(
    plain_server: Controller, mailbox: Mailbox
) -> None:
    with pytest.raises(ChannelConfigError, match="STARTTLS"):
        await EmailChannel(settings(plain_server.port, starttls=True)).send(ESCALATION)
    assert mailbox.received == []


async def test_logs_in_with_the_configured_credentials_after_starttls(
    tls_server: Controller, mailbox: Mailbox, ca_file: Path
) -> None:
    channel = EmailChannel(
        settings(tls_server.port, starttls=True, ca_file=ca_file, username="clamor", password="s3cret")
    )
    await channel.send(ESCALATION)

    assert mailbox.logins == [("clamor", "s3cret")]
    assert len(mailbox.received) == 1


async def test_refused_login_is_a_config_error(tls_server: Controller, mailbox: Mailbox, ca_file: Path) -> None:
    channel = EmailChannel(
        settings(tls_server.port, starttls=True, ca_file=ca_file, username="clamor", password="wrong")
    )
    with pytest.raises(ChannelConfigError, match="535"):
        await channel.send(ESCALATION)
    assert mailbox.received == []


async def test_temporary_refusal_of_the_message_is_retried(plain_server: Controller, mailbox: Mailbox) -> None:
    mailbox.data_reply = "451 4.3.0 Mail server temporarily rejected message"

    with pytest.raises(ChannelError, match="451") as raised:
        await EmailChannel(settings(plain_server.port)).send(ESCALATION)
    assert not isinstance(raised.value, ChannelConfigError)


async def test_permanent_refusal_of_the_message_is_a_config_error(plain_server: Controller, mailbox: Mailbox) -> None:
    mailbox.data_reply = "554 5.7.1 Message rejected as spam"

    with pytest.raises(ChannelConfigError, match="554"):
        await EmailChannel(settings(plain_server.port)).send(ESCALATION)


async def test_one_refused_recipient_is_reported_while_the_others_receive_it(
    plain_server: Controller, mailbox: Mailbox
) -> None:
    mailbox.refuse_rcpt = {"care-lead@acme.example": "550 5.1.1 No such user"}

    delivery = await EmailChannel(settings(plain_server.port)).send(ESCALATION)

    assert [r.rcpt_tos for r in mailbox.received] == [["oncall@acme.example"]]
    assert "refused: care-lead@acme.example (550 5.1.1 No such user)" in delivery.detail


async def test_every_recipient_busy_is_retried(plain_server: Controller, mailbox: Mailbox) -> None:
    mailbox.refuse_rcpt = dict.fromkeys(RECIPIENTS, "450 4.2.1 Mailbox busy")

    with pytest.raises(ChannelError, match="every recipient refused") as raised:
        await EmailChannel(settings(plain_server.port)).send(ESCALATION)
    assert not isinstance(raised.value, ChannelConfigError)


async def test_refused_connection_is_retried() -> None:
    with pytest.raises(ChannelError) as raised:
        await EmailChannel(settings(free_port())).send(ESCALATION)
    assert not isinstance(raised.value, ChannelConfigError)


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never greets: an SMTP server that hangs."""
    done = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        writer.close()

    server = await asyncio.start_server(hang, HOST, 0)
    yield server.sockets[0].getsockname()[1]
    done.set()
    server.close()
    await server.wait_closed()


async def test_server_that_never_answers_times_out_and_is_retried(silent_server: int) -> None:
    with pytest.raises(ChannelError) as raised:
        await EmailChannel(settings(silent_server, timeout_s=0.2)).send(ESCALATION)
    assert not isinstance(raised.value, ChannelConfigError)
