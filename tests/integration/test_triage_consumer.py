"""Triage's JetStream handler on a real nats-server: a post by the brand's own account is noise, unasked.

Mentions go in on the MENTIONS stream, the handler runs under triage's real durable with the rules
classifier, and the verdicts are read back from the TRIAGED stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from clamor.v1 import mention_pb2, triage_pb2
from services.shared import subjects
from services.shared.jetstream import ensure_streams, publish
from services.shared.pull_consumer import ConsumerSet
from services.shared.status import Counters
from services.triage.clients import TriagedPublisher
from services.triage.consumer import TriageHandler
from services.triage.domain import OWN_ACCOUNT_RULE, RuleClassifier
from tests.integration.router_harness import stream_messages
from tests.support.clock import tracer
from tests.support.eventually import eventually

APOLOGY = "@kev_oconnor so sorry, your refund failed again, DM us"


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

    async def triage(self, *mentions: mention_pb2.Mention) -> dict[str, triage_pb2.TriageResult]:
        """Publish ``mentions``, wait until triage has published a verdict on each, and read them back."""
        expected = self.counters.get("triaged") + len(mentions)
        for item in mentions:
            subject = subjects.mention_subject(item.platform)
            await publish(self.js, tracer(), subject, item, msg_id=item.id, mention_id=item.id)
        # The handler's own count, not only an empty consumer: nats-server may count a message just
        # published as pending a moment after the publish was acknowledged.
        await eventually(lambda: self.counters.get("triaged") >= expected, within_s=15.0, what="every verdict")
        await self.consumers.settle()
        triaged = await stream_messages(self.js, subjects.TRIAGED.name, "clamor.triaged.>", triage_pb2.TriagedMention)
        return {t.mention.id: t.result for t in triaged}


@pytest.fixture
async def running(js: JetStreamContext) -> AsyncIterator[RunningTriage]:
    """Triage's handler under its real durable, with the rules classifier."""
    test_tracer = tracer()
    counters = Counters()
    handler = TriageHandler(RuleClassifier(), TriagedPublisher(js, test_tracer), test_tracer, counters)
    wiring = [(subjects.TRIAGE_CONSUMER, mention_pb2.Mention, handler.handle_batch, 16)]
    consumers = await ConsumerSet.start(js, wiring, tracer=test_tracer, counters=Counters())
    try:
        yield RunningTriage(js, consumers, counters)
    finally:
        await consumers.stop()


def mention(native_id: str, *, handle: str, own: bool, text: str = APOLOGY) -> mention_pb2.Mention:
    return mention_pb2.Mention(
        id=f"x:{native_id}",
        source="x-lumo",
        platform="x",
        native_id=native_id,
        text=text,
        watch="lumo",
        author=mention_pb2.Author(handle=handle, followers=95_800),
        thread_id="th-lumo-007",
        own_account=own,
    )


async def test_an_own_post_that_reads_like_a_complaint_is_triaged_as_noise(running: RunningTriage) -> None:
    customer_post = mention("1", handle="a_customer", own=False)
    results = await running.triage(customer_post, mention("2", handle="LumoMobile", own=True))
    customer, brand = results["x:1"], results["x:2"]
    # The same words from anybody else are a complaint, and a severe one at this reach.
    assert customer.verdict == triage_pb2.VERDICT_COMPLAINT
    assert customer.severity >= triage_pb2.SEVERITY_HIGH
    assert (brand.verdict, brand.complaint_score, brand.severity) == (
        triage_pb2.VERDICT_NOISE,
        0.0,
        triage_pb2.SEVERITY_UNSPECIFIED,
    )
    assert [(r.rule, r.matched) for r in brand.reasons] == [(OWN_ACCOUNT_RULE, "LumoMobile")]
    assert brand.language == "en"
    assert (running.counters.get("complaints"), running.counters.get("own_posts")) == (1, 1)


async def test_an_own_post_without_text_is_still_triaged(running: RunningTriage) -> None:
    # An image-only brand reply is still the brand answering; a customer's empty post is dead-lettered.
    results = await running.triage(mention("3", handle="LumoMobile", own=True, text=""))
    assert results["x:3"].verdict == triage_pb2.VERDICT_NOISE
    assert running.counters.get("own_posts") == 1
