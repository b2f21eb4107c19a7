"""Every outbound call the listener makes to NATS: mentions, source state, added sources, alerts.

(HTTP to the platforms goes through services.shared.outbound, one client per source.)
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from nats.errors import Error as NatsLibraryError
from nats.js.errors import KeyNotFoundError

from clamor.v1 import alert_pb2
from services.listener.sources.base import SourceState
from services.shared import subjects
from services.shared.clock import Clock, system_clock
from services.shared.errors import map_exceptions
from services.shared.jetstream import NATS_FAILURES, ensure_bucket, publish

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue
    from opentelemetry import trace

    from clamor.v1 import mention_pb2


class MentionPublisher:
    def __init__(self, js: JetStreamContext, tracer: trace.Tracer) -> None:
        self._js = js
        self._tracer = tracer

    async def publish(self, mention: mention_pb2.Mention) -> bool:
        """Publish in the current trace; returns False when JetStream saw the id before."""
        ack = await publish(
            self._js,
            self._tracer,
            subjects.mention_subject(mention.platform or "unknown"),
            mention,
            msg_id=mention.id,
            mention_id=mention.id,
        )
        return not ack.duplicate


class _JsonBucket:
    def __init__(self, bucket: KeyValue, what: str) -> None:
        self._bucket = bucket
        self._what = what

    async def get_json(self, key: str) -> dict[str, object] | None:
        with map_exceptions(NATS_FAILURES, f"cannot read {self._what} {key}"):
            try:
                entry = await self._bucket.get(key)
            except KeyNotFoundError:
                return None
        try:
            value = json.loads(entry.value or b"{}")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    async def put_json(self, key: str, value: dict[str, object]) -> None:
        with map_exceptions(NATS_FAILURES, f"cannot save {self._what} {key}"):
            await self._bucket.put(key, json.dumps(value, ensure_ascii=False).encode())

    async def delete(self, key: str) -> None:
        with map_exceptions(NATS_FAILURES, f"cannot delete {self._what} {key}"):
            await self._bucket.delete(key)

    async def keys(self) -> list[str]:
        try:
            return list(await self._bucket.keys())
        except NatsLibraryError:
            # nats-py raises NoKeysError for an empty bucket.
            return []


class StateStore(_JsonBucket):
    """Per-source cursors, HTTP validators and seen ids, so a restart neither repeats nor misses posts."""

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int) -> StateStore:
        return cls(await ensure_bucket(js, subjects.LISTENER_STATE_BUCKET, replicas=replicas), "state of source")

    async def load(self, source: str) -> SourceState:
        data = await self.get_json(source)
        return SourceState.from_json(data) if data is not None else SourceState()

    async def save(self, source: str, state: SourceState) -> None:
        await self.put_json(source, state.to_json())


class AddedSourceStore(_JsonBucket):
    """Sources added over gRPC, as their settings, so they come back after a restart."""

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int) -> AddedSourceStore:
        return cls(await ensure_bucket(js, subjects.LISTENER_SOURCES_BUCKET, replicas=replicas), "added source")


class AlertPublisher:
    """Operational alerts about sources: silent or failing past their thresholds."""

    def __init__(self, js: JetStreamContext, tracer: trace.Tracer, *, clock: Clock = system_clock) -> None:
        self._js = js
        self._tracer = tracer
        self._clock = clock

    async def source_unhealthy(self, source: str, summary: str) -> None:
        now = self._clock()
        # One alert per source per hour: the id makes JetStream drop repeats within the window.
        alert_id = f"source-health:{source}:{now:%Y%m%d%H}"
        alert = alert_pb2.Alert(id=alert_id, kind=alert_pb2.ALERT_KIND_SOURCE_HEALTH, topic=source, summary=summary)
        alert.raised_at.FromDatetime(now)
        await publish(self._js, self._tracer, subjects.SOURCE_HEALTH_ALERTS, alert, msg_id=alert_id)
