"""Prints one notification per message on standard output: `clamor up` and local debugging."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, ClassVar, TextIO

from services.notifier.channels.base import Channel, Delivery
from services.notifier.domain import inert, plain_body

if TYPE_CHECKING:
    from services.notifier.config import ConsoleChannelSettings
    from services.notifier.message import Message


class ConsoleChannel(Channel):
    kind: ClassVar[str] = "console"

    def __init__(
        self, settings: ConsoleChannelSettings, *, stream: TextIO | None = None, quote_chars: int = 280
    ) -> None:
        self.name = settings.name
        self._stream = stream or sys.stdout
        self._quote_chars = quote_chars

    async def send(self, message: Message) -> Delivery:
        body = "\n".join(f"    {line}" for line in plain_body(message, quote_chars=self._quote_chars).splitlines())
        self._stream.write(f"{inert(message.title)}\n{body}\n")
        self._stream.flush()
        return Delivery(channel=self.name)
