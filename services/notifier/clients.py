"""Every outbound call the notifier makes: its channels, and the delivery record in KV."""

from __future__ import annotations

import hashlib
import importlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from nats.errors import Error as NatsLibraryError
from nats.js.errors import KeyNotFoundError

from services.shared.errors import TransientError
from services.shared.jetstream import ensure_bucket

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

    from services.notifier.channels.base import Channel, Delivery
    from services.notifier.config import ChannelSettings

DELIVERIES_BUCKET = "notifier_deliveries"

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


def build_channel(settings: ChannelSettings, *, quote_chars: int) -> Channel:
    module_name, class_name = CHANNELS[settings.kind].split(":")
    channel_type: Any = getattr(importlib.import_module(module_name), class_name)
    channel: Channel = channel_type(settings, quote_chars=quote_chars)
    return channel


class DeliveryStore:
    """What was delivered, per notification id, in JetStream KV: a redelivered escalation sends nothing twice."""

    def __init__(self, bucket: KeyValue) -> None:
        self._bucket = bucket

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int) -> DeliveryStore:
        return cls(await ensure_bucket(js, DELIVERIES_BUCKET, replicas=replicas))

    @staticmethod
    def _key(notification_id: str) -> str:
        return hashlib.blake2b(notification_id.encode(), digest_size=16).hexdigest()

    async def delivered(self, notification_id: str) -> bool:
        try:
            await self._bucket.get(self._key(notification_id))
        except KeyNotFoundError:
            return False
        except (NatsLibraryError, TimeoutError) as exc:
            raise TransientError(f"cannot read the delivery record of {notification_id}: {exc}") from exc
        return True

    async def record(self, notification_id: str, delivery: Delivery) -> None:
        value = {"id": notification_id, "channel": delivery.channel, "remote_id": delivery.remote_id,
                 "at": datetime.now(UTC).isoformat()}  # fmt: skip
        try:
            await self._bucket.put(self._key(notification_id), json.dumps(value).encode())
        except (TimeoutError, NatsLibraryError) as exc:
            raise TransientError(f"cannot record the delivery of {notification_id}: {exc}") from exc
