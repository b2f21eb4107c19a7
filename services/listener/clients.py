"""Every outbound call the listener makes: publishing mentions and keeping cursors in KV."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nats.errors import Error as NatsLibraryError
from nats.js.errors import KeyNotFoundError

from services.shared import subjects
from services.shared.errors import TransientError
from services.shared.jetstream import ensure_bucket, publish

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


class CursorStore:
    """Per-source cursors in JetStream KV, so a restart neither re-publishes nor misses posts."""

    def __init__(self, bucket: KeyValue) -> None:
        self._bucket = bucket

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int) -> CursorStore:
        return cls(await ensure_bucket(js, subjects.LISTENER_CURSORS_BUCKET, replicas=replicas))

    async def get(self, source: str) -> str:
        try:
            entry = await self._bucket.get(source)
        except KeyNotFoundError:
            return ""
        return (entry.value or b"").decode()

    async def put(self, source: str, cursor: str) -> None:
        try:
            await self._bucket.put(source, cursor.encode())
        except (TimeoutError, NatsLibraryError) as exc:
            raise TransientError(f"cannot save cursor of source {source}: {exc}") from exc
