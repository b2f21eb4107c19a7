"""Every outbound call the listener makes to NATS: mentions, source state, added sources, leases, alerts.

(HTTP to the platforms goes through services.shared.outbound, one client per source.)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from clamor.v1 import alert_pb2
from services.listener.lease import Lease, released, taken
from services.listener.records import ADDED_SOURCE_CODEC, LEASE_CODEC, SOURCE_STATE_CODEC, stored_key
from services.listener.sources.base import SourceState
from services.shared import subjects
from services.shared.clock import Clock, system_clock
from services.shared.jetstream import publish
from services.shared.kv_state import KvState, UnreadableRecordError
from services.shared.metrics import Metrics

if TYPE_CHECKING:
    from datetime import datetime

    from nats.js import JetStreamContext
    from opentelemetry import trace

    from clamor.v1 import mention_pb2

log = logging.getLogger(__name__)


class MentionPublisher:
    def __init__(self, js: JetStreamContext, tracer: trace.Tracer, *, metrics: Metrics | None = None) -> None:
        self._js = js
        self._tracer = tracer
        # messaging.client.sent.messages per publish; a no-op meter when none is handed in.
        self._metrics = metrics or Metrics()

    async def publish(self, mention: mention_pb2.Mention) -> bool:
        """Publish in the current trace; returns False when JetStream saw the id before."""
        ack = await publish(
            self._js,
            self._tracer,
            subjects.mention_subject(mention.platform or "unknown"),
            mention,
            msg_id=mention.id,
            mention_id=mention.id,
            metrics=self._metrics,
        )
        return not ack.duplicate


class StateStore:
    """Per-source cursors, HTTP validators and seen ids, so a restart neither repeats nor misses posts."""

    def __init__(self, state: KvState[SourceState]) -> None:
        self._state = state

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int) -> StateStore:
        return cls(
            await KvState.open(
                js,
                subjects.LISTENER_STATE_BUCKET,
                codec=SOURCE_STATE_CODEC,
                replicas=replicas,
                key=stored_key,
                mirror=False,
            )
        )

    async def load(self, source: str) -> SourceState:
        found = await self._state.get(source)
        return found[0] if found is not None else SourceState()

    async def save(self, source: str, state: SourceState) -> None:
        """Store ``state`` as the source's (one poller per source writes it; an equal one writes nothing)."""
        await self._state.change(source, lambda current: current if current == state else state)


class AddedSourceStore:
    """Sources added over gRPC, as their settings, so they come back after a restart."""

    def __init__(self, state: KvState[dict[str, Any]]) -> None:
        self._state = state

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int) -> AddedSourceStore:
        return cls(
            await KvState.open(
                js,
                subjects.LISTENER_SOURCES_BUCKET,
                codec=ADDED_SOURCE_CODEC,
                replicas=replicas,
                key=stored_key,
                mirror=False,
            )
        )

    async def save(self, name: str, settings: dict[str, Any]) -> None:
        await self._state.change(name, lambda _: settings)

    async def delete(self, name: str) -> None:
        await self._state.delete(name)

    async def load_all(self) -> list[tuple[str, dict[str, Any]]]:
        """Every added source's settings, in the order they were last stored; unreadable ones are logged."""
        found: list[tuple[str, dict[str, Any]]] = []
        for name, _ in reversed(await self._state.newest()):
            try:
                record = await self._state.get(name)
            except UnreadableRecordError as exc:
                log.error("cannot restore added source %s: %s", name, exc)
                continue
            if record is not None:
                found.append((name, record[0]))
        return found


# Lease records nobody renewed for this long leave the bucket: those of replicas long gone. It is far
# longer than any lease's TTL (the setting's maximum is 300 s), and a record's absence means "free".
LEASE_RECORDS_KEPT_S = 3600.0


class LeaseStore:
    """Leases on sources and replicas' presence (``services.listener.lease``), changed only by CAS.

    Mirrored in memory, so a replica sees who holds what and how many replicas are alive without
    a round trip; what the mirror suggests is re-checked inside the CAS change.
    """

    def __init__(self, state: KvState[Lease]) -> None:
        self._state = state

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int) -> LeaseStore:
        return cls(
            await KvState.open(
                js,
                subjects.LISTENER_LEASES_BUCKET,
                codec=LEASE_CODEC,
                replicas=replicas,
                ttl_s=LEASE_RECORDS_KEPT_S,
                key=stored_key,
            )
        )

    async def take(self, key: str, *, holder: str, now: datetime, ttl_s: float) -> Lease:
        """Take or renew the lease under ``key``; returns the lease as stored, ``holder``'s or another's."""
        stored = await self._state.change(key, lambda current: taken(current, holder=holder, now=now, ttl_s=ttl_s))
        assert stored is not None, "taken() always gives a lease"
        return stored

    async def release(self, key: str, *, holder: str, now: datetime) -> None:
        """Let ``holder``'s lease under ``key`` lapse now; another's is left as it is."""
        await self._state.change(key, lambda current: released(current, holder=holder, now=now))

    def peek(self, key: str) -> Lease | None:
        return self._state.peek(key)

    def leases(self) -> list[Lease]:
        """Every lease, on sources and presences alike, as the mirror last saw them."""
        return self._state.records()

    async def close(self) -> None:
        await self._state.close()


class AlertPublisher:
    """Operational alerts about sources: silent or failing past their thresholds."""

    def __init__(
        self, js: JetStreamContext, tracer: trace.Tracer, *, clock: Clock = system_clock, metrics: Metrics | None = None
    ) -> None:
        self._js = js
        self._tracer = tracer
        # messaging.client.sent.messages per publish; a no-op meter when none is handed in.
        self._metrics = metrics or Metrics()
        self._clock = clock

    async def source_unhealthy(self, source: str, summary: str) -> None:
        now = self._clock()
        # One alert per source per hour: the id makes JetStream drop repeats within the window.
        alert_id = f"source-health:{source}:{now:%Y%m%d%H}"
        alert = alert_pb2.Alert(id=alert_id, kind=alert_pb2.ALERT_KIND_SOURCE_HEALTH, topic=source, summary=summary)
        alert.raised_at.FromDatetime(now)
        await publish(
            self._js, self._tracer, subjects.SOURCE_HEALTH_ALERTS, alert, msg_id=alert_id, metrics=self._metrics
        )
