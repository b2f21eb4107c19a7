"""E-mail over SMTP (aiosmtplib): STARTTLS, optional login, one multipart message per notification.

Only the Subject carries message text into a header, through the ``header`` filter (one line, no
control characters); every other header is built from the settings or from hashes. The envelope
names exactly ``settings.recipients``, so nothing in a post can add a recipient. The Message-ID
is derived from the notification id, so a repeat of the same notification is recognisable, and
all notifications of one case share a ``References`` id, so mail clients thread them.

A digest's Subject is its title; both parts list every item (a mail has room for the largest
digest), each with its own links, only when they are plain https.

SMTP replies decide the error class: 4xx replies, refused connections and timeouts are
transient (:class:`ChannelError`); 5xx replies, refused logins, a server without STARTTLS and
a certificate that does not verify are permanent (:class:`ChannelConfigError`).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import TYPE_CHECKING, ClassVar

import aiosmtplib

from services.notifier.channels.base import Channel, Delivery
from services.notifier.channels.digest import entries
from services.notifier.errors import ChannelConfigError, ChannelError
from services.notifier.render import clip, header, https, oneline, render_html, render_text
from services.shared.clock import Clock, system_clock

if TYPE_CHECKING:
    from services.notifier.config import EmailChannelSettings
    from services.notifier.errors import NotifierError
    from services.notifier.message import Message

SUBJECT_CHARS = 200
QUOTE_CHARS = 1000


def message_id(key: str) -> str:
    """A Message-ID that depends only on ``key``: the same notification always gets the same one."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@clamor>"


def utc_iso(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if at is not None else ""


def _context(message: Message, *, quote_chars: int) -> dict[str, object]:
    return {
        "message": message,
        "title": clip(oneline(message.title), SUBJECT_CHARS),
        "handle": clip(oneline(message.author_handle).lstrip("@"), 100),
        "quote_chars": quote_chars,
        "sla_due": utc_iso(message.sla_due),
        "post_url": https(message.post_url),
        "ack_url": https(message.ack_url),
    }


def _digest_context(message: Message, *, quote_chars: int) -> dict[str, object]:
    return {
        "title": clip(oneline(message.title), SUBJECT_CHARS),
        "entries": entries(message, quote_chars=quote_chars),
    }


def compose(
    message: Message, *, sender: str, recipients: list[str], sent_at: datetime, quote_chars: int = QUOTE_CHARS
) -> EmailMessage:
    """The MIME message: a plain-text part and an HTML alternative, headers free of untrusted text."""
    email = EmailMessage()
    email["From"] = sender
    email["To"] = ", ".join(recipients)
    email["Subject"] = clip(header(message.title), SUBJECT_CHARS)
    email["Date"] = format_datetime(sent_at)
    email["Message-ID"] = message_id(message.id)
    if message.dedup_key:
        email["References"] = message_id(message.dedup_key)
    # RFC 3834: machine-sent, so vacation responders and auto-replies stay quiet.
    email["Auto-Submitted"] = "auto-generated"
    if message.items:
        context = _digest_context(message, quote_chars=quote_chars)
        text, html = "digest_email_text.j2", "digest_email_html.j2"
    else:
        context = _context(message, quote_chars=quote_chars)
        text, html = "email_text.j2", "email_html.j2"
    email.set_content(render_text(text, **context) + "\n")
    email.add_alternative(render_html(html, **context) + "\n", subtype="html")
    return email


def _by_reply_code(code: int, text: str) -> NotifierError:
    if 400 <= code < 500:
        return ChannelError(text)
    return ChannelConfigError(text)


def classify(exc: Exception, *, what: str) -> NotifierError:
    """The notifier error for an SMTP failure: 4xx and network trouble are transient, the rest permanent."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refusals = ", ".join(f"{r.recipient} ({r.code} {oneline(r.message)})" for r in exc.recipients)
        transient = any(400 <= r.code < 500 for r in exc.recipients)
        text = f"{what}: every recipient refused: {refusals}"
        return ChannelError(text) if transient else ChannelConfigError(text)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_reply_code(exc.code, f"{what}: server replied {exc.code} {oneline(exc.message)}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ChannelConfigError(f"{what}: the server's certificate does not verify: {exc.verify_message}")
    if isinstance(exc, (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError)):
        return ChannelError(f"{what}: {exc}")
    if isinstance(exc, aiosmtplib.SMTPException):
        # What remains is the server lacking something the settings ask for (STARTTLS, AUTH).
        return ChannelConfigError(f"{what}: {exc}")
    if isinstance(exc, OSError):
        return ChannelError(f"{what}: {type(exc).__name__}: {exc}")
    return ChannelConfigError(f"{what}: {type(exc).__name__}: {exc}")


class _Session(aiosmtplib.SMTP):
    """aiosmtplib's client, closing without TLS's goodbye.

    A graceful TLS close returns before the socket closes: it waits for the server's close_notify,
    up to 30 s, and leaves the socket open if the event loop stops first. ``close`` runs once the
    conversation is over (QUIT answered, or failed for good), so dropping the goodbye loses nothing.
    """

    def close(self) -> None:
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.abort()
        super().close()


class EmailChannel(Channel):
    """One SMTP connection per notification: alerts are rare, and a fresh session never goes stale."""

    kind: ClassVar[str] = "email"

    def __init__(
        self, settings: EmailChannelSettings, *, quote_chars: int = QUOTE_CHARS, clock: Clock = system_clock
    ) -> None:
        self.name = settings.name
        self._settings = settings
        self._quote_chars = quote_chars
        self._clock = clock

    def _tls_context(self) -> ssl.SSLContext:
        ca_file = self._settings.ca_file
        return ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)

    async def send(self, message: Message) -> Delivery:
        settings = self._settings
        what = f"email {self.name} via {settings.host}:{settings.port}"
        try:
            email = compose(
                message,
                sender=settings.sender,
                recipients=settings.recipients,
                sent_at=self._clock(),
                quote_chars=self._quote_chars,
            )
        except ValueError as exc:
            raise ChannelConfigError(f"{what}: cannot build the message from sender and recipients: {exc}") from exc
        try:
            uses_tls = settings.starttls or settings.implicit_tls
            tls_context = await asyncio.to_thread(self._tls_context) if uses_tls else None
        except (OSError, ssl.SSLError) as exc:
            raise ChannelConfigError(f"{what}: cannot load ca_file {settings.ca_file}: {exc}") from exc
        smtp = _Session(
            hostname=settings.host,
            port=settings.port,
            timeout=settings.timeout_s,
            start_tls=settings.starttls,
            use_tls=settings.implicit_tls,
            tls_context=tls_context,
            username=settings.username or None,
            password=settings.password or None,
        )
        try:
            async with smtp:
                refused, reply = await smtp.send_message(
                    email,
                    # The envelope, not the headers, decides who receives it: only the configured addresses.
                    sender=parseaddr(settings.sender)[1],
                    recipients=[parseaddr(r)[1] for r in settings.recipients],
                )
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            raise classify(exc, what=what) from exc
        detail = oneline(reply)
        if refused:
            # Some recipients have it; sending again would only repeat it to them.
            listed = ", ".join(f"{address} ({r.code} {oneline(r.message)})" for address, r in refused.items())
            detail = f"{detail}; refused: {listed}"
        return Delivery(channel=self.name, remote_id=str(email["Message-ID"]), detail=detail)
