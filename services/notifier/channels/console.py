"""Prints one notification per message on standard output: `clamor up` and local debugging.

A digest prints its title, then one indented line per item.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, ClassVar, TextIO

from services.notifier.channels.base import Channel, Delivery
from services.notifier.channels.digest import entries
from services.notifier.domain import inert, plain_body
from services.shared.clock import Clock, system_clock

if TYPE_CHECKING:
    from services.notifier.config import ConsoleChannelSettings
    from services.notifier.message import Message


def console_text(message: Message, *, quote_chars: int) -> str:
    """What the console prints for ``message``: the title, then indented lines, nothing forged."""
    if message.items:
        lines = [entry.line() for entry in entries(message, quote_chars=quote_chars)]
    else:
        lines = plain_body(message, quote_chars=quote_chars).splitlines()
    body = "\n".join(f"    {line}" for line in lines)
    return f"{inert(message.title)}\n{body}\n"


class ConsoleChannel(Channel):
    kind: ClassVar[str] = "console"

    def __init__(
        self,
        settings: ConsoleChannelSettings,
        *,
        stream: TextIO | None = None,
        quote_chars: int = 280,
        clock: Clock = system_clock,
    ) -> None:
        # Every channel is built with the service's clock; the console prints no time of its own.
        del clock
        self.name = settings.name
        self._stream = stream or sys.stdout
        self._quote_chars = quote_chars

    async def send(self, message: Message) -> Delivery:
        self._stream.write(console_text(message, quote_chars=self._quote_chars))
        self._stream.flush()
        return Delivery(channel=self.name)
