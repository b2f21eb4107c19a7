"""The notifier's JetStream handlers: one notification per channel for each escalation or alert.

Each (escalation or alert, channel) pair is a notification with a stable id. Its delivery is
recorded in KV after the channel accepts it, so a redelivered escalation skips channels that
already delivered; a failing channel raises and the message is retried later (after the
channel's ``Retry-After`` when it gave one), while the others are not repeated.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from clamor.v1 import notification_pb2
from services.notifier.domain import notification_for
from services.notifier.message import message_from_alert, message_from_escalation

if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Callable, Sequence

    from opentelemetry import trace

    from clamor.v1 import alert_pb2, case_pb2
    from services.notifier.channels.base import Channel
    from services.notifier.clients import DeliveryStore
    from services.notifier.message import Message
    from services.shared.pull_consumer import Delivery
    from services.shared.status import Counters


class NotifyHandler:
    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        deliveries: DeliveryStore,
        quote_chars: int,
        log: deque[notification_pb2.Notification],
        tracer: trace.Tracer,
        counters: Counters,
    ) -> None:
        self._channels = channels
        self._deliveries = deliveries
        self._quote_chars = quote_chars
        self._log = log
        self._tracer = tracer
        self._counters = counters

    async def on_escalation(self, delivery: Delivery[case_pb2.Escalation]) -> None:
        escalation = delivery.payload
        await self._fan_out(delivery, lambda channel: message_from_escalation(escalation, channel=channel))

    async def on_alert(self, delivery: Delivery[alert_pb2.Alert]) -> None:
        alert = delivery.payload
        await self._fan_out(delivery, lambda channel: message_from_alert(alert, channel=channel))

    async def _fan_out(
        self,
        delivery: Delivery[case_pb2.Escalation] | Delivery[alert_pb2.Alert],
        compose: Callable[[str], Message],
    ) -> None:
        for channel in self._channels:
            message = compose(channel.name)
            if await self._deliveries.delivered(message.id):
                self._remember(message, channel.name, notification_pb2.DELIVERY_STATUS_DUPLICATE)
                continue
            with self._tracer.start_as_current_span(
                f"notify {channel.name}",
                context=delivery.context,
                attributes={
                    "clamor.notification.id": message.id,
                    "clamor.mention.id": message.mention_id,
                    "clamor.channel.kind": channel.kind,
                },
            ):
                sent = await channel.send(message)
            await self._deliveries.record(message.id, sent)
            self._remember(message, channel.name, notification_pb2.DELIVERY_STATUS_SENT)
            self._counters.inc("notifications")

    def _remember(self, message: Message, channel: str, status: notification_pb2.DeliveryStatus.ValueType) -> None:
        self._log.appendleft(
            notification_for(
                message, channel=channel, quote_chars=self._quote_chars, now=datetime.now(UTC), status=status
            )
        )
