"""Triage's JetStream handler: classify a batch of mentions, publish each verdict.

The batch is classified in one call (one inference span linked to every mention it served),
then each result is published inside its own mention's trace.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from opentelemetry import trace

from clamor.v1 import mention_pb2, triage_pb2
from services.triage.domain import Classifier, Post
from services.triage.errors import UnclassifiableError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from services.shared.pull_consumer import Delivery
    from services.shared.status import Counters
    from services.triage.clients import TriagedPublisher


class TriageHandler:
    def __init__(
        self, classifier: Classifier, publisher: TriagedPublisher, tracer: trace.Tracer, counters: Counters
    ) -> None:
        self._classifier = classifier
        self._publisher = publisher
        self._tracer = tracer
        self._counters = counters

    async def handle_batch(self, batch: Sequence[Delivery[mention_pb2.Mention]]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = [None] * len(batch)
        todo = []
        for index, delivery in enumerate(batch):
            if not delivery.payload.text.strip():
                outcomes[index] = UnclassifiableError(f"mention {delivery.payload.id!r} has no text")
            else:
                todo.append(index)
        posts = [Post.from_mention(batch[i].payload) for i in todo]
        links = [trace.Link(batch[i].span.get_span_context()) for i in todo]
        with self._tracer.start_as_current_span(
            "classify batch",
            links=links,
            attributes={"clamor.batch.size": len(posts), "clamor.model": self._classifier.version},
        ):
            # Off the event loop: the model that replaces the rules takes real CPU time.
            results = await asyncio.to_thread(self._classifier.classify, posts)
        for index, result in zip(todo, results, strict=True):
            delivery = batch[index]
            try:
                await self._publisher.publish(
                    triage_pb2.TriagedMention(mention=delivery.payload, result=result), context=delivery.context
                )
            except Exception as exc:
                outcomes[index] = exc
                continue
            self._counters.inc("triaged")
            if result.verdict == triage_pb2.VERDICT_COMPLAINT:
                self._counters.inc("complaints")
        return outcomes
