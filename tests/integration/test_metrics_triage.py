"""Triage's metrics, read back from a real meter provider: verdicts, batch sizes, model time, encoder posts.

Mentions go in on the MENTIONS stream, the handler runs under triage's real durable, and what the
metrics say is checked against the verdicts read back from the TRIAGED stream.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from opentelemetry.sdk.metrics.export import HistogramDataPoint

from clamor.v1 import mention_pb2, triage_pb2
from services.shared import subjects
from services.shared.jetstream import ensure_streams, publish
from services.shared.metric_catalogue import LABEL, LANGUAGE
from services.shared.pull_consumer import ConsumerSet
from services.shared.status import Counters
from services.triage.batch_metrics import BATCH_SIZE, ENCODER_POSTS, MODEL_DURATION, VERDICTS
from services.triage.clients import TriagedPublisher
from services.triage.consumer import TriageHandler
from services.triage.domain import Classifier, RuleClassifier
from services.triage.features import Encoder
from services.triage.model import ModelClassifier, ModelHeads, bundled_model_dir
from tests.integration.router_harness import stream_messages
from tests.support.clock import tracer
from tests.support.eventually import eventually
from tests.support.metrics import RecordedMetrics

POSTS = [
    ("en", "I was charged twice for my order and support has ignored me for a week"),
    ("en", "Does anyone know what time the Harbor Street store opens on Sunday?"),
    ("en", "My new washing machine leaked all over the kitchen floor on day two and nobody will send a technician"),
    ("en", "great game last night, what a finish"),
    ("zh", "买到假货商家拒绝退款，我已经打12315投诉了"),
    ("ru", "Третий день нет интернета, поддержка не отвечает, буду жаловаться в Роспотребнадзор"),
]


@pytest.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    context = nc.jetstream()
    await ensure_streams(context)
    return context


@dataclass
class RunningTriage:
    js: JetStreamContext
    consumers: ConsumerSet
    counters: Counters
    recorded: RecordedMetrics

    async def triage(self, *mentions: mention_pb2.Mention, verdicts: int) -> list[triage_pb2.TriagedMention]:
        """Publish ``mentions``, wait for ``verdicts`` verdicts and every message handled, and read them back."""
        for item in mentions:
            await publish(self.js, tracer(), subjects.mention_subject(item.platform), item, msg_id=item.id)
        await eventually(lambda: self.counters.get("triaged") >= verdicts, what=f"{verdicts} verdicts")
        await self.consumers.settle()
        return await stream_messages(self.js, subjects.TRIAGED.name, "clamor.triaged.>", triage_pb2.TriagedMention)

    def histogram(self, name: str) -> list[HistogramDataPoint]:
        return [point for _, point in self.recorded.points(name) if isinstance(point, HistogramDataPoint)]


@asynccontextmanager
async def running_triage(js: JetStreamContext, classifier: Classifier) -> AsyncIterator[RunningTriage]:
    """Triage's handler under its real durable, recording to a real meter provider."""
    recorded = RecordedMetrics()
    spans = tracer()
    handler = TriageHandler(classifier, TriagedPublisher(js, spans), spans, recorded.counters)
    wiring = [(subjects.TRIAGE_CONSUMER, mention_pb2.Mention, handler.handle_batch, 16)]
    consumers = await ConsumerSet.start(js, wiring, tracer=spans, counters=Counters())
    try:
        yield RunningTriage(js, consumers, recorded.counters, recorded)
    finally:
        await consumers.stop()


@pytest.fixture
async def rules_triage(js: JetStreamContext) -> AsyncIterator[RunningTriage]:
    async with running_triage(js, RuleClassifier()) as running:
        yield running


def mention(native_id: str, text: str, *, language: str = "", own: bool = False) -> mention_pb2.Mention:
    return mention_pb2.Mention(
        id=f"x:{native_id}",
        source="x-lumo",
        platform="x",
        native_id=native_id,
        text=text,
        language=language,
        watch="lumo",
        author=mention_pb2.Author(handle="LumoMobile" if own else f"customer{native_id}", followers=120),
        own_account=own,
    )


def by_label_and_language(triaged: Sequence[triage_pb2.TriagedMention]) -> Counter[tuple[str, str]]:
    names = {triage_pb2.VERDICT_COMPLAINT: "complaint", triage_pb2.VERDICT_NOISE: "noise"}
    return Counter((names[t.result.verdict], t.result.language) for t in triaged)


def recorded_verdicts(running: RunningTriage) -> Counter[tuple[str, str]]:
    return Counter(
        {(attrs[LABEL], attrs[LANGUAGE]): int(point.value) for attrs, point in running.recorded.points(VERDICTS)}
    )


async def test_verdicts_are_counted_by_label_and_language_as_published(rules_triage: RunningTriage) -> None:
    mentions = [mention(str(n), text) for n, (_, text) in enumerate(POSTS)]
    own = mention("own", "@customer0 so sorry, your refund failed again, DM us", own=True)
    # A customer's empty post is dead-lettered: a message handled, no verdict.
    empty = mention("empty", "   ")
    # A platform's tag wins over detection; a regional one counts under its language.
    tagged = mention("tagged", "the app logs me out every hour and support never answers", language="en-GB")
    triaged = await rules_triage.triage(*mentions, own, empty, tagged, verdicts=len(mentions) + 2)
    assert len(triaged) == len(mentions) + 2
    published = by_label_and_language(triaged)
    assert {label for label, _ in published} == {"complaint", "noise"}
    assert {language for _, language in published} == {"en", "zh", "ru"}
    assert recorded_verdicts(rules_triage) == published
    # Every message was in one batch or another; the model saw every one that was not own or empty.
    sizes = rules_triage.histogram(BATCH_SIZE)
    assert sum(point.sum for point in sizes) == len(mentions) + 3
    batches = sum(point.count for point in sizes)
    assert 1 <= sum(point.count for point in rules_triage.histogram(MODEL_DURATION)) <= batches
    # The rules have no encoder.
    assert rules_triage.recorded.value(ENCODER_POSTS) == 0


async def test_a_batch_of_own_posts_never_calls_the_model(rules_triage: RunningTriage) -> None:
    triaged = await rules_triage.triage(mention("own", "thanks for waiting, all fixed now", own=True), verdicts=1)
    assert [t.result.verdict for t in triaged] == [triage_pb2.VERDICT_NOISE]
    assert [(p.count, p.sum) for p in rules_triage.histogram(BATCH_SIZE)] == [(1, 1)]
    assert rules_triage.histogram(MODEL_DURATION) == []
    assert recorded_verdicts(rules_triage) == Counter({("noise", "en"): 1})


# --- the bundled model: only the posts its n-grams are unsure of reach the encoder ------------


class CountingEncoder:
    """The real encoder, counting the texts it is asked to embed."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.name = inner.name
        self.texts: list[str] = []

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        self.texts += texts
        return self.inner.encode(texts, progress=progress)


@pytest.fixture(scope="module")
def model_encoder() -> Encoder:
    return ModelClassifier.load().encoder


async def test_encoder_posts_are_the_posts_the_model_encoded(js: JetStreamContext, model_encoder: Encoder) -> None:
    encoder = CountingEncoder(model_encoder)
    classifier = ModelClassifier(ModelHeads.load(bundled_model_dir()), encoder=encoder)
    async with running_triage(js, classifier) as running:
        mentions = [mention(str(n), text) for n, (_, text) in enumerate(POSTS)]
        triaged = await running.triage(*mentions, verdicts=len(mentions))
        assert recorded_verdicts(running) == by_label_and_language(triaged)
        encoded = running.recorded.value(ENCODER_POSTS)
        assert encoded == len(encoder.texts)
        # The cascade decided some on n-grams alone: the encoder read a share, neither none nor all.
        assert 0 < encoded < len(mentions)
        # Every batch held posts for the model, so each called it once, and took some time doing so.
        durations = running.histogram(MODEL_DURATION)
        assert sum(p.count for p in durations) == sum(p.count for p in running.histogram(BATCH_SIZE))
        assert all(p.sum > 0 for p in durations)
