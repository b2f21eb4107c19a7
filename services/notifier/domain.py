"""Pure notifier logic: what a responder reads, built from an escalation or an alert."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from google.protobuf.timestamp_pb2 import Timestamp

from clamor.v1 import notification_pb2
from services.notifier.message import Message

if TYPE_CHECKING:
    from datetime import datetime

# C0/C1 control characters (terminal escapes, CR/LF and tab injection) and Unicode line and
# paragraph separators never reach a channel: a field can never forge a line of the body.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def inert(text: str) -> str:
    return _CONTROL.sub(" ", text)


def quote(text: str, limit: int) -> str:
    """Single-line, control-free, cut on a character boundary with an ellipsis."""
    flat = " ".join(inert(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _stamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def plain_body(message: Message, *, quote_chars: int) -> str:
    """The body for plain-text channels (console, file, the log): one fact per line, nothing forged."""
    if message.kind == "alert":
        return inert(message.reason)
    if message.items:
        return "\n".join(
            f"- {inert(item.title)}" + (f": \u201c{quote(item.post_text, 80)}\u201d" if item.post_text else "")
            for item in message.items
        )
    lines = [f"Why: {inert(message.reason)}"]
    if message.post_text or message.author_handle:
        author = f"@{inert(message.author_handle)} ({message.author_followers} followers)"
        lines.append(f"Author: {author} on {inert(message.platform)}")
        lines.append(f"Post: \u201c{quote(message.post_text, quote_chars)}\u201d")
        if message.post_url.startswith("https://"):
            lines.append(f"Link: {inert(message.post_url)}")
    return "\n".join(lines)


def notification_for(
    message: Message,
    *,
    channel: str,
    quote_chars: int,
    now: datetime,
    status: notification_pb2.DeliveryStatus.ValueType = notification_pb2.DELIVERY_STATUS_UNSPECIFIED,
) -> notification_pb2.Notification:
    """The notification log's record of ``message`` sent through ``channel``."""
    return notification_pb2.Notification(
        id=message.id,
        channel=channel,
        recipient=message.team,
        title=inert(message.title),
        body=plain_body(message, quote_chars=quote_chars),
        source_id=message.id.removesuffix(f":{channel}"),
        case_id=message.case_id,
        mention_id=message.mention_id,
        status=status,
        sent_at=_stamp(now),
    )
