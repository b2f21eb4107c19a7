"""Microsoft Teams: an Adaptive Card posted to a Workflows ("When a Teams webhook request is received") URL.

TextBlock and FactSet render a Markdown subset, so a post's ``[bank](https://evil.example)``
would become a link there. Every text on this card is therefore a TextRun inside a
RichTextBlock, which Teams shows literally; each is one line and clipped. The card's only links
are its actions: "Acknowledge" and "Open the post", each only for a plain https URL.

Workflows answers 202 Accepted (older connectors 200); 429 is retried after its
``Retry-After``, 5xx retried, and any other 4xx (a deleted flow, an expired signature in the
URL, a card it refuses) is a configuration problem. The URL carries its own credential
(``sig=``), so no error message includes it.

A digest's card lists its items the same way: literal TextRuns, and each item's links as its own
ActionSet of Action.OpenUrl, only for plain https URLs. Teams refuses messages past about 28 KB,
so the card holds as many items as fit CARD_BYTES and then says how many more there are.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import TYPE_CHECKING, Any, ClassVar

from services.notifier.channels.base import Delivery, HttpChannel
from services.notifier.channels.digest import entries
from services.notifier.channels.webhook import post, retry_after_s, snippet
from services.notifier.config import TeamsChannelSettings
from services.notifier.errors import ChannelConfigError, ChannelError
from services.notifier.message import MAX_QUOTE_CHARS
from services.notifier.render import clip, https, oneline
from services.shared.clock import Clock, system_clock

if TYPE_CHECKING:
    from services.notifier.channels.digest import Entry
    from services.notifier.message import Message
    from services.shared.outbound import OutboundClient

CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.4"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
FALLBACK_TITLE = "Clamor notification"
# Below Teams' ~28 KB per message, with room for the "…and N more" line and the envelope.
CARD_BYTES = 24_000


def run(value: object, limit: int, **style: Any) -> dict[str, Any]:
    """A literal TextRun: one line, clipped; ``style`` sets weight, size, italic…"""
    return {"type": "TextRun", "text": clip(oneline(value), limit)} | style


def rich(*inlines: dict[str, Any], **style: Any) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": list(inlines)} | style


def fact(label: str, value: object, limit: int) -> dict[str, Any]:
    # The label is ours; run() would strip its trailing space.
    return rich({"type": "TextRun", "text": f"{label}: ", "weight": "Bolder"}, run(value, limit))


def card_body(message: Message, *, quote_chars: int) -> list[dict[str, Any]]:
    body = [
        _title(message),
        fact("Severity", message.severity, 20),
    ]
    if message.risk_flags:
        body.append(fact("Risk flags", ", ".join(message.risk_flags), 300))
    if message.reason:
        body.append(fact("Reason", message.reason, 500))
    if message.author_handle or message.post_text:
        author = f"@{oneline(message.author_handle).lstrip('@')} ({message.author_followers:,} followers)"
        if message.platform:
            author += f" on {clip(oneline(message.platform), 40)}"
        body.append(fact("Author", author, 200))
    if message.case_id:
        case = f"{clip(oneline(message.case_id), 80)}, team {clip(oneline(message.team), 80)}, level {message.level}"
        body.append(fact("Case", case, 200))
    if message.sla_due is not None:
        body.append(fact("SLA due", message.sla_due.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), 40))
    if message.post_text:
        body.append(rich(run(message.post_text, quote_chars, italic=True), separator=True))
    return body


def card_actions(message: Message) -> list[dict[str, str]]:
    links = (("Acknowledge", https(message.ack_url)), ("Open the post", https(message.post_url)))
    return [{"type": "Action.OpenUrl", "title": title, "url": url} for title, url in links if url]


def _title(message: Message) -> dict[str, Any]:
    return rich(run(oneline(message.title) or FALLBACK_TITLE, 300, weight="Bolder", size="Medium"))


def digest_item(entry: Entry) -> list[dict[str, Any]]:
    """One item: severity and title, then the quoted post and its author, then its own links."""
    # The severity run is built here, not with run(), which would strip its trailing space.
    heading = {"type": "TextRun", "text": f"{entry.severity} ", "weight": "Bolder"}
    elements = [rich(heading, run(entry.title, 300), separator=True)]
    details: list[dict[str, Any]] = []
    if entry.quote:
        details.append(run(f"\u201c{entry.quote}\u201d", 200, italic=True))
    elif entry.note:
        details.append(run(entry.note, 200))
    if entry.author:
        if details:
            # Built here, not with run(), which would strip the spaces around the dash.
            details.append({"type": "TextRun", "text": " \u2014 "})
        details.append(run(entry.author, 200))
    if details:
        elements.append(rich(*details, spacing="None"))
    links = (("Acknowledge", entry.ack_url), ("Open the post", entry.post_url))
    actions = [{"type": "Action.OpenUrl", "title": title, "url": url} for title, url in links if url]
    if actions:
        elements.append({"type": "ActionSet", "actions": actions, "spacing": "Small"})
    return elements


def _size(value: object) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def digest_body(message: Message, *, quote_chars: int, budget: int = CARD_BYTES) -> list[dict[str, Any]]:
    """The title and as many items as fit ``budget`` bytes of JSON, then how many more there are."""
    body = [_title(message)]
    items = [digest_item(entry) for entry in entries(message, quote_chars=quote_chars)]
    used = _size(body)
    shown = 0
    for elements in items:
        # Each element costs its JSON plus a separating comma.
        cost = sum(_size(element) + 1 for element in elements)
        if used + cost > budget:
            break
        body += elements
        used += cost
        shown += 1
    if shown < len(items):
        body.append(rich(run(f"\u2026and {len(items) - shown} more", 40, italic=True), separator=True))
    return body


def teams_payload(message: Message, *, quote_chars: int = MAX_QUOTE_CHARS) -> dict[str, Any]:
    card = {
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": digest_body(message, quote_chars=quote_chars)
        if message.items
        else card_body(message, quote_chars=quote_chars),
        # A digest's links belong to its items, each beside the item it opens.
        "actions": [] if message.items else card_actions(message),
    }
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}],
    }


class TeamsChannel(HttpChannel[TeamsChannelSettings]):
    kind: ClassVar[str] = "teams"

    def __init__(
        self,
        settings: TeamsChannelSettings,
        *,
        http: OutboundClient | None = None,
        quote_chars: int = MAX_QUOTE_CHARS,
        clock: Clock = system_clock,
    ) -> None:
        if not settings.webhook_url:
            raise ChannelConfigError(f"teams {settings.name}: needs webhook_url")
        super().__init__(settings, http=http, quote_chars=quote_chars, clock=clock)

    async def send(self, message: Message) -> Delivery:
        what = f"teams {self.name}"
        payload = teams_payload(message, quote_chars=self._quote_chars)
        response = await post(
            self._http,
            self._settings.webhook_url,
            what=what,
            headers={"Content-Type": "application/json"},
            body=json.dumps(payload, ensure_ascii=False).encode(),
        )
        status = response.status
        if 200 <= status < 300:
            return Delivery(channel=self.name, detail=f"HTTP {status}")
        if status == 429 or status >= 500:
            raise ChannelError(f"{what}: HTTP {status}: {snippet(response)}", retry_after_s=retry_after_s(response))
        raise ChannelConfigError(f"{what}: HTTP {status}: {snippet(response)}")
