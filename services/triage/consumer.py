"""Triage's JetStream handler: classify a batch of mentions, publish each verdict.

The batch is classified in one call (one inference span linked to every mention it served),
then each result is published inside its own mention's trace. A post by one of the watch's own
accounts is never classified: it is noise by definition (``own_account_result``).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from opentelemetry import trace

from clamor.v1 import mention_pb2, triage_pb2
from services.triage.batch_metrics import BatchMetrics
from services.triage.domain import Classifier, Post, own_account_result
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
        self._meter = BatchMetrics(counters.metrics)

    async def handle_batch(self, batch: Sequence[Delivery[mention_pb2.Mention]]) -> list[BaseException | None]:
        self._meter.batch(len(batch))
        outcomes: list[BaseException | None] = [None] * len(batch)
        todo = []
        own: dict[int, triage_pb2.TriageResult] = {}
        for index, delivery in enumerate(batch):
            if delivery.payload.own_account:
                own[index] = own_account_result(delivery.payload, model_version=self._classifier.version)
            elif not delivery.payload.text.strip():
                outcomes[index] = UnclassifiableError(f"mention {delivery.payload.id!r} has no text")
            else:
                todo.append(index)
        classified = own | await self._classify(batch, todo)
        for index, result in sorted(classified.items()):
            delivery = batch[index]
            try:
                await self._publisher.publish(
                    triage_pb2.TriagedMention(mention=delivery.payload, result=result), context=delivery.context
                )
            except Exception as exc:
                outcomes[index] = exc
                continue
            self._counters.inc("triaged")
            self._meter.verdict(result)
            if index in own:
                self._counters.inc("own_posts")
            elif result.verdict == triage_pb2.VERDICT_COMPLAINT:
                self._counters.inc("complaints")
        return outcomes

    async def _classify(
        self, batch: Sequence[Delivery[mention_pb2.Mention]], todo: list[int]
    ) -> dict[int, triage_pb2.TriageResult]:
        """The classifier's results for the deliveries at ``todo``, by index, in one inference span."""
        if not todo:
            return {}
        posts = [Post.from_mention(batch[i].payload) for i in todo]
        links = [trace.Link(batch[i].span.get_span_context()) for i in todo]
        with self._tracer.start_as_current_span(
            "classify batch",
            links=links,
            attributes={"clamor.batch.size": len(posts), "clamor.model": self._classifier.version},
        ):
            # Off the event loop: the model that replaces the rules takes real CPU time.
            results = await asyncio.to_thread(self._timed_classify, posts)
        return dict(zip(todo, results, strict=True))

    def _timed_classify(self, posts: list[Post]) -> list[triage_pb2.TriageResult]:
        """Timed on the worker thread, so a wait for a free thread is not counted as the model's."""
        started = time.perf_counter()
        results = self._classifier.classify(posts, encoded=self._meter.encoded)
        self._meter.model_call(time.perf_counter() - started)
        return results
