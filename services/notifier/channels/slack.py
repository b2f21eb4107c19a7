"""Slack: Block Kit messages through an incoming webhook, or chat.postMessage with a bot token.

Every untrusted field placed in mrkdwn goes through ``slack`` escaping, after it is put on one
line and clipped, so ``<!channel>``, ``<@U123>`` and ``<https://evil|bank>`` in a post show as
text and notify or link nobody. The only links are ours: the post's URL (``<url|open the post>``)
and the Acknowledge button, each only when it is plain https. The header is plain_text (never
parsed) and cut to Slack's 150 characters. Link unfurling is off, so a hostile URL in the post
does not fetch a preview into the channel.

A digest lists its items in mrkdwn sections, several to a section, each section within Slack's
3,000 characters and the message within its 50 blocks. Every item's text is bounded so that even
the longest fits one section, and 48 sections hold far more than the usual digest; past that
the last block says how many more items there are.

Webhook mode succeeds on HTTP 200 with body ``ok``; Slack's error bodies (``invalid_payload``,
``no_text``, ``channel_not_found``, ``no_service``…) come with a 4xx and mean the webhook or
payload is wrong. API mode answers ``{"ok": true, "ts": …}``, or ``{"ok": false, "error": …}``:
``ratelimited`` and Slack's own outages are retried, anything else (``invalid_auth``,
``channel_not_found``, ``not_in_channel``…) is a configuration problem. HTTP 429 is retried
after its ``Retry-After`` in both modes.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import TYPE_CHECKING, Any, ClassVar

from services.notifier.channels.base import Delivery, HttpChannel
from services.notifier.channels.digest import entries
from services.notifier.channels.webhook import post, retry_after_s, snippet
from services.notifier.config import SlackChannelSettings
from services.notifier.errors import ChannelConfigError, ChannelError
from services.notifier.message import MAX_QUOTE_CHARS
from services.notifier.render import clip, https, oneline, slack
from services.shared.clock import Clock, system_clock

if TYPE_CHECKING:
    from services.notifier.channels.digest import Entry
    from services.notifier.message import Message
    from services.shared.outbound import HttpResponse, OutboundClient

HEADER_CHARS = 150
SECTION_CHARS = 3000
MAX_BLOCKS = 50
# Escaped, a link can grow past its raw length ("&" → "&amp;"); these bound an item's section text.
LINK_CHARS = 400
ITEM_TITLE_CHARS = 150
FALLBACK_TITLE = "Clamor notification"
# Slack's own trouble, worth another try; every other API error needs a change on our side.
TRANSIENT_API_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "request_timeout",
        "service_unavailable",
        "team_added_to_org",
    }
)


def mrkdwn(value: object, limit: int) -> str:
    """An untrusted value for mrkdwn: one line, clipped, then escaped (escaping last, so no entity is cut)."""
    return slack(clip(oneline(value), limit))


def _text(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _fields(message: Message) -> list[dict[str, str]]:
    fields = [_text(f"*Severity*\n{mrkdwn(message.severity, 20)}")]
    if message.risk_flags:
        fields.append(_text(f"*Risk flags*\n{mrkdwn(', '.join(message.risk_flags), 300)}"))
    if message.author_handle or message.post_text:
        handle = mrkdwn(oneline(message.author_handle).lstrip("@"), 100)
        author = f"@{handle} ({message.author_followers:,} followers)"
        if message.platform:
            author += f" on {mrkdwn(message.platform, 40)}"
        fields.append(_text(f"*Author*\n{author}"))
    if message.case_id:
        case = f"{mrkdwn(message.case_id, 80)}, team {mrkdwn(message.team, 80)}, level {message.level}"
        fields.append(_text(f"*Case*\n{case}"))
    if message.sla_due is not None:
        fields.append(_text(f"*SLA due*\n{message.sla_due.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"))
    return fields


def _link(url: str, label: str) -> str:
    """Our own mrkdwn link, or nothing when the escaped URL would be too long to bound the section."""
    escaped = slack(url)
    return f"<{escaped}|{label}>" if url and len(escaped) <= LINK_CHARS else ""


def digest_item(entry: Entry) -> str:
    """One item's mrkdwn: severity and title, the quoted post, the author and our links.

    Escaped, every part has a bound (at most 2,900 characters in all), so any item fits a section.
    """
    lines = [f"*{slack(entry.severity)}* {mrkdwn(entry.title, ITEM_TITLE_CHARS)}"]
    if entry.quote:
        lines.append(f">{slack(entry.quote)}")
    elif entry.note:
        lines.append(slack(entry.note))
    facts = [slack(entry.author)] if entry.author else []
    facts += [link for link in (_link(entry.post_url, "open the post"), _link(entry.ack_url, "acknowledge")) if link]
    if facts:
        lines.append(" · ".join(facts))
    return "\n".join(lines)


def digest_sections(texts: list[str]) -> tuple[list[str], int]:
    """Item texts packed into sections of at most SECTION_CHARS, as many as the block limit allows.

    Returns the sections and the number of items left out. Two blocks stay free: the header, and
    the line that counts the items left out.
    """
    sections: list[str] = []
    shown = 0
    for text in texts:
        if sections and len(sections[-1]) + 2 + len(text) <= SECTION_CHARS:
            sections[-1] += "\n\n" + text
        elif len(sections) < MAX_BLOCKS - 2:
            sections.append(text)
        else:
            break
        shown += 1
    return sections, len(texts) - shown


def _header(title: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(title, HEADER_CHARS)}}


def _digest_payload(message: Message, *, quote_chars: int) -> dict[str, Any]:
    title = oneline(message.title) or FALLBACK_TITLE
    sections, more = digest_sections([digest_item(entry) for entry in entries(message, quote_chars=quote_chars)])
    blocks = [_header(title), *({"type": "section", "text": _text(section)} for section in sections)]
    if more:
        blocks.append({"type": "context", "elements": [_text(f"…and {more} more")]})
    return {"text": mrkdwn(title, 300), "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


def slack_payload(message: Message, *, quote_chars: int = MAX_QUOTE_CHARS) -> dict[str, Any]:
    """``text`` (the notification's fallback) and Block Kit ``blocks``; the same for both modes."""
    if message.items:
        return _digest_payload(message, quote_chars=quote_chars)
    # Escaping can grow text fivefold ("&" → "&amp;"): past 500 characters a section could exceed 3,000.
    quote_chars = min(quote_chars, MAX_QUOTE_CHARS)
    title = oneline(message.title) or FALLBACK_TITLE
    blocks: list[dict[str, Any]] = [
        _header(title),
        {"type": "section", "fields": _fields(message)},
    ]
    if message.reason:
        blocks.append({"type": "section", "text": _text(f"*Reason*\n{mrkdwn(message.reason, 500)}")})
    if message.post_text:
        blocks.append({"type": "section", "text": _text(f">{mrkdwn(message.post_text, quote_chars)}")})
    post_url = https(message.post_url)
    if post_url:
        blocks.append({"type": "context", "elements": [_text(f"<{slack(post_url)}|open the post>")]})
    ack_url = https(message.ack_url)
    if ack_url:
        button = {
            "type": "button",
            "action_id": "acknowledge",
            "text": {"type": "plain_text", "text": "Acknowledge"},
            "url": ack_url,
            "style": "primary",
        }
        blocks.append({"type": "actions", "elements": [button]})
    return {"text": mrkdwn(title, 300), "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


class SlackChannel(HttpChannel[SlackChannelSettings]):
    kind: ClassVar[str] = "slack"

    def __init__(
        self,
        settings: SlackChannelSettings,
        *,
        http: OutboundClient | None = None,
        quote_chars: int = MAX_QUOTE_CHARS,
        clock: Clock = system_clock,
    ) -> None:
        api = bool(settings.token or settings.channel)
        if settings.webhook_url and api:
            raise ChannelConfigError(f"slack {settings.name}: set webhook_url, or token and channel, not both")
        if not settings.webhook_url and not (settings.token and settings.channel):
            raise ChannelConfigError(f"slack {settings.name}: needs webhook_url, or both token and channel")
        super().__init__(settings, http=http, quote_chars=quote_chars, clock=clock)

    async def send(self, message: Message) -> Delivery:
        payload = slack_payload(message, quote_chars=self._quote_chars)
        if self._settings.webhook_url:
            return await self._send_webhook(payload)
        return await self._post_message(payload)

    async def _send_webhook(self, payload: dict[str, Any]) -> Delivery:
        what = f"slack {self.name} webhook"
        response = await post(
            self._http,
            self._settings.webhook_url,
            what=what,
            headers={"Content-Type": "application/json; charset=utf-8"},
            body=json.dumps(payload, ensure_ascii=False).encode(),
        )
        _raise_for_http(response, what)
        answer = snippet(response)
        if answer != "ok":
            # Not Slack's answer (a proxy, a portal): whether it was posted is unknown, and a repeat beats a loss.
            raise ChannelError(f"{what}: HTTP {response.status} without Slack's ok: {answer}")
        return Delivery(channel=self.name)

    async def _post_message(self, payload: dict[str, Any]) -> Delivery:
        what = f"slack {self.name} chat.postMessage"
        response = await post(
            self._http,
            f"{self._settings.api_base_url.rstrip('/')}/chat.postMessage",
            what=what,
            headers={
                "Authorization": f"Bearer {self._settings.token}",
                "Content-Type": "application/json; charset=utf-8",
            },
            body=json.dumps({"channel": self._settings.channel} | payload, ensure_ascii=False).encode(),
        )
        _raise_for_http(response, what)
        try:
            answer: Any = json.loads(response.body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or "ok" not in answer:
            raise ChannelError(f"{what}: HTTP {response.status}, not a Slack API answer: {snippet(response)}")
        if answer["ok"] is True:
            return Delivery(
                channel=self.name, remote_id=str(answer.get("ts", "")), detail=oneline(answer.get("warning", ""))
            )
        error = oneline(answer.get("error", "")) or "unknown_error"
        if error in TRANSIENT_API_ERRORS:
            raise ChannelError(f"{what}: {error}", retry_after_s=retry_after_s(response))
        raise ChannelConfigError(f"{what}: {error}")


def _raise_for_http(response: HttpResponse, what: str) -> None:
    """429 and 5xx are retried (after ``Retry-After``); any other non-2xx names Slack's error."""
    status = response.status
    if status == 429 or status >= 500:
        raise ChannelError(f"{what}: HTTP {status}: {snippet(response)}", retry_after_s=retry_after_s(response))
    if not 200 <= status < 300:
        raise ChannelConfigError(f"{what}: HTTP {status}: {snippet(response)}")
