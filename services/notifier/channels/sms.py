"""SMS through Twilio's Messages API: one ``POST …/Messages.json`` per destination number.

The body is plain text, one fact per line; every field goes through ``oneline``, so a post can
never forge a line, and the post is cut so the whole body stays within Twilio's 1,600
characters. Links appear only when they are plain https. A digest is texted as its title, how
many items it holds and the most severe item's title: the rest is for a screen, not a phone.

Twilio has no idempotency key, so the channel remembers (in memory, for the process's life)
which numbers already have a notification: a retry after a partial failure only texts the
numbers still missing it. A number Twilio refuses for good (an invalid or unsubscribed number)
does not keep the others from being texted.
"""

from __future__ import annotations

import base64
import json
from collections import OrderedDict
from datetime import UTC
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlencode

from services.notifier.channels.base import Delivery, HttpChannel
from services.notifier.channels.digest import entry, top_item
from services.notifier.channels.webhook import post, retry_after_s, snippet
from services.notifier.config import SmsChannelSettings
from services.notifier.errors import ChannelConfigError, ChannelError
from services.notifier.message import MAX_QUOTE_CHARS
from services.notifier.render import clip, https, oneline, render_text
from services.shared.clock import Clock, system_clock

if TYPE_CHECKING:
    from services.notifier.message import Message
    from services.shared.outbound import HttpResponse, OutboundClient

MAX_BODY_CHARS = 1600
# Numbers already texted, per notification: enough for every retry in flight, bounded in memory.
REMEMBERED_SENDS = 4096


def digest_sms_body(message: Message) -> str:
    body = render_text(
        "digest_sms.j2",
        title=clip(oneline(message.title), 200),
        count=len(message.items),
        top=entry(top_item(message)),
    )
    return clip(body, MAX_BODY_CHARS)


def sms_body(message: Message, *, quote_chars: int = MAX_QUOTE_CHARS) -> str:
    """The text message, at most MAX_BODY_CHARS long: the post gives way first."""
    if message.items:
        return digest_sms_body(message)
    text = oneline(message.post_text)
    context: dict[str, object] = {
        "message": message,
        "handle": clip(oneline(message.author_handle).lstrip("@"), 60),
        "sla_due": message.sla_due.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if message.sla_due else "",
        "post_url": https(message.post_url),
        "ack_url": https(message.ack_url),
    }
    quoted = clip(text, quote_chars)
    body = render_text("sms.j2", post=quoted, **context)
    excess = len(body) - MAX_BODY_CHARS
    if excess > 0:
        body = render_text("sms.j2", post=clip(text, max(len(quoted) - excess, 1)), **context)
    return clip(body, MAX_BODY_CHARS)


def _twilio_error(response: HttpResponse) -> str:
    """Twilio's error code and message when the body is its error JSON, else the start of the body."""
    try:
        payload: Any = json.loads(response.body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and "code" in payload:
        return f"Twilio error {payload.get('code')}: {oneline(payload.get('message', ''))}"
    return snippet(response)


class SmsChannel(HttpChannel[SmsChannelSettings]):
    kind: ClassVar[str] = "sms"

    def __init__(
        self,
        settings: SmsChannelSettings,
        *,
        http: OutboundClient | None = None,
        quote_chars: int = MAX_QUOTE_CHARS,
        clock: Clock = system_clock,
    ) -> None:
        super().__init__(settings, http=http, quote_chars=quote_chars, clock=clock)
        self._url = (
            f"{settings.api_base_url.rstrip('/')}/2010-04-01/Accounts/{quote(settings.account_sid, safe='')}"
            "/Messages.json"
        )
        credentials = base64.b64encode(f"{settings.account_sid}:{settings.auth_token}".encode()).decode()
        self._headers = {
            "Authorization": f"Basic {credentials}",
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        self._sent: OrderedDict[tuple[str, str], str] = OrderedDict()

    async def send(self, message: Message) -> Delivery:
        body = sms_body(message, quote_chars=self._quote_chars)
        sids: list[str] = []
        refused: list[str] = []
        for number in self._settings.to_numbers:
            key = (message.id, number)
            if key in self._sent:
                sids.append(self._sent[key])
                continue
            try:
                # A transient failure stops here: the retry texts only the numbers still missing it.
                sid = await self._send_one(number, body)
            except ChannelConfigError as exc:
                refused.append(str(exc))
                continue
            self._remember(key, sid)
            sids.append(sid)
        if refused and not sids:
            raise ChannelConfigError(f"sms {self.name}: every number refused: {'; '.join(refused)}")
        detail = f"refused {'; '.join(refused)}" if refused else ""
        return Delivery(channel=self.name, remote_id=",".join(s for s in sids if s), detail=detail)

    def _remember(self, key: tuple[str, str], sid: str) -> None:
        self._sent[key] = sid
        while len(self._sent) > REMEMBERED_SENDS:
            self._sent.popitem(last=False)

    async def _send_one(self, number: str, body: str) -> str:
        what = f"sms {self.name} to {number}"
        form = urlencode({"To": number, "From": self._settings.from_number, "Body": body}).encode()
        response = await post(self._http, self._url, what=what, headers=self._headers, body=form)
        status = response.status
        if 200 <= status < 300:
            try:
                payload: Any = json.loads(response.body)
            except ValueError:
                payload = None
            # Twilio accepted it; a body without a sid must not make us text the number again.
            return str(payload.get("sid", "")) if isinstance(payload, dict) else ""
        if status == 429:
            raise ChannelError(f"{what}: throttled: {_twilio_error(response)}", retry_after_s=retry_after_s(response))
        if status >= 500:
            raise ChannelError(f"{what}: HTTP {status}: {_twilio_error(response)}")
        if status in (401, 403):
            raise ChannelConfigError(
                f"{what}: HTTP {status}, check account_sid and auth_token: {_twilio_error(response)}"
            )
        raise ChannelConfigError(f"{what}: HTTP {status}: {_twilio_error(response)}")
