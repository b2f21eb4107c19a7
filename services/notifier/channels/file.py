"""Appends one JSON line per message, idempotent on the message id: a local outbox for people.

A digest is one line too: its body lists the items one per line, ``item_ids`` names them, and
``items`` holds each one's facts (one-line, control-free text and https-only links).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from google.protobuf.json_format import MessageToDict

from services.notifier.channels.base import Channel, Delivery
from services.notifier.channels.digest import entries
from services.notifier.domain import notification_for
from services.notifier.errors import ChannelError
from services.shared.clock import Clock, system_clock
from services.shared.jsonl import IdempotentJsonlFile

if TYPE_CHECKING:
    from services.notifier.config import FileChannelSettings
    from services.notifier.message import Message


def file_record(message: Message, *, channel: str, quote_chars: int, now: datetime) -> dict[str, Any]:
    """The JSON object written for ``message``: the notification log's record, plus the items of a digest."""
    notification = notification_for(message, channel=channel, quote_chars=quote_chars, now=now)
    if not message.items:
        return MessageToDict(notification, preserving_proto_field_name=True)
    listed = entries(message, quote_chars=quote_chars)
    notification.body = "\n".join(entry.line() for entry in listed)
    del notification.item_ids[:]
    notification.item_ids.extend(item.id for item in message.items)
    record = MessageToDict(notification, preserving_proto_field_name=True)
    record["items"] = [asdict(entry) for entry in listed]
    return record


class FileChannel(Channel):
    kind: ClassVar[str] = "file"

    def __init__(self, settings: FileChannelSettings, *, quote_chars: int = 280, clock: Clock = system_clock) -> None:
        self.name = settings.name
        self._file = IdempotentJsonlFile(settings.path)
        self._quote_chars = quote_chars
        self._clock = clock

    async def send(self, message: Message) -> Delivery:
        record = file_record(message, channel=self.name, quote_chars=self._quote_chars, now=self._clock())
        try:
            written = await asyncio.to_thread(self._file.append, record)
        except OSError as exc:
            raise ChannelError(f"file channel {self.name}: {exc.strerror or exc}") from exc
        return Delivery(channel=self.name, detail="" if written else "already in the file")
