"""The notifier's parts wired as ``__main__`` wires them, on a real nats-server, with a clock the test turns.

Escalations, alerts and case actions go in through JetStream and the notifier's real durable
consumers; the test advances the clock and calls :meth:`RunningNotifier.tick`, so timeouts of
minutes take no time and every step is deterministic. Restarting builds a fresh notifier over
the same streams and KV buckets, as a new process would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nats.js import JetStreamContext

from clamor.v1 import alert_pb2, case_pb2, mention_pb2, notification_pb2, triage_pb2
from services.notifier import grouping, pages
from services.notifier.ack_links import AckLinks
from services.notifier.channels.base import Channel
from services.notifier.clients import DeliveryStore, NotificationLog, build_channel
from services.notifier.config import NotifierSettings
from services.notifier.consumer import NotifyHandler
from services.notifier.dispatcher import Dispatcher
from services.notifier.records import GROUP_CODEC, PAGE_CODEC
from services.shared import subjects
from services.shared.case_actions import CaseActions
from services.shared.jetstream import ensure_streams, publish
from services.shared.kv_state import KvState
from services.shared.periodic import every
from services.shared.pull_consumer import ConsumerSet, ConsumerWiring, one_at_a_time
from services.shared.status import Counters
from tests.support.clock import T0, tracer


@dataclass
class RunningNotifier:
    js: JetStreamContext
    dispatcher: Dispatcher
    consumers: ConsumerSet
    log: NotificationLog
    actions: CaseActions
    groups: KvState[grouping.Group]
    pages: KvState[pages.Page]

    async def settle(self, seconds: float = 10.0) -> None:
        """Wait until the consumers have acknowledged everything published so far."""
        await self.consumers.settle(seconds)

    async def tick(self) -> None:
        """Consumers settled, then one turn of the clock work, waiting for every send it started."""
        await self.settle()
        await self.dispatcher.tick()
        await self.dispatcher.idle()


async def clock_work(dispatcher: Dispatcher, tick_s: float, stop: asyncio.Event) -> None:
    """What ``__main__`` runs on the real clock: a tick every ``tick_s``, and the sends finished once stopped."""
    await asyncio.gather(every(tick_s, dispatcher.tick, stop, name="dispatcher"), dispatcher.finish(stop))


@asynccontextmanager
async def running_notifier(
    js: JetStreamContext,
    settings: NotifierSettings,
    *,
    clock: Callable[[], datetime],
    channels: Sequence[Channel] | None = None,
    links: AckLinks | None = None,
    counters: Counters | None = None,
) -> AsyncIterator[RunningNotifier]:
    """The notifier's parts and consumers; ``counters`` (tests/support/metrics.py) to read its metrics back."""
    await ensure_streams(js)
    test_tracer = tracer()
    counters = counters or Counters()
    built = list(channels) if channels is not None else [build_channel(c, quote_chars=280) for c in settings.channels]
    group_state = await KvState.open(js, subjects.NOTIFIER_GROUPS_BUCKET, codec=GROUP_CODEC)
    page_state = await KvState.open(js, subjects.NOTIFIER_PAGES_BUCKET, codec=PAGE_CODEC)
    log = NotificationLog(js, test_tracer)
    dispatcher = Dispatcher(
        settings,
        built,
        groups=group_state,
        pages=page_state,
        deliveries=await DeliveryStore.open(js, replicas=1),
        log=log,
        tracer=test_tracer,
        counters=counters,
        clock=clock,
    )
    handler = NotifyHandler(
        settings, built, dispatcher=dispatcher, pages=page_state, links=links, counters=counters, clock=clock
    )
    wiring: list[ConsumerWiring] = [
        (subjects.NOTIFIER_ESCALATIONS_CONSUMER, case_pb2.Escalation, one_at_a_time(handler.on_escalation), 16),
        (subjects.NOTIFIER_ALERTS_CONSUMER, alert_pb2.Alert, one_at_a_time(handler.on_alert), 16),
        (subjects.NOTIFIER_ACTIONS_CONSUMER, case_pb2.CaseAction, one_at_a_time(handler.on_action), 16),
    ]
    consumers = await ConsumerSet.start(js, wiring, tracer=test_tracer, counters=counters)
    running = RunningNotifier(js, dispatcher, consumers, log, CaseActions(js, test_tracer), group_state, page_state)
    try:
        yield running
    finally:
        await consumers.stop()
        await dispatcher.idle()
        await group_state.close()
        await page_state.close()
        if channels is None:
            for channel in built:
                await channel.aclose()


def escalation(
    case_id: str,
    *,
    team: str = "care",
    level: int = 1,
    severity: triage_pb2.Severity.ValueType = triage_pb2.SEVERITY_HIGH,
    text: str = "",
) -> case_pb2.Escalation:
    mention = mention_pb2.Mention(
        id=f"m-{case_id}",
        platform="mastodon",
        text=text or f"{case_id}: charged twice, support silent",
        url=f"https://social.example/@ana/{case_id}",
        author=mention_pb2.Author(handle="ana", followers=1200),
    )
    case = case_pb2.Case(
        id=case_id,
        severity=severity,
        team=team,
        mentions=[triage_pb2.TriagedMention(mention=mention)],
    )
    result = case_pb2.Escalation(id=f"{case_id}:{level}", case=case, team=team, level=level, reason="severity HIGH")
    result.raised_at.FromDatetime(T0)
    return result


async def publish_escalation(js: JetStreamContext, item: case_pb2.Escalation) -> None:
    await publish(js, tracer(), subjects.escalation_subject(item.team), item, msg_id=item.id)


async def publish_alert(js: JetStreamContext, item: alert_pb2.Alert) -> None:
    await publish(js, tracer(), subjects.alert_subject("reputation"), item, msg_id=item.id)


def file_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def log_statuses(log: NotificationLog) -> list[tuple[str, str, list[str]]]:
    """(channel, status, item ids) of every logged notification, oldest first."""
    found = await log.latest(limit=1000)
    return [
        (n.channel, notification_pb2.DeliveryStatus.Name(n.status).removeprefix("DELIVERY_STATUS_"), list(n.item_ids))
        for n in reversed(found)
    ]
