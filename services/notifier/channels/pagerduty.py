"""PagerDuty Events API v2: trigger an incident per case, then acknowledge and resolve it.

Every event carries the message's ``dedup_key`` (stable per case or alert topic), and PagerDuty
folds all events with one key into one open incident. Sending is therefore safe to repeat: a
crash after PagerDuty accepted a trigger but before the notifier recorded it re-sends the same
trigger, which PagerDuty folds into the incident it already opened rather than paging twice.

The summary is one line of at most 1,024 characters; links are attached only when they are
plain https. PagerDuty throttles per routing key: a 429 is retried after its ``Retry-After``, or
after 30 s when it gives none. A 400 means the event is invalid and names why ("errors").

A digest is one trigger whose summary is the digest's title and whose ``custom_details`` list
its items (severity, title, case id and https acknowledge link), at most DIGEST_ITEMS of them:
far below the 512 KB PagerDuty accepts, and enough to tell the responder what is waiting.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from services.notifier.channels.base import Delivery, HttpChannel
from services.notifier.channels.digest import entries
from services.notifier.channels.webhook import post, retry_after_s, snippet
from services.notifier.config import PagerDutyChannelSettings
from services.notifier.errors import ChannelConfigError, ChannelError
from services.notifier.message import MAX_QUOTE_CHARS
from services.notifier.render import clip, https, oneline
from services.shared.clock import Clock, system_clock

if TYPE_CHECKING:
    from services.notifier.message import Message
    from services.shared.outbound import HttpResponse, OutboundClient

SUMMARY_CHARS = 1024
DEDUP_KEY_CHARS = 255
THROTTLED_WAIT_S = 30.0
DIGEST_ITEMS = 50
SEVERITIES = {"CRITICAL": "critical", "HIGH": "error", "MEDIUM": "warning", "LOW": "info"}


def _iso(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if at is not None else ""


def dedup_key(message: Message) -> str:
    """The incident key: the message's own, or its id; hashed when longer than PagerDuty accepts."""
    key = message.dedup_key or message.id
    return key if len(key) <= DEDUP_KEY_CHARS else "clamor-" + hashlib.sha256(key.encode()).hexdigest()


def digest_details(message: Message) -> dict[str, Any]:
    listed = entries(message)
    details: dict[str, Any] = {
        "count": len(listed),
        "items": [
            {"severity": e.severity, "title": e.title, "case_id": e.case_id, "ack_url": e.ack_url}
            for e in listed[:DIGEST_ITEMS]
        ],
    }
    if len(listed) > DIGEST_ITEMS:
        details["more"] = len(listed) - DIGEST_ITEMS
    return details


def digest_trigger_event(message: Message, *, routing_key: str, source: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "summary": clip(oneline(message.title), SUMMARY_CHARS) or "Clamor digest",
        "source": source,
        "severity": SEVERITIES.get(message.severity.upper(), "info"),
    }
    if message.raised_at is not None:
        payload["timestamp"] = _iso(message.raised_at)
    if message.team:
        payload["group"] = clip(oneline(message.team), 100)
    payload["class"] = message.kind
    payload["custom_details"] = digest_details(message)
    return {"routing_key": routing_key, "event_action": "trigger", "dedup_key": dedup_key(message), "payload": payload}


def trigger_event(
    message: Message, *, routing_key: str, source: str, quote_chars: int = MAX_QUOTE_CHARS
) -> dict[str, Any]:
    if message.items:
        return digest_trigger_event(message, routing_key=routing_key, source=source)
    summary = f"{message.title}: {message.reason}" if message.reason else message.title
    payload: dict[str, Any] = {
        "summary": clip(oneline(summary), SUMMARY_CHARS),
        "source": source,
        "severity": SEVERITIES.get(message.severity.upper(), "info"),
    }
    if message.raised_at is not None:
        payload["timestamp"] = _iso(message.raised_at)
    if message.platform:
        payload["component"] = clip(oneline(message.platform), 100)
    if message.team:
        payload["group"] = clip(oneline(message.team), 100)
    payload["class"] = message.kind
    payload["custom_details"] = {
        "post": clip(oneline(message.post_text), quote_chars),
        "author": clip(oneline(message.author_handle), 100),
        "followers": message.author_followers,
        "risk_flags": list(message.risk_flags),
        "case_id": message.case_id,
        "level": message.level,
        "sla_due": _iso(message.sla_due),
        "mention_id": message.mention_id,
    }
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(message),
        "payload": payload,
    }
    links = [
        {"href": href, "text": text}
        for href, text in (
            (https(message.post_url), "Original post"),
            (https(message.ack_url), "Acknowledge in Clamor"),
        )
        if href
    ]
    if links:
        event["links"] = links
    return event


def _errors(response: HttpResponse) -> str:
    """PagerDuty's ``errors`` list (or message) from an error answer, else the start of the body."""
    try:
        answer: Any = json.loads(response.body)
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        errors = answer.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(oneline(e) for e in errors)
        if answer.get("message"):
            return oneline(answer["message"])
    return snippet(response)


class PagerDutyChannel(HttpChannel[PagerDutyChannelSettings]):
    kind: ClassVar[str] = "pagerduty"

    def __init__(
        self,
        settings: PagerDutyChannelSettings,
        *,
        http: OutboundClient | None = None,
        quote_chars: int = MAX_QUOTE_CHARS,
        clock: Clock = system_clock,
    ) -> None:
        super().__init__(settings, http=http, quote_chars=quote_chars, clock=clock)
        self._url = f"{settings.api_base_url.rstrip('/')}/v2/enqueue"

    async def send(self, message: Message) -> Delivery:
        event = trigger_event(
            message, routing_key=self._settings.routing_key, source=self._settings.source, quote_chars=self._quote_chars
        )
        answer = await self._enqueue(event)
        return Delivery(channel=self.name, remote_id=str(answer.get("dedup_key") or event["dedup_key"]))

    async def acknowledge(self, message: Message) -> None:
        await self._enqueue(self._follow_up(message, "acknowledge"))

    async def resolve(self, message: Message) -> None:
        await self._enqueue(self._follow_up(message, "resolve"))

    def _follow_up(self, message: Message, action: str) -> dict[str, Any]:
        return {"routing_key": self._settings.routing_key, "event_action": action, "dedup_key": dedup_key(message)}

    async def _enqueue(self, event: dict[str, Any]) -> dict[str, Any]:
        what = f"pagerduty {self.name} {event['event_action']} {clip(oneline(event['dedup_key']), 80)}"
        response = await post(
            self._http,
            self._url,
            what=what,
            headers={"Content-Type": "application/json"},
            body=json.dumps(event).encode(),
        )
        status = response.status
        if 200 <= status < 300:
            try:
                answer: Any = json.loads(response.body)
            except ValueError:
                answer = None
            # Accepted; a body we cannot read does not undo that.
            return answer if isinstance(answer, dict) else {}
        if status == 429:
            wait = retry_after_s(response)
            raise ChannelError(
                f"{what}: throttled: {_errors(response)}",
                retry_after_s=THROTTLED_WAIT_S if wait is None else wait,
            )
        if status >= 500:
            raise ChannelError(f"{what}: HTTP {status}: {_errors(response)}")
        if status == 400:
            raise ChannelConfigError(f"{what}: invalid event: {_errors(response)}")
        raise ChannelConfigError(f"{what}: HTTP {status}: {_errors(response)}")
