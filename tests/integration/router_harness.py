"""The router's parts wired by ``services.router.app.assemble``, on a real nats-server, with a test clock.

Complaints and case actions go in through JetStream and the router's real durable consumers;
deliveries go to real destinations (the outbox file, or a local CRM server). The test advances the
clock and calls :meth:`RunningRouter.tick`, so SLA deadlines of hours take no time. Restarting
builds a fresh router over the same streams and KV buckets, as a new process would.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from google.protobuf.message import Message
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from clamor.v1 import case_pb2, mention_pb2, triage_pb2
from services.router.app import Router, assemble
from services.router.config import RouterConfig, RouterSettings
from services.shared import subjects
from services.shared.jetstream import ensure_streams, publish
from services.shared.pull_consumer import ConsumerSet
from services.shared.status import Counters
from tests.support.clock import tracer
from tests.support.eventually import eventually

MessageT = TypeVar("MessageT", bound=Message)


def router_settings(data: dict[str, Any], tmp_path: Path) -> RouterSettings:
    """RouterSettings from a ``router:`` mapping, paths relative to ``tmp_path`` as in a config file."""
    return RouterConfig.model_validate({"router": data}, context={"base_dir": tmp_path}).router


@dataclass
class RunningRouter:
    js: JetStreamContext
    router: Router
    consumers: ConsumerSet
    clock: Callable[[], datetime]
    # The router's own counters (cases, escalations, brand_replies...), as `clamor status` shows them.
    counters: Counters = field(default_factory=Counters)

    async def settle(self, seconds: float = 15.0) -> None:
        """Wait until every consumer has acknowledged everything published so far."""
        await self.consumers.settle(seconds)

    async def counted(self, name: str, at_least: int, seconds: float = 15.0) -> None:
        """Wait until the router's counter ``name`` reaches ``at_least``, then until everything is settled.

        ``settle`` alone can return before a message published a moment ago is counted as pending
        (nats-server tells a consumer about a stored message asynchronously, after the publish ack):
        a test that asserts that something did *not* happen waits for the handler's own counter first.
        """
        await eventually(
            lambda: self.counters.get(name) >= at_least, within_s=seconds, what=f"counter {name} at {at_least}"
        )
        await self.settle()

    async def tick(self) -> int:
        """Consumers settled, one turn of the SLA clocks, and settled again; returns the steps fired."""
        await self.settle()
        fired = await self.router.tick(self.clock())
        await self.settle()
        return fired

    async def case(self, case_id: str) -> case_pb2.Case:
        found = await self.router.cases.get(case_id)
        assert found is not None, f"no case {case_id}"
        return found[0]


@asynccontextmanager
async def running_router(
    js: JetStreamContext,
    settings: RouterSettings,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    counters: Counters | None = None,
) -> AsyncIterator[RunningRouter]:
    """The router's parts and consumers; ``counters`` (tests/support/metrics.py) to read its metrics back."""
    await ensure_streams(js)
    test_tracer = tracer()
    counters = counters or Counters()
    router = await assemble(js, settings, tracer=test_tracer, counters=counters, clock=clock)
    consumers = await ConsumerSet.start(js, router.consumers(), tracer=test_tracer, counters=Counters())
    try:
        yield RunningRouter(js, router, consumers, clock, counters)
    finally:
        await consumers.stop()
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
    own_account: bool = False,
) -> triage_pb2.TriagedMention:
    mention = mention_pb2.Mention(
        id=mention_id,
        source=f"{platform}-acme",
        platform=platform,
        native_id=mention_id.rsplit(":", 1)[-1],
        url=f"https://social.example/@{handle}/{mention_id.rsplit(':', 1)[-1]}",
        text=text,
        language="en",
        author=mention_pb2.Author(handle=handle, display_name=handle.title(), followers=followers),
        watch=watch,
        thread_id=thread_id,
        own_account=own_account,
    )
    result = triage_pb2.TriageResult(
        verdict=verdict,
        complaint_score=0.93 if verdict == triage_pb2.VERDICT_COMPLAINT else 0.1,
        severity=severity,
        category=category,
        language="en",
        risk_flags=flags,
        model_version="test/1",
    )
    return triage_pb2.TriagedMention(mention=mention, result=result)


async def publish_triaged(js: JetStreamContext, triaged: triage_pb2.TriagedMention, *, attempt: int = 1) -> None:
    """Publish as triage does; a later ``attempt`` gets past JetStream's dedup, as a redelivery would."""
    verdict = "complaint" if triaged.result.verdict == triage_pb2.VERDICT_COMPLAINT else "noise"
    msg_id = f"triaged:{triaged.mention.id}" + (f":{attempt}" if attempt > 1 else "")
    await publish(
        js,
        tracer(),
        subjects.triaged_subject(verdict),
        triaged,
        msg_id=msg_id,
        mention_id=triaged.mention.id,
    )


async def stream_messages(
    js: JetStreamContext, stream: str, subject: str, message_type: Callable[[], MessageT]
) -> list[MessageT]:
    """Every message on ``subject`` in ``stream``, oldest first (a duplicate would show twice)."""
    found: list[MessageT] = []
    seq = 1
    while True:
        try:
            raw = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return found
        seq = int(raw.seq or seq) + 1
        item = message_type()
        item.ParseFromString(raw.data or b"")
        found.append(item)


async def escalations_published(js: JetStreamContext) -> list[case_pb2.Escalation]:
    return await stream_messages(js, subjects.ESCALATIONS.name, "clamor.escalation.>", case_pb2.Escalation)


def outbox_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
