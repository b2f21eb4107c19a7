"""Notifier throughput: escalations queued, and notifications delivered, per second on this machine.

One process, one real nats-server with JetStream, the notifier's parts wired as its ``__main__``
wires them (the real clock, the three durable consumers, KV groups and pages, the delivery store,
the notification log) and one ``file`` channel at its 1000 messages/s budget:

1. queueing: N escalations are published to ``clamor.escalation.care`` and timed until the
   consumers have settled (everything queued into the channel's groups in KV);
2. delivery: one message per escalation (group_by [case], no waits: the worst case for the
   dispatcher), timed from the dispatcher's start until the file holds N lines; then a probe
   paced at a quarter of that rate, published while everything runs, gives publish → file latency;
3. grouped delivery: the same N escalations on fresh streams as digests (group_by [team],
   group_wait_s 1, group_interval_s 0, 25 items a message), queued and then delivered.

The last line is the headline.

    python bench/notifier_throughput.py --escalations 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
from google.protobuf.message import Message as ProtoMessage
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from clamor.v1 import alert_pb2, case_pb2, mention_pb2, triage_pb2
from services.notifier import grouping, pages
from services.notifier.channels.base import Channel
from services.notifier.clients import DeliveryStore, NotificationLog, build_channel
from services.notifier.config import FileChannelSettings, GroupingSettings, NotifierSettings
from services.notifier.consumer import NotifyHandler
from services.notifier.dispatcher import MAX_PENDING_PER_GROUP, Dispatcher
from services.notifier.records import GROUP_CODEC, PAGE_CODEC
from services.shared import subjects
from services.shared.clock import system_clock
from services.shared.jetstream import ensure_streams, publish
from services.shared.kv_state import KvState
from services.shared.nats_server import LocalNatsServer, free_port
from services.shared.periodic import every
from services.shared.pull_consumer import ConsumerSet, one_at_a_time
from services.shared.status import Counters

TEAM = "care"
TICK_S = 0.2
FILLER = (
    "charged twice for the same order, then the refund was promised in five days and never came; "
    "support closed my ticket without an answer and the chat bot keeps looping. Third week of this, "
    "I want my money back now."
)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def escalation(n: int, *, at: datetime) -> case_pb2.Escalation:
    case_id = f"case-{n:07d}"
    mention = mention_pb2.Mention(
        id=f"m-{n:07d}",
        platform="mastodon",
        text=f"#{n}: {FILLER}"[:200],
        url=f"https://social.example/@ana/{n}",
        author=mention_pb2.Author(handle="ana", followers=1200),
    )
    case = case_pb2.Case(
        id=case_id,
        severity=triage_pb2.SEVERITY_HIGH,
        team=TEAM,
        mentions=[triage_pb2.TriagedMention(mention=mention)],
    )
    result = case_pb2.Escalation(id=f"{case_id}:1", case=case, team=TEAM, level=1, reason="severity HIGH")
    result.raised_at.FromDatetime(at)
    return result


def notifier_settings(outbox: Path, rules: GroupingSettings) -> NotifierSettings:
    channel = FileChannelSettings(kind="file", name="file", path=outbox, rate_per_s=1000, grouping=rules)
    return NotifierSettings(channels=[channel], tick_s=TICK_S)


@dataclass
class Notifier:
    """The notifier's parts on one connection, as ``services/notifier/__main__.py`` wires them."""

    js: JetStreamContext
    dispatcher: Dispatcher
    channels: list[Channel]
    groups: KvState[grouping.Group]
    pages: KvState[pages.Page]
    consumers: ConsumerSet
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def pending(self) -> int:
        """Messages the consumers have not acknowledged yet."""
        return await self.consumers.pending()

    async def close(self) -> None:
        await self.consumers.stop()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.dispatcher.idle()
        await self.groups.close()
        await self.pages.close()
        for channel in self.channels:
            await channel.aclose()


async def start_notifier(js: JetStreamContext, settings: NotifierSettings, tracer: trace.Tracer) -> Notifier:
    await ensure_streams(js)
    counters = Counters()
    channels = [build_channel(c, quote_chars=settings.quote_chars) for c in settings.channels]
    group_state = await KvState.open(js, subjects.NOTIFIER_GROUPS_BUCKET, codec=GROUP_CODEC)
    page_state = await KvState.open(js, subjects.NOTIFIER_PAGES_BUCKET, codec=PAGE_CODEC)
    dispatcher = Dispatcher(
        settings,
        channels,
        groups=group_state,
        pages=page_state,
        deliveries=await DeliveryStore.open(js, replicas=1),
        log=NotificationLog(js, tracer),
        tracer=tracer,
        counters=counters,
        clock=system_clock,
    )
    handler = NotifyHandler(
        settings, channels, dispatcher=dispatcher, pages=page_state, links=None, counters=counters, clock=system_clock
    )
    wiring: list[tuple[subjects.ConsumerSpec, type[ProtoMessage], Any]] = [
        (subjects.NOTIFIER_ESCALATIONS_CONSUMER, case_pb2.Escalation, handler.on_escalation),
        (subjects.NOTIFIER_ALERTS_CONSUMER, alert_pb2.Alert, handler.on_alert),
        (subjects.NOTIFIER_ACTIONS_CONSUMER, case_pb2.CaseAction, handler.on_action),
    ]
    consumers = await ConsumerSet.start(
        js,
        [(spec, payload_type, one_at_a_time(handle), 16) for spec, payload_type, handle in wiring],
        tracer=tracer,
        counters=counters,
        fetch_wait_s=1.0,
    )
    running = Notifier(js, dispatcher, channels, group_state, page_state, consumers)
    return running


async def wait_for(what: str, done: Callable[[], Awaitable[int]], total: int, timeout_s: float) -> float:
    """Poll ``done`` until it reaches ``total``; progress on stderr; the seconds it took."""
    started = time.perf_counter()
    reported = started
    while (count := await done()) < total:
        now = time.perf_counter()
        if now - started > timeout_s:
            raise SystemExit(f"{what}: only {count}/{total} after {timeout_s:.0f}s")
        if now - reported >= 2.0:
            note(f"  {what}: {count}/{total} ({now - started:.1f}s)")
            reported = now
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


async def publish_all(
    js: JetStreamContext, tracer: trace.Tracer, first: int, count: int, *, rate: float = 0.0
) -> dict[str, datetime]:
    """Publish escalations ``first`` … ``first + count - 1`` (paced at ``rate``/s when set); case id → publish time."""
    published: dict[str, datetime] = {}
    started = time.perf_counter()
    for offset in range(count):
        if rate > 0:
            await asyncio.sleep(max(0.0, started + offset / rate - time.perf_counter()))
        at = system_clock()
        item = escalation(first + offset, at=at)
        await publish(js, tracer, subjects.escalation_subject(TEAM), item, msg_id=item.id)
        published[item.case.id] = at
    return published


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def item_count(path: Path) -> int:
    # A digest names its items; a message that carried one escalation is that escalation's own record.
    return sum(len(record.get("item_ids") or [record]) for record in records(path))


async def queue(notifier: Notifier, tracer: trace.Tracer, count: int, timeout_s: float) -> float:
    """Publish ``count`` escalations and wait until the consumers have queued all of them; escalations/s."""
    started = time.perf_counter()
    await publish_all(notifier.js, tracer, 0, count)
    published_s = time.perf_counter() - started
    note(f"  published {count} escalations in {published_s:.2f}s; waiting for the consumers")

    async def queued() -> int:
        return count - await notifier.pending()

    await wait_for("queued", queued, count, timeout_s)
    elapsed = time.perf_counter() - started
    return count / elapsed


async def deliver(
    notifier: Notifier, stop: asyncio.Event, done: Callable[[], int], total: int, timeout_s: float
) -> float:
    """Start the dispatcher and wait until ``done`` reaches ``total``; the seconds it took."""

    async def clock_work() -> None:
        # As __main__ runs it: a tick every TICK_S, and the sends finished once stopped.
        ticks = every(TICK_S, notifier.dispatcher.tick, stop, name="dispatcher")
        await asyncio.gather(ticks, notifier.dispatcher.finish(stop))

    notifier.tasks.append(asyncio.create_task(clock_work()))
    return await wait_for("delivered", counting(done), total, timeout_s)


def counting(count: Callable[[], int]) -> Callable[[], Awaitable[int]]:
    async def counted() -> int:
        return count()

    return counted


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100)[q - 1]


@dataclass
class Figures:
    queued_per_s: float = 0.0
    delivered_per_s: float = 0.0
    notes: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def notifier_on_fresh_nats(
    folder: Path, name: str, outbox: Path, rules: GroupingSettings, tracer: trace.Tracer
) -> AsyncIterator[tuple[Notifier, asyncio.Event]]:
    """A nats-server of its own and the notifier on it; yields the notifier and the event that stops its clock."""
    server = LocalNatsServer(folder / f"nats-{name}", port=free_port())
    server.start()
    stop = asyncio.Event()
    try:
        nc = await nats.connect(server.url)
        notifier = await start_notifier(nc.jetstream(), notifier_settings(outbox, rules), tracer)
        try:
            yield notifier, stop
        finally:
            stop.set()
            await notifier.close()
            await nc.close()
    finally:
        server.stop()


async def single_messages(folder: Path, count: int, probe_rate: float, timeout_s: float, figures: Figures) -> None:
    """Phases 1 and 2: queueing, then one message per escalation, then a paced latency probe."""
    outbox = folder / "single.jsonl"
    rules = GroupingSettings(group_by=["case"], group_wait_s=0, group_interval_s=0)
    tracer = TracerProvider().get_tracer("bench")
    async with notifier_on_fresh_nats(folder, "single", outbox, rules, tracer) as (notifier, stop):
        note(f"queueing {count} escalations (group_by [case])")
        figures.queued_per_s = await queue(notifier, tracer, count, timeout_s)
        figures.notes.append(
            f"queueing: {count} escalations queued at {figures.queued_per_s:,.0f}/s "
            f"(publish → consumers settled; {count} groups in KV)"
        )
        note(f"delivering {count} notifications through the file channel (rate_per_s 1000, tick {TICK_S}s)")
        elapsed = await deliver(notifier, stop, lambda: line_count(outbox), count, timeout_s)
        figures.delivered_per_s = count / elapsed
        figures.notes.append(
            f"delivery: {count} notifications in {elapsed:.2f}s: "
            f"{figures.delivered_per_s:,.0f} notifications/s (one message per escalation)"
        )
        probe = max(20, count // 20)
        # Well below capacity, so the figure is the path's latency rather than a backlog's.
        probe_rate = probe_rate or max(1.0, figures.delivered_per_s / 4)
        note(f"latency probe: {probe} escalations at {probe_rate:.0f}/s with everything running")
        published = await publish_all(notifier.js, tracer, count, probe, rate=probe_rate)
        await wait_for("probe", counting(lambda: line_count(outbox)), count + probe, timeout_s)
        latencies = [
            (datetime.fromisoformat(r["sent_at"]) - published[r["case_id"]]).total_seconds() * 1000
            for r in records(outbox)
            if r.get("case_id") in published
        ]
        figures.notes.append(
            f"publish → file latency at {probe_rate:.0f} escalations/s: p50 {percentile(latencies, 50):.0f} ms, "
            f"p95 {percentile(latencies, 95):.0f} ms, max {max(latencies):.0f} ms ({len(latencies)} notifications)"
        )


async def digests(folder: Path, count: int, timeout_s: float, figures: Figures) -> None:
    """Phase 3: the same escalations on fresh streams, queued, then sent as digests of up to 25."""
    outbox = folder / "digests.jsonl"
    rules = GroupingSettings(group_by=["team"], group_wait_s=1, group_interval_s=0, max_items_per_message=25)
    tracer = TracerProvider().get_tracer("bench")
    async with notifier_on_fresh_nats(folder, "digests", outbox, rules, tracer) as (notifier, stop):
        note(f"queueing {count} escalations (group_by [team]: one group, spilling every {MAX_PENDING_PER_GROUP} items)")
        queued_per_s = await queue(notifier, tracer, count, timeout_s)
        groups = len(notifier.groups.records())
        note(f"delivering {count} items as digests of up to 25")
        elapsed = await deliver(notifier, stop, lambda: item_count(outbox), count, timeout_s)
        messages = line_count(outbox)
        figures.notes.append(
            f"digests: {count} escalations queued at {queued_per_s:,.0f}/s into {groups} groups; "
            f"{messages} messages sent in {elapsed:.2f}s: {count / elapsed:,.0f} items/s"
        )


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


async def bench(count: int, probe_rate: float, timeout_s: float) -> Figures:
    figures = Figures()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        await single_messages(folder, count, probe_rate, timeout_s, figures)
        await digests(folder, count, timeout_s, figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--escalations", type=int, default=2000)
    parser.add_argument(
        "--probe-rate", type=float, default=0, help="escalations/s of the latency probe (default: 1/4 of delivery)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds each wait may take at most")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    figures = asyncio.run(bench(options.escalations, options.probe_rate, options.timeout))
    for line in figures.notes:
        print(line)
    rss = peak_rss_mb()
    print(f"run time {time.perf_counter() - started:.1f}s; peak RSS {rss:.0f} MB (this process, not nats-server)")
    print(
        f"notifier: {figures.queued_per_s:.0f} escalations/s queued, "
        f"{figures.delivered_per_s:.0f} notifications/s delivered, peak RSS {rss:.0f} MB"
    )


if __name__ == "__main__":
    main()
