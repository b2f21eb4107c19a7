"""The notifier's JetStream handlers: one notification per channel for each escalation or alert."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from clamor.v1 import alert_pb2, case_pb2, notification_pb2
from services.notifier.domain import from_alert, from_escalation

if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Callable, Sequence

    from opentelemetry import trace

    from services.notifier.clients import Channel
    from services.shared.pull_consumer import Delivery
    from services.shared.status import Counters


class NotifyHandler:
    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        quote_chars: int,
        log: deque[notification_pb2.Notification],
        tracer: trace.Tracer,
        counters: Counters,
    ) -> None:
        self._channels = channels
        self._quote_chars = quote_chars
        self._log = log
        self._tracer = tracer
        self._counters = counters

    async def on_escalation(self, delivery: Delivery[case_pb2.Escalation]) -> None:
        escalation = delivery.payload
        await self._fan_out(
            delivery,
            lambda channel, now: from_escalation(escalation, channel=channel, quote_chars=self._quote_chars, now=now),
        )

    async def on_alert(self, delivery: Delivery[alert_pb2.Alert]) -> None:
        alert = delivery.payload
        await self._fan_out(delivery, lambda channel, now: from_alert(alert, channel=channel, now=now))

    async def _fan_out(
        self,
        delivery: Delivery[case_pb2.Escalation] | Delivery[alert_pb2.Alert],
        render: Callable[[str, datetime], notification_pb2.Notification],
    ) -> None:
        # A failing channel raises and the whole message is retried; channels that already
        # delivered skip the repeat by notification id.
        for channel in self._channels:
            notification = render(channel.name, datetime.now(UTC))
            with self._tracer.start_as_current_span(
                f"notify {channel.name}",
                context=delivery.context,
                attributes={"clamor.notification.id": notification.id, "clamor.mention.id": notification.mention_id},
            ):
                fresh = await asyncio.to_thread(channel.send, notification)
            notification.status = (
                notification_pb2.DELIVERY_STATUS_SENT if fresh else notification_pb2.DELIVERY_STATUS_DUPLICATE
            )
            self._log.appendleft(notification)
            if fresh:
                self._counters.inc("notifications")
