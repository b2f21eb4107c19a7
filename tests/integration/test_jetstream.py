"""JetStream helpers and the pull-consumer loop against a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import replace

import pytest
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clamor.v1 import mention_pb2
from services.shared import subjects
from services.shared.config import NatsSettings
from services.shared.errors import PermanentError, TransientError
from services.shared.jetstream import bucket_stream, connect, ensure_bucket, ensure_streams, publish
from services.shared.pull_consumer import Delivery, PullConsumer, one_at_a_time
from services.shared.status import Counters
from tests.support.eventually import eventually
from tests.support.nats_cluster import NatsCluster

# Short delays so redelivery happens within a test.
FAST_SPEC = replace(
    subjects.TRIAGE_CONSUMER,
    durable="test-triage",
    ack_wait_s=2.0,
    backoff_s=(2.0, 2.0, 2.0),
    nak_delays_s=(0.2, 0.2, 0.2),
    max_deliver=3,
)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> trace.Tracer:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test")


@pytest.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    context = nc.jetstream()
    await ensure_streams(context)
    return context


def mention(native_id: str, text: str = "charged twice, no refund") -> mention_pb2.Mention:
    return mention_pb2.Mention(id=f"test:{native_id}", source="test", platform="replay", native_id=native_id, text=text)


async def publish_mention(js: JetStreamContext, tracer: trace.Tracer, item: mention_pb2.Mention) -> bool:
    ack = await publish(js, tracer, "clamor.mention.replay", item, msg_id=item.id, mention_id=item.id)
    return not ack.duplicate


class Recorder:
    """A handler that records what it saw and fails the way a test tells it to."""

    def __init__(self, failures: dict[str, list[BaseException]] | None = None) -> None:
        self.seen: list[tuple[str, int]] = []
        self.headers: list[dict[str, str]] = []
        self._failures = failures or {}
        self.done = asyncio.Event()

    async def handle(self, delivery: Delivery[mention_pb2.Mention]) -> None:
        self.seen.append((delivery.payload.id, delivery.attempt))
        self.headers.append(dict(delivery.msg.headers or {}))
        queue = self._failures.get(delivery.payload.id)
        if queue:
            raise queue.pop(0)


async def run_until(
    consumer: PullConsumer[mention_pb2.Mention], condition: asyncio.Event | None, seconds: float
) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        if condition is None:
            await asyncio.sleep(seconds)
        else:
            await asyncio.wait_for(condition.wait(), timeout=seconds)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, timeout=5)
        await consumer.close()


def make_consumer(
    js: JetStreamContext, tracer: trace.Tracer, recorder: Recorder, counters: Counters
) -> PullConsumer[mention_pb2.Mention]:
    return PullConsumer(
        js,
        FAST_SPEC,
        payload_type=mention_pb2.Mention,
        handler=one_at_a_time(recorder.handle),
        tracer=tracer,
        counters=counters,
        batch_size=8,
        fetch_wait_s=0.2,
    )


async def test_ensure_streams_is_idempotent(js: JetStreamContext) -> None:
    await ensure_streams(js)
    info = await js.stream_info(subjects.MENTIONS.name)
    assert info.config.subjects == list(subjects.MENTIONS.subjects)
    assert info.config.max_age == subjects.MENTIONS.max_age_s


async def test_publish_drops_a_repeated_msg_id(js: JetStreamContext, tracer: trace.Tracer) -> None:
    assert await publish_mention(js, tracer, mention("a")) is True
    assert await publish_mention(js, tracer, mention("a")) is False
    info = await js.stream_info(subjects.MENTIONS.name)
    assert info.state.messages == 1


async def test_traceparent_reaches_the_consumer_span(
    js: JetStreamContext, tracer: trace.Tracer, exporter: InMemorySpanExporter
) -> None:
    with tracer.start_as_current_span("discover") as root:
        await publish_mention(js, tracer, mention("t"))
    recorder = Recorder()
    consumer = make_consumer(js, tracer, recorder, Counters())
    await run_until(consumer, None, 1.0)
    assert "traceparent" in recorder.headers[0]
    spans = {span.name: span for span in exporter.get_finished_spans()}
    produce, process = spans["publish clamor.mention.replay"], spans["process clamor.mention.replay"]
    assert produce.kind == trace.SpanKind.PRODUCER
    assert process.kind == trace.SpanKind.CONSUMER
    assert process.context is not None
    assert process.context.trace_id == root.get_span_context().trace_id
    assert process.parent is not None
    assert produce.context is not None
    assert process.parent.span_id == produce.context.span_id


async def test_transient_failure_is_redelivered_after_nak(js: JetStreamContext, tracer: trace.Tracer) -> None:
    await publish_mention(js, tracer, mention("flaky"))
    recorder = Recorder({"test:flaky": [TransientError("downstream busy")]})
    counters = Counters()
    consumer = make_consumer(js, tracer, recorder, counters)
    task = asyncio.create_task(consumer.run())
    await eventually(lambda: len(recorder.seen) >= 2, what="two deliveries")
    consumer.stop()
    await task
    await consumer.close()
    assert recorder.seen == [("test:flaky", 1), ("test:flaky", 2)]
    assert counters.get("retried") == 1
    assert counters.get("acked") == 1


async def test_poison_message_is_dead_lettered_and_terminated(js: JetStreamContext, tracer: trace.Tracer) -> None:
    await publish_mention(js, tracer, mention("poison"))
    recorder = Recorder({"test:poison": [PermanentError("no text")]})
    counters = Counters()
    consumer = make_consumer(js, tracer, recorder, counters)
    await run_until(consumer, None, 1.5)
    assert recorder.seen == [("test:poison", 1)]  # terminated: never redelivered
    dead = await js.get_last_msg(subjects.DEAD_LETTERS.name, FAST_SPEC.dead_letter_subject)
    copy = mention_pb2.Mention()
    copy.ParseFromString(dead.data or b"")
    assert copy.id == "test:poison"
    headers = dead.headers or {}
    assert headers[subjects.DLQ_SUBJECT_HEADER] == "clamor.mention.replay"
    assert "PermanentError: no text" in headers[subjects.DLQ_ERROR_HEADER]
    assert counters.get("dead_lettered") == 1


async def test_undecodable_payload_is_dead_lettered(js: JetStreamContext, tracer: trace.Tracer) -> None:
    await js.publish("clamor.mention.replay", b"\xff\xff not protobuf", headers={subjects.MSG_ID_HEADER: "junk"})
    recorder = Recorder()
    counters = Counters()
    await run_until(make_consumer(js, tracer, recorder, counters), None, 1.0)
    assert recorder.seen == []
    dead = await js.get_last_msg(subjects.DEAD_LETTERS.name, FAST_SPEC.dead_letter_subject)
    assert dead.data == b"\xff\xff not protobuf"
    assert "undecodable" in (dead.headers or {})[subjects.DLQ_ERROR_HEADER]


async def test_repeated_transient_failures_end_in_the_dead_letter_stream(
    js: JetStreamContext, tracer: trace.Tracer
) -> None:
    await publish_mention(js, tracer, mention("doomed"))
    errors: list[BaseException] = [TransientError(f"attempt {n}") for n in range(10)]
    recorder = Recorder({"test:doomed": errors})
    counters = Counters()
    consumer = make_consumer(js, tracer, recorder, counters)
    task = asyncio.create_task(consumer.run())
    await eventually(lambda: counters.get("dead_lettered") == 1, what="one dead letter")
    consumer.stop()
    await task
    await consumer.close()
    assert [attempt for _, attempt in recorder.seen] == [1, 2, 3]
    dead = await js.get_last_msg(subjects.DEAD_LETTERS.name, FAST_SPEC.dead_letter_subject)
    assert (dead.headers or {})[subjects.DLQ_DELIVERIES_HEADER] == "3"


async def test_durable_consumer_resumes_after_restart(js: JetStreamContext, tracer: trace.Tracer) -> None:
    for n in range(3):
        await publish_mention(js, tracer, mention(f"first-{n}"))
    first = Recorder()
    await run_until(make_consumer(js, tracer, first, Counters()), None, 1.0)
    for n in range(2):
        await publish_mention(js, tracer, mention(f"second-{n}"))
    second = Recorder()
    await run_until(make_consumer(js, tracer, second, Counters()), None, 1.0)
    assert [m for m, _ in first.seen] == ["test:first-0", "test:first-1", "test:first-2"]
    assert [m for m, _ in second.seen] == ["test:second-0", "test:second-1"]


async def test_unacked_work_is_redelivered_to_the_next_consumer(js: JetStreamContext, tracer: trace.Tracer) -> None:
    """A consumer that dies mid-message (no ack, no nak) loses nothing: ack_wait hands it on."""
    await publish_mention(js, tracer, mention("crash"))
    blocked = asyncio.Event()

    async def hang(_: Sequence[Delivery[mention_pb2.Mention]]) -> list[BaseException | None]:
        blocked.set()
        await asyncio.sleep(3600)
        return []

    dying: PullConsumer[mention_pb2.Mention] = PullConsumer(
        js,
        replace(FAST_SPEC, ack_wait_s=30.0),
        payload_type=mention_pb2.Mention,
        handler=hang,
        tracer=tracer,
        counters=Counters(),
        fetch_wait_s=0.2,
    )
    task = asyncio.create_task(dying.run())
    await asyncio.wait_for(blocked.wait(), timeout=5)
    task.cancel()  # the process "dies": nothing settles the message
    await asyncio.gather(task, return_exceptions=True)
    await dying.close()
    recorder = Recorder()
    await run_until(make_consumer(js, tracer, recorder, Counters()), None, 3.5)
    assert recorder.seen == [("test:crash", 2)]


async def test_slow_work_is_kept_alive_with_in_progress(js: JetStreamContext, tracer: trace.Tracer) -> None:
    """A handler that takes longer than ack_wait is not redelivered: heartbeats extend the deadline."""
    await publish_mention(js, tracer, mention("slow"))
    seen: list[int] = []

    async def slow(batch: Sequence[Delivery[mention_pb2.Mention]]) -> list[BaseException | None]:
        seen.extend(d.attempt for d in batch)
        await asyncio.sleep(FAST_SPEC.ack_wait_s * 2.5)
        return [None] * len(batch)

    counters = Counters()
    consumer: PullConsumer[mention_pb2.Mention] = PullConsumer(
        js,
        FAST_SPEC,
        payload_type=mention_pb2.Mention,
        handler=slow,
        tracer=tracer,
        counters=counters,
        fetch_wait_s=0.2,
    )
    await run_until(consumer, None, FAST_SPEC.ack_wait_s * 4)
    assert seen == [1]
    assert counters.get("acked") == 1


# --- on a three-node cluster --------------------------------------------------------------


async def test_a_stream_created_at_one_replica_moves_to_three_in_place(
    nats_cluster: NatsCluster, tracer: trace.Tracer
) -> None:
    nc = await nats_cluster.connect()
    try:
        js = nc.jetstream()
        await ensure_streams(js, [subjects.MENTIONS], replicas=1)

        async def stored() -> bool:
            # Right after creation the stream's interest may not have reached this client's node yet
            # ("no responders"): a publisher retries, as the services do.
            with contextlib.suppress(TransientError):
                await publish_mention(js, tracer, mention("1"))
            return (await nats_cluster.describe(subjects.MENTIONS.name)).state.messages == 1

        await eventually(stored, what="the first mention stored", every_s=0.2)
        await ensure_streams(js, [subjects.MENTIONS], replicas=3)
        info = await nats_cluster.describe(subjects.MENTIONS.name)
        assert info.config.num_replicas == 3
        assert info.state.messages == 1
        await nats_cluster.wait_current(subjects.MENTIONS.name)
    finally:
        await nc.close()


async def test_a_bucket_created_at_one_replica_moves_to_three_in_place(nats_cluster: NatsCluster) -> None:
    nc = await nats_cluster.connect()
    try:
        js = nc.jetstream()
        kv = await ensure_bucket(js, "moved", replicas=1)

        async def kept() -> bool:
            # As above: the new bucket's interest may reach this client's node a moment later.
            with contextlib.suppress(NatsError):
                await kv.put("k", b"kept")
                return True
            return False

        await eventually(kept, what="the first key stored", every_s=0.2)
        kv = await ensure_bucket(js, "moved", replicas=3)
        assert (await nats_cluster.describe(bucket_stream("moved"))).config.num_replicas == 3
        await nats_cluster.wait_current(bucket_stream("moved"))
        assert (await kv.get("k")).value == b"kept"
    finally:
        await nc.close()


async def test_a_client_given_every_node_follows_the_cluster_when_its_node_dies(
    nats_cluster: NatsCluster, tracer: trace.Tracer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.shared.jetstream")
    nc = await connect(NatsSettings(url=nats_cluster.urls), name="test")
    try:
        first = nc.connected_url
        assert first is not None
        assert f"connected to NATS at nats://127.0.0.1:{first.port}" in caplog.text
        js = nc.jetstream()
        await ensure_streams(js, [subjects.MENTIONS], replicas=3)
        [node] = [n for n in nats_cluster.nodes if n.client_port == first.port]
        nats_cluster.kill(node)

        async def published() -> bool:
            try:
                # Stored once, even when an earlier try was stored but its answer lost (a duplicate then).
                await publish(js, tracer, "clamor.mention.replay", mention("after"), msg_id="test:after")
            except TransientError:
                return False  # the stream's leader may be the node that died: an election first
            return True

        await eventually(published, what="a publish through another node", every_s=0.2)
        now = nc.connected_url
        assert now is not None
        assert now.port != first.port
        assert f"reconnected to NATS at nats://127.0.0.1:{now.port}" in caplog.text
    finally:
        await nc.close()
