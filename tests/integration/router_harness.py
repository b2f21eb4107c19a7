"""The router's parts wired by ``services.router.__main__.assemble``, on a real nats-server, with a test clock.

Complaints and case actions go in through JetStream and the router's real durable consumers;
deliveries go to real destinations (the outbox file, or a local CRM server). The test advances the
clock and calls :meth:`RunningRouter.tick`, so SLA deadlines of hours take no time. Restarting
builds a fresh router over the same streams and KV buckets, as a new process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from clamor.v1 import alert_pb2, case_pb2, mention_pb2, triage_pb2
from services.router.__main__ import Router, assemble
from services.router.config import RouterConfig, RouterSettings
from services.shared import subjects
from services.shared.jetstream import ensure_consumer, ensure_streams, publish
from services.shared.pull_consumer import PullConsumer
from services.shared.status import Counters

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@dataclass
class ManualClock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def tracer() -> trace.Tracer:
    return TracerProvider().get_tracer("test")


def router_settings(data: dict[str, Any], tmp_path: Path) -> RouterSettings:
    """RouterSettings from a ``router:`` mapping, paths relative to ``tmp_path`` as in a config file."""
    return RouterConfig.model_validate({"router": data}, context={"base_dir": tmp_path}).router


@dataclass
class RunningRouter:
    js: JetStreamContext
    router: Router
    consumers: list[PullConsumer[Any]]
    clock: Callable[[], datetime]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def settle(self, seconds: float = 15.0) -> None:
        """Wait until every consumer has acknowledged everything published so far."""
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            infos = [await self.js.consumer_info(c.spec.stream, c.spec.durable) for c in self.consumers]
            if all(i.num_pending == 0 and i.num_ack_pending == 0 for i in infos):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"consumers did not settle: {[(i.name, i.num_pending) for i in infos]}")
            await asyncio.sleep(0.05)

    async def tick(self) -> int:
        """Consumers settled, one turn of the SLA clocks, and settled again; returns the steps fired."""
        await self.settle()
        fired = await self.router.clocks.tick(self.clock())
        await self.settle()
        return fired

    async def count_and_watch(self) -> list[alert_pb2.Alert]:
        """Count what reached TRIAGED, then one turn of the reputation watch; returns the alerts it published."""
        await self.router.trends.catch_up()
        return await self.router.reputation.tick(self.clock())

    async def case(self, case_id: str) -> case_pb2.Case:
        found = await self.router.cases.get(case_id)
        assert found is not None, f"no case {case_id}"
        return found[0]


@asynccontextmanager
async def running_router(
    js: JetStreamContext, settings: RouterSettings, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> AsyncIterator[RunningRouter]:
    await ensure_streams(js)
    test_tracer = tracer()
    router = await assemble(js, settings, tracer=test_tracer, counters=Counters(), clock=clock)
    consumers: list[PullConsumer[Any]] = []
    for spec, payload_type, handler, batch_size in router.consumers():
        await ensure_consumer(js, spec)
        consumer: PullConsumer[Any] = PullConsumer(
            js, spec, payload_type=payload_type, handler=handler, tracer=test_tracer, counters=Counters(),
            batch_size=batch_size, fetch_wait_s=0.2,
        )  # fmt: skip
        await consumer.bind()
        consumers.append(consumer)
    running = RunningRouter(js, router, consumers, clock)
    running.tasks = [asyncio.create_task(c.run()) for c in consumers]
    try:
        yield running
    finally:
        for consumer in consumers:
            consumer.stop()
        for task in running.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for consumer in consumers:
            await consumer.close()
        await router.close()


def complaint(
    mention_id: str,
    *,
    text: str = "Charged twice this month and support will not answer",
    handle: str = "ana",
    watch: str = "acme",
    thread_id: str = "",
    platform: str = "mastodon",
    severity: triage_pb2.Severity.ValueType = triage_pb2.SEVERITY_MEDIUM,
    category: str = "billing",
    flags: tuple[triage_pb2.RiskFlag.ValueType, ...] = (),
    followers: int = 300,
    verdict: triage_pb2.Verdict.ValueType = triage_pb2.VERDICT_COMPLAINT,
) -> triage_pb2.TriagedMention:
    mention = mention_pb2.Mention(
        id=mention_id, source=f"{platform}-acme", platform=platform, native_id=mention_id.rsplit(":", 1)[-1],
        url=f"https://social.example/@{handle}/{mention_id.rsplit(':', 1)[-1]}", text=text, language="en",
        author=mention_pb2.Author(handle=handle, display_name=handle.title(), followers=followers), watch=watch,
        thread_id=thread_id,
    )  # fmt: skip
    result = triage_pb2.TriageResult(
        verdict=verdict, complaint_score=0.93 if verdict == triage_pb2.VERDICT_COMPLAINT else 0.1,
        severity=severity, category=category, language="en", risk_flags=flags, model_version="test/1",
    )  # fmt: skip
    return triage_pb2.TriagedMention(mention=mention, result=result)


async def publish_triaged(js: JetStreamContext, triaged: triage_pb2.TriagedMention) -> None:
    verdict = "complaint" if triaged.result.verdict == triage_pb2.VERDICT_COMPLAINT else "noise"
    await publish(
        js, tracer(), subjects.triaged_subject(verdict), triaged, msg_id=f"triaged:{triaged.mention.id}",
        mention_id=triaged.mention.id,
    )  # fmt: skip


async def escalations_published(js: JetStreamContext) -> list[case_pb2.Escalation]:
    """Every escalation on the ESCALATIONS stream, oldest first (a duplicate would show twice)."""
    found: list[case_pb2.Escalation] = []
    seq = 1
    while True:
        try:
            raw = await js.get_msg(subjects.ESCALATIONS.name, seq=seq, subject="clamor.escalation.>", next=True)
        except NotFoundError:
            return found
        seq = int(raw.seq or seq) + 1
        item = case_pb2.Escalation()
        item.ParseFromString(raw.data or b"")
        found.append(item)


def outbox_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
