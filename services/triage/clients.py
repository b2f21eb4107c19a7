"""Every outbound call triage makes: publishing triaged mentions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clamor.v1 import triage_pb2
from services.shared import subjects
from services.shared.jetstream import publish
from services.shared.metrics import Metrics

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from opentelemetry import trace
    from opentelemetry.context import Context


class TriagedPublisher:
    def __init__(self, js: JetStreamContext, tracer: trace.Tracer, *, metrics: Metrics | None = None) -> None:
        self._js = js
        self._tracer = tracer
        # messaging.client.sent.messages per publish; a no-op meter when none is handed in.
        self._metrics = metrics or Metrics()

    async def publish(self, triaged: triage_pb2.TriagedMention, *, context: Context) -> None:
        verdict = "complaint" if triaged.result.verdict == triage_pb2.VERDICT_COMPLAINT else "noise"
        mention_id = triaged.mention.id
        await publish(
            self._js,
            self._tracer,
            subjects.triaged_subject(verdict),
            triaged,
            msg_id=mention_id,
            mention_id=mention_id,
            context=context,
            metrics=self._metrics,
        )
