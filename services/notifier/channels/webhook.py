"""Any HTTP endpoint: one CloudEvents 1.0 event per notification, signed per Standard Webhooks.

The body is a structured-mode CloudEvent (``application/cloudevents+json``) whose ``data``
holds the message's fields verbatim: it is data, not markup, so nothing is escaped or cut, and
the receiver must treat every text field (and ``post.url``) as untrusted. The headers carry
``webhook-id`` (the message id, stable across retries, for the receiver's deduplication),
``webhook-timestamp`` and one ``webhook-signature`` per configured secret, so keys rotate
without downtime (services/shared/standard_webhooks.py).

A digest is one event of type ``io.clamor.notification.digest`` whose ``data`` also holds
``items``: each item's fields exactly as a single message's ``data`` holds them, plus the item's
own ``id``, ``kind`` and ``raised_at``, so a receiver can tell the items apart and deduplicate them.

Redirects are never followed: a signed body goes only to the configured URL, and any 3xx is
a failure to fix in the configuration. 2xx is success; 410 Gone says the receiver retired the
endpoint; 408, 429 and 5xx are retried (after ``Retry-After`` when given); any other 4xx is
a configuration problem.

The Slack and Teams channels post to webhooks too and share this module's helpers: ``post``
(outbound errors to channel errors, the URL kept out of every message) and ``retry_after_s``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import httpx

from services.notifier.channels.base import Delivery, HttpChannel
from services.notifier.config import WebhookChannelSettings
from services.notifier.errors import ChannelConfigError, ChannelError
from services.notifier.message import MAX_QUOTE_CHARS
from services.notifier.render import clip, oneline
from services.shared.clock import Clock, system_clock
from services.shared.errors import PermanentError
from services.shared.outbound import FetchLimits, OutboundClient, OutboundError
from services.shared.ratelimit import retry_after_seconds
from services.shared.standard_webhooks import secret_key, sign

if TYPE_CHECKING:
    from collections.abc import Mapping

    from services.notifier.message import Message
    from services.shared.outbound import HttpResponse

CONTENT_TYPE = "application/cloudevents+json"
SOURCE = "clamor/notifier"
TYPE_PREFIX = "io.clamor.notification."
RETRIED_STATUSES = frozenset({408, 429})


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def retry_after_s(response: HttpResponse) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or HTTP date, RFC 9110), or None when absent or unreadable."""
    return retry_after_seconds(dict(response.headers), response.received_at)


def snippet(response: HttpResponse) -> str:
    """The start of an answer's body, on one line, for an error message."""
    return clip(oneline(response.body[:200].decode("utf-8", errors="replace")), 200)


def redacted(url: str) -> str:
    """Scheme and host only: webhook URLs often carry their credential in the path or query."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<url>"
    return f"{parts.scheme}://{parts.hostname or ''}/…"


def scrub(text: str, url: str) -> str:
    """``text`` (an outbound error's) without ``url`` or the 80-character prefix some errors quote."""
    return text.replace(url, redacted(url)).replace(url[:80], redacted(url))


async def post(http: OutboundClient, url: str, *, what: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
    """POST ``body``; network trouble becomes ChannelError, a refused or redirect-looping URL ChannelConfigError.

    Also used by the Slack and Teams channels, whose URLs are webhooks too. No error text
    carries the URL, which often holds the webhook's credential.
    """
    try:
        return await http.request("POST", url, headers=headers, content=body)
    except OutboundError as exc:
        if isinstance(exc.__cause__, httpx.TooManyRedirects):
            raise ChannelConfigError(f"{what}: the URL redirects: configure the final URL") from None
        raise ChannelError(f"{what}: {scrub(str(exc), url)}", retry_after_s=exc.retry_after_s) from None
    except PermanentError as exc:
        raise ChannelConfigError(f"{what}: {scrub(str(exc), url)}") from None


def _data(message: Message) -> dict[str, Any]:
    return {
        "title": message.title,
        "severity": message.severity,
        "risk_flags": list(message.risk_flags),
        "reason": message.reason,
        "post": {
            "text": message.post_text,
            "url": message.post_url,
            "author": {"handle": message.author_handle, "followers": message.author_followers},
            "platform": message.platform,
        },
        "case": {
            "id": message.case_id,
            "team": message.team,
            "level": message.level,
            "sla_due": rfc3339(message.sla_due) if message.sla_due else None,
        },
        "ack_url": message.ack_url,
        "dedup_key": message.dedup_key,
    }


def _item(message: Message) -> dict[str, Any]:
    raised_at = rfc3339(message.raised_at) if message.raised_at else None
    return {"id": message.id, "kind": message.kind, "raised_at": raised_at} | _data(message)


def cloud_event(message: Message, *, now: datetime) -> dict[str, Any]:
    """The structured-mode CloudEvent; ``time`` is when the escalation or alert was raised."""
    data = _data(message)
    if message.items:
        data["items"] = [_item(item) for item in message.items]
    return {
        "specversion": "1.0",
        "id": message.id,
        "source": SOURCE,
        "type": TYPE_PREFIX + message.kind,
        "time": rfc3339(message.raised_at or now),
        "datacontenttype": "application/json",
        "data": data,
    }


class WebhookChannel(HttpChannel[WebhookChannelSettings]):
    kind: ClassVar[str] = "webhook"

    def __init__(
        self,
        settings: WebhookChannelSettings,
        *,
        http: OutboundClient | None = None,
        quote_chars: int = MAX_QUOTE_CHARS,
        clock: Clock = system_clock,
    ) -> None:
        try:
            for secret in settings.secrets:
                secret_key(secret)
        except ValueError as exc:
            raise ChannelConfigError(f"webhook {settings.name}: secrets: {exc}") from None
        super().__init__(settings, http=http, quote_chars=quote_chars, clock=clock)

    def _limits(self, settings: WebhookChannelSettings) -> FetchLimits:
        # max_redirects=0: the client stops at the first 3xx instead of re-sending the signed body.
        return FetchLimits(timeout_s=settings.timeout_s, max_redirects=0)

    async def send(self, message: Message) -> Delivery:
        url = self._settings.url
        what = f"webhook {self.name} ({redacted(url)})"
        # Whole seconds: the signature's timestamp and the event's time must agree.
        now = int(self._clock().timestamp())
        body = json.dumps(
            cloud_event(message, now=datetime.fromtimestamp(now, UTC)), ensure_ascii=False, separators=(",", ":")
        ).encode()
        try:
            signed = sign(self._settings.secrets, message.id, now, body)
        except ValueError as exc:
            # An id with whitespace cannot travel in webhook-id: retrying the same message cannot help.
            raise ChannelConfigError(f"{what}: {exc}") from exc
        headers = {"Content-Type": CONTENT_TYPE} | signed
        response = await post(self._http, url, what=what, headers=headers, body=body)
        status = response.status
        if httpx.URL(response.url) != httpx.URL(url) or 300 <= status < 400:
            # A client that follows redirects (one handed in) ends elsewhere: still a failure.
            raise ChannelConfigError(f"{what}: redirected (HTTP {status}); webhooks never follow redirects")
        if 200 <= status < 300:
            return Delivery(channel=self.name, detail=f"HTTP {status}")
        if status == 410:
            raise ChannelConfigError(f"{what}: endpoint gone (HTTP 410): remove it or fix the URL")
        if status in RETRIED_STATUSES or status >= 500:
            raise ChannelError(f"{what}: HTTP {status}: {snippet(response)}", retry_after_s=retry_after_s(response))
        raise ChannelConfigError(f"{what}: HTTP {status}: {snippet(response)}")
