"""The one interface every notification channel implements.

A channel renders a :class:`Message` with its own template and escaping, and delivers it once.
Errors say what to do next: :class:`ChannelError` (a TransientError, optionally with the wait
the service asked for: 429 ``Retry-After``) means retry later; a PermanentError means the
configuration or the message is wrong and retrying will not help.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from services.notifier.message import Message


@dataclass(frozen=True)
class Delivery:
    """What the channel's service said: an id for the sent message when it gives one."""

    channel: str
    remote_id: str = ""
    detail: str = ""


class Channel(abc.ABC):
    kind: ClassVar[str]
    name: str

    @abc.abstractmethod
    async def send(self, message: Message) -> Delivery:
        """Deliver ``message``; raise ChannelError to retry, a PermanentError when retrying cannot help."""

    async def acknowledge(self, message: Message) -> None:
        """Tell the channel's service the case was acknowledged (PagerDuty); most channels need nothing."""
        return

    async def resolve(self, message: Message) -> None:
        """Tell the channel's service the case was resolved (PagerDuty); most channels need nothing."""
        return

    async def aclose(self) -> None:
        """Release connections."""
        return
