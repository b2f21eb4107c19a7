"""A DingTalk group robot: one ``text`` message per notification, posted to the robot's webhook.

Text messages are shown literally (no Markdown, so no forged links), every field is one line,
and the ``at`` lists stay empty, so neither ``@all`` nor a phone number in a post notifies
anyone. The last line, "-- Clamor", can serve as the robot's custom keyword.

With ``secret`` set the request is signed as DingTalk documents: ``timestamp`` (ms) and
``sign = urlencode(base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}")))`` are appended to the
webhook URL. A digest lists as many of its items as fit DingTalk's 20,000-byte message, then
says how many more there are. DingTalk answers HTTP 200 with ``errcode``: 0 is success, 130101 (sending too
fast) is retried after a minute, anything else is a configuration problem.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote_plus, urlsplit

from services.notifier.channels.base import Delivery, HttpChannel
from services.notifier.channels.digest import entries, fit
from services.notifier.channels.webhook import post, retry_after_s, snippet
from services.notifier.config import DingTalkChannelSettings
from services.notifier.errors import ChannelConfigError, ChannelError
from services.notifier.message import MAX_QUOTE_CHARS
from services.notifier.render import clip, https, oneline, render_text

if TYPE_CHECKING:
    from services.notifier.message import Message

SEND_TOO_FAST = 130101
# DingTalk refuses messages over 20,000 bytes; the rest of the request body fits in what is left.
CONTENT_BYTES = 19_000
# DingTalk limits a robot to 20 messages a minute.
SEND_TOO_FAST_WAIT_S = 60.0


def sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signature, URL-encoded, exactly as its documentation computes it."""
    string_to_sign = f"{timestamp_ms}\n{secret}"
    digest = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


def signed_url(webhook_url: str, secret: str, timestamp_ms: int) -> str:
    separator = "&" if urlsplit(webhook_url).query else "?"
    return f"{webhook_url}{separator}timestamp={timestamp_ms}&sign={sign(secret, timestamp_ms)}"


def _content(message: Message, *, quote_chars: int) -> str:
    return render_text(
        "dingtalk.j2",
        message=message,
        handle=clip(oneline(message.author_handle).lstrip("@"), 100),
        quote_chars=quote_chars,
        sla_due=message.sla_due.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if message.sla_due else "",
        post_url=https(message.post_url),
        ack_url=https(message.ack_url),
    )


def _json_bytes(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode())


def digest_content(message: Message, *, quote_chars: int = MAX_QUOTE_CHARS, budget: int = CONTENT_BYTES) -> str:
    """The title, then as many items as fit ``budget`` bytes (as sent, JSON-encoded), then how many more."""
    listed = entries(message, quote_chars=quote_chars)
    title = clip(oneline(message.title), 300)

    def render(count: int) -> str:
        return render_text("digest_dingtalk.j2", title=title, entries=listed[:count], more=len(listed) - count)

    return fit(render, len(listed), lambda content: _json_bytes(content) <= budget)


def dingtalk_payload(message: Message, *, quote_chars: int = MAX_QUOTE_CHARS) -> dict[str, Any]:
    if message.items:
        content = digest_content(message, quote_chars=quote_chars)
    else:
        content = _content(message, quote_chars=quote_chars)
    # Empty "at" lists and no isAtAll: nobody is notified, whatever "@" the text contains.
    return {"msgtype": "text", "text": {"content": content}, "at": {"atMobiles": [], "atUserIds": []}}


class DingTalkChannel(HttpChannel[DingTalkChannelSettings]):
    kind: ClassVar[str] = "dingtalk"

    def _url(self) -> str:
        settings = self._settings
        if not settings.secret:
            return settings.webhook_url
        return signed_url(settings.webhook_url, settings.secret, int(self._clock().timestamp() * 1000))

    async def send(self, message: Message) -> Delivery:
        what = f"dingtalk {self.name}"
        body = json.dumps(dingtalk_payload(message, quote_chars=self._quote_chars), ensure_ascii=False).encode()
        # post() keeps the URL, and with it the access token and signature, out of every error.
        response = await post(
            self._http, self._url(), what=what, headers={"Content-Type": "application/json; charset=utf-8"}, body=body
        )
        if response.status == 429 or response.status >= 500:
            raise ChannelError(
                f"{what}: HTTP {response.status}: {snippet(response)}", retry_after_s=retry_after_s(response)
            )
        if not 200 <= response.status < 300:
            raise ChannelConfigError(f"{what}: HTTP {response.status}: {snippet(response)}")
        try:
            payload: Any = json.loads(response.body)
            errcode = int(payload["errcode"])
        except (ValueError, TypeError, KeyError) as exc:
            # Whether it was posted is unknown: a repeat is better than a lost alert.
            raise ChannelError(f"{what}: not a DingTalk answer: {snippet(response)}") from exc
        errmsg = oneline(payload.get("errmsg", ""))
        if errcode == 0:
            return Delivery(channel=self.name, detail=errmsg)
        if errcode == SEND_TOO_FAST:
            raise ChannelError(f"{what}: errcode {errcode}: {errmsg}", retry_after_s=SEND_TOO_FAST_WAIT_S)
        raise ChannelConfigError(f"{what}: errcode {errcode}: {errmsg}")
