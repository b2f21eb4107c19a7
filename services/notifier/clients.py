"""Every outbound call the notifier makes: channels, delivery records, case actions, the notification log."""

from __future__ import annotations

import hashlib
import importlib
import json
from typing import TYPE_CHECKING, Any

from nats.js.errors import KeyNotFoundError, NotFoundError

from clamor.v1 import notification_pb2
from services.notifier.channels.base import HttpChannel
from services.shared import subjects
from services.shared.clock import Clock, system_clock
from services.shared.errors import map_exceptions
from services.shared.jetstream import NATS_FAILURES, ensure_bucket, publish
from services.shared.metrics import Metrics

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue
    from opentelemetry import trace

    from services.notifier.channels.base import Channel, Delivery
    from services.notifier.config import ChannelSettings

DELIVERIES_BUCKET = subjects.NOTIFIER_DELIVERIES_BUCKET
# Messages read back from the log per ListNotifications page at most (filters skip the others); a
# page cut short by it still hands out a token, so a client reads on from where the scan stopped.
LOG_SCAN_LIMIT = 5000

# kind → "module:Class"; imported on first use, so one channel's dependencies never load for another.
CHANNELS: dict[str, str] = {
    "console": "services.notifier.channels.console:ConsoleChannel",
    "file": "services.notifier.channels.file:FileChannel",
    "slack": "services.notifier.channels.slack:SlackChannel",
    "teams": "services.notifier.channels.teams:TeamsChannel",
    "email": "services.notifier.channels.email:EmailChannel",
    "sms": "services.notifier.channels.sms:SmsChannel",
    "dingtalk": "services.notifier.channels.dingtalk:DingTalkChannel",
    "pagerduty": "services.notifier.channels.pagerduty:PagerDutyChannel",
    "webhook": "services.notifier.channels.webhook:WebhookChannel",
}


def build_channel(
    settings: ChannelSettings, *, quote_chars: int, clock: Clock = system_clock, metrics: Metrics | None = None
) -> Channel:
    module_name, class_name = CHANNELS[settings.kind].split(":")
    channel_type: Any = getattr(importlib.import_module(module_name), class_name)
    channel: Channel = channel_type(settings, quote_chars=quote_chars, clock=clock)
    if metrics is not None and isinstance(channel, HttpChannel):
        channel.measure_with(metrics)
    return channel


class DeliveryStore:
    """What was delivered, per notification id, in JetStream KV: a redelivered escalation sends nothing twice."""

    def __init__(self, bucket: KeyValue, *, clock: Clock = system_clock) -> None:
        self._bucket = bucket
        self._clock = clock

    @classmethod
    async def open(
        cls, js: JetStreamContext, *, replicas: int, ttl_s: float | None = None, clock: Clock = system_clock
    ) -> DeliveryStore:
        return cls(await ensure_bucket(js, DELIVERIES_BUCKET, replicas=replicas, ttl_s=ttl_s), clock=clock)

    @staticmethod
    def _key(notification_id: str) -> str:
        return hashlib.blake2b(notification_id.encode(), digest_size=16).hexdigest()

    async def delivered_items(self, notification_id: str) -> list[str] | None:
        """The item ids the notification carried when it was delivered already, else None."""
        with map_exceptions(NATS_FAILURES, f"cannot read the delivery record of {notification_id}"):
            try:
                entry = await self._bucket.get(self._key(notification_id))
            except KeyNotFoundError:
                return None
        record: dict[str, Any] = json.loads(entry.value or b"{}")
        return [str(item) for item in record.get("items", [])]

    async def record(self, notification_id: str, delivery: Delivery, *, item_ids: list[str]) -> None:
        value = {
            "id": notification_id,
            "channel": delivery.channel,
            "remote_id": delivery.remote_id,
            "items": item_ids,
            "at": self._clock().isoformat(),
        }
        with map_exceptions(NATS_FAILURES, f"cannot record the delivery of {notification_id}"):
            await self._bucket.put(self._key(notification_id), json.dumps(value).encode())


class NotificationLog:
    """What was sent to whom, when, and the result: the NOTIFICATIONS stream, newest read first."""

    def __init__(self, js: JetStreamContext, tracer: trace.Tracer, *, metrics: Metrics | None = None) -> None:
        self._js = js
        self._tracer = tracer
        # messaging.client.sent.messages per publish; a no-op meter when none is handed in.
        self._metrics = metrics or Metrics()

    async def record(self, notification: notification_pb2.Notification) -> None:
        status = notification_pb2.DeliveryStatus.Name(notification.status)
        await publish(
            self._js,
            self._tracer,
            subjects.notification_subject(notification.channel),
            notification,
            msg_id=f"{notification.id}:{status}",
            metrics=self._metrics,
        )

    async def latest(self, *, limit: int, case_id: str = "", channel: str = "") -> list[notification_pb2.Notification]:
        """The newest ``limit`` notifications that match, newest first."""
        found, _ = await self.page(size=limit, case_id=case_id, channel=channel)
        return found

    async def page(
        self, *, size: int, before: int = 0, case_id: str = "", channel: str = ""
    ) -> tuple[list[notification_pb2.Notification], int]:
        """Up to ``size`` matching notifications at or below log sequence ``before`` (0: the newest), newest first.

        Also returns the sequence the next page starts at, 0 when the log has nothing older.
        """
        with map_exceptions(NATS_FAILURES, "cannot read the notification log"):
            info = await self._js.stream_info(subjects.NOTIFICATIONS.name)
        found: list[notification_pb2.Notification] = []
        sequence, first = info.state.last_seq, max(info.state.first_seq, 1)
        if before:
            sequence = min(sequence, before)
        scanned = 0
        while sequence >= first and len(found) < size and scanned < LOG_SCAN_LIMIT:
            scanned += 1
            with map_exceptions(NATS_FAILURES, "cannot read the notification log"):
                try:
                    raw = await self._js.get_msg(subjects.NOTIFICATIONS.name, sequence)
                except NotFoundError:
                    sequence -= 1
                    continue
            sequence -= 1
            notification = notification_pb2.Notification()
            notification.ParseFromString(raw.data or b"")
            if (case_id and notification.case_id != case_id) or (channel and notification.channel != channel):
                continue
            found.append(notification)
        return found, sequence if sequence >= first else 0
