"""The one interface every notification channel implements.

A channel renders a :class:`Message` with its own template and escaping, and delivers it once.
Errors say what to do next: :class:`ChannelError` (a TransientError, optionally with the wait
the service asked for: 429 ``Retry-After``) means retry later; a PermanentError means the
configuration or the message is wrong and retrying will not help.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from services.notifier.message import MAX_QUOTE_CHARS
from services.shared.clock import Clock, system_clock
from services.shared.metrics import Metrics
from services.shared.outbound import FetchLimits, OutboundClient, OutboundPolicy

if TYPE_CHECKING:
    from services.notifier.config import HttpChannelSettings
    from services.notifier.message import Message

SettingsT = TypeVar("SettingsT", bound="HttpChannelSettings")


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


class HttpChannel(Channel, Generic[SettingsT]):
    """A channel that talks HTTP through an :class:`OutboundClient` limited to its ``allow_hosts``.

    A client handed in (``http=``, tests and shared pools) belongs to the caller and is never
    closed here; one the channel builds itself is closed by :meth:`aclose`.
    """

    def __init__(
        self,
        settings: SettingsT,
        *,
        http: OutboundClient | None = None,
        quote_chars: int = MAX_QUOTE_CHARS,
        clock: Clock = system_clock,
    ) -> None:
        self.name = settings.name
        self._settings = settings
        self._quote_chars = quote_chars
        self._clock = clock
        self._owns_http = http is None
        self._http = http or OutboundClient(
            OutboundPolicy(tuple(settings.allow_hosts)), limits=self._limits(settings), clock=clock
        )

    def measure_with(self, metrics: Metrics) -> None:
        """Record this one's HTTP requests (http.client.request.duration) to ``metrics``."""
        self._http.metrics = metrics

    def _limits(self, settings: SettingsT) -> FetchLimits:
        """The limits for a client the channel builds itself."""
        return FetchLimits(timeout_s=settings.timeout_s)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
