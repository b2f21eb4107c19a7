"""Appends one JSON line per message, idempotent on the message id: a local outbox for people."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from google.protobuf.json_format import MessageToDict

from services.notifier.channels.base import Channel, Delivery
from services.notifier.domain import notification_for
from services.notifier.errors import ChannelError
from services.shared.jsonl import IdempotentJsonlFile

if TYPE_CHECKING:
    from services.notifier.config import FileChannelSettings
    from services.notifier.message import Message


class FileChannel(Channel):
    kind: ClassVar[str] = "file"

    def __init__(self, settings: FileChannelSettings, *, quote_chars: int = 280) -> None:
        self.name = settings.name
        self._file = IdempotentJsonlFile(settings.path)
        self._quote_chars = quote_chars

    async def send(self, message: Message) -> Delivery:
        record = notification_for(message, channel=self.name, quote_chars=self._quote_chars, now=datetime.now(UTC))
        try:
            written = await asyncio.to_thread(
                self._file.append, MessageToDict(record, preserving_proto_field_name=True)
            )
        except OSError as exc:
            raise ChannelError(f"file channel {self.name}: {exc.strerror or exc}") from exc
        return Delivery(channel=self.name, detail="" if written else "already in the file")
