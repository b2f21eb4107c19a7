"""Reputation alerts: every watch's complaint volume, its categories and its keywords, tested for surges.

Each tick reads the last window and the same window on the baseline days from the hourly records
(10-minute slots), runs the spike detector (services/reputation/spikes.py) per key, keeps each key's
detector state in KV (``router_spikes``) and, when the detector raises, updates or resolves an
alert, publishes the alert's new revision on ``clamor.alert.reputation`` (Nats-Msg-Id
``<id>:<revision>``: a second replica's identical publish is dropped) and keeps the latest revision
in KV (``router_alerts``) for ``ListAlerts``, the trends and the dashboard. An alert carries what a PR
lead needs: counts against the baseline, growth, top terms and categories, sources, languages, the
most-reached authors, sample posts and the cases the router placed them in (the mention → case
index, read through :class:`services.reputation.clients.MentionCases`).

``clamor.reputation.alerts`` counts alerts raised, by the kind of topic they are about (``watch``,
``category`` or ``keyword``): a surge once, however often it grows, resolves or comes back within
its cooldown, and once across replicas (the replica whose state write starts the alert counts it).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from clamor.v1 import alert_pb2
from services.reputation.domain import SLOT_S, SLOTS_PER_HOUR, HourCounts, hour_start, merged, slot_of
from services.reputation.records import ALERT_CODEC, SPIKE_STATE_CODEC
from services.reputation.spikes import SpikeEvent, SpikeSettings, SpikeState, WindowStats, evaluate
from services.shared import subjects
from services.shared.jetstream import publish
from services.shared.kv_state import KvState
from services.shared.metric_catalogue import TOPIC_KIND
from services.shared.metrics import Metrics

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.js import JetStreamContext
    from opentelemetry import trace

    from services.reputation.clients import MentionCases
    from services.reputation.config import ReputationSettings
    from services.reputation.counters import CounterStore

log = logging.getLogger(__name__)

REPUTATION_SUBJECT = subjects.alert_subject("reputation")
TOP = 5
# The kinds of topic an alert is about, as the metrics name them.
WATCH, CATEGORY, KEYWORD = "watch", "category", "keyword"


async def open_states(js: JetStreamContext, *, replicas: int) -> tuple[KvState[SpikeState], KvState[alert_pb2.Alert]]:
    spikes = await KvState.open(
        js,
        subjects.REPUTATION_SPIKES_BUCKET,
        codec=SPIKE_STATE_CODEC,
        replicas=replicas,
    )
    alerts = await KvState.open(
        js,
        subjects.REPUTATION_ALERTS_BUCKET,
        codec=ALERT_CODEC,
        replicas=replicas,
        ttl_s=90 * subjects.DAY_S,
    )
    return spikes, alerts


def shares(counts: dict[str, int], limit: int = TOP) -> list[alert_pb2.Share]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [alert_pb2.Share(name=name, count=count) for name, count in ranked]


class ReputationWatch:
    def __init__(
        self,
        settings: ReputationSettings,
        *,
        js: JetStreamContext,
        tracer: trace.Tracer,
        counters: CounterStore,
        spikes: KvState[SpikeState],
        alerts: KvState[alert_pb2.Alert],
        cases: MentionCases,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics or Metrics()
        self._js = js
        self._tracer = tracer
        self._counters = counters
        self._spikes = spikes
        self._alerts = alerts
        self._cases = cases

    def alerts(self, *, firing_only: bool = False) -> list[alert_pb2.Alert]:
        found = [a for a in self._alerts.records() if not firing_only or a.status == alert_pb2.ALERT_STATUS_FIRING]
        return sorted(found, key=lambda a: (a.raised_at.seconds, a.raised_at.nanos), reverse=True)

    async def tick(self, now: datetime) -> list[alert_pb2.Alert]:
        """Test every watch (and its categories and keywords); returns the alert revisions published."""
        published: list[alert_pb2.Alert] = []
        for watch, first_slot in (await self._counters.watches()).items():
            published += await self._tick_watch(watch, first_slot, now)
        return published

    async def _tick_watch(self, watch: str, first_slot: int, now: datetime) -> list[alert_pb2.Alert]:
        spikes = self._settings.spikes
        now_slot = slot_of(now)
        window_slots = spikes.window_s // SLOT_S
        # The hours the window touches, today and on each baseline day.
        touched = {hour_start(now - timedelta(seconds=SLOT_S * k)) for k in range(window_slots)}
        hours = {h - timedelta(days=d) for h in touched for d in range(spikes.baseline_days + 1)}
        records = await self._counters.hours("complaint", watch, hours)
        window = [records[h] for h in sorted(touched)]
        keys: list[tuple[str, str, str, dict[int, int], SpikeSettings]] = [
            (watch, "", "", _slots(records, _total), spikes)
        ]
        if self._settings.per_category:
            for category in sorted({c for r in window for c in r.category_slots}):
                slots = _slots(records, _of_category(category))
                keys.append((f"{watch}/category/{category}", category, "", slots, spikes))
        keyword_settings = self._settings.keywords.detector(spikes) if self._settings.keywords.keywords else spikes
        for keyword in self._settings.keywords.keywords:
            keys.append(
                (f"{watch}/keyword/{keyword}", "", keyword, _slots(records, _of_keyword(keyword)), keyword_settings)
            )
        published = []
        watch_firing = False
        for key, category, keyword, slots, settings in keys:
            state = self._spikes.peek(key)
            if category and watch_firing and (state is None or state.status != "firing"):
                # The watch's own alert already carries this category in its mix: one surge, one alert.
                continue
            new_state, event = evaluate(
                slots, key=key, now_slot=now_slot, state=state, settings=settings, history_start_slot=first_slot
            )
            if event is not None:
                alert = await self._alert_for(
                    event, watch=watch, category=category, keyword=keyword, window=window, now=now
                )
                await self._publish(alert)
                published.append(alert)
            if new_state != state:
                started = await self._store(key, new_state)
                if started and event is not None and event.kind == "raised":
                    kind = KEYWORD if keyword else CATEGORY if category else WATCH
                    self._metrics.add("clamor.reputation.alerts", 1, {TOPIC_KIND: kind})
            if key == watch:
                watch_firing = new_state.status == "firing"
        return published

    async def _store(self, key: str, state: SpikeState) -> bool:
        """Keep ``state`` as the key's; True when the stored state did not hold its alert yet.

        Another replica that evaluated the same slot has stored the same alert id already: the
        alert is one, and it counts once.
        """
        new_alert = False

        def replace_with(found: SpikeState | None) -> SpikeState:
            nonlocal new_alert
            new_alert = found is None or found.alert_id != state.alert_id
            return state

        await self._spikes.change(key, replace_with)
        return new_alert

    async def _publish(self, alert: alert_pb2.Alert) -> None:
        await publish(
            self._js,
            self._tracer,
            REPUTATION_SUBJECT,
            alert,
            msg_id=f"{alert.id}:{alert.revision}",
            metrics=self._metrics,
        )

        def newest(found: alert_pb2.Alert | None) -> alert_pb2.Alert | None:
            return alert if found is None or found.revision <= alert.revision else found

        await self._alerts.change(alert.id, newest)

    async def _alert_for(
        self, event: SpikeEvent, *, watch: str, category: str, keyword: str, window: list[HourCounts], now: datetime
    ) -> alert_pb2.Alert:
        stats = event.stats
        context = merged(window)
        topic = keyword or category or watch
        subject = f"{watch}: {category}" if category else (f"{watch}: “{keyword}”" if keyword else watch)
        terms = [share.name for share in shares(context.terms, 8)]
        minutes = _minutes(stats)
        if event.kind == "resolved":
            summary = f"Subsided: {subject} is back to {stats.observed} complaints in {minutes} minutes"
        else:
            summary = (
                f"{stats.observed} complaints about {subject} in the last {minutes} minutes, "
                f"{stats.ratio:.1f}x the usual {stats.baseline:.1f}"
            )
            if terms:
                summary += f"; top terms: {', '.join(terms[:5])}"
        status = alert_pb2.ALERT_STATUS_RESOLVED if event.kind == "resolved" else alert_pb2.ALERT_STATUS_FIRING
        alert = alert_pb2.Alert(
            id=event.alert_id,
            kind=alert_pb2.ALERT_KIND_REPUTATION_SPIKE,
            topic=topic,
            summary=summary,
            count=stats.observed,
            baseline=round(stats.baseline, 2),
            top_terms=terms,
            status=status,
            revision=event.revision,
            ratio=round(stats.ratio, 2),
            p_value=stats.p_value,
            watch=watch,
            category=category,
            keyword=keyword,
            categories=shares(context.categories),
            sources=shares(context.sources),
            languages=shares(context.languages),
            peak=event.peak,
            authors=[alert_pb2.AuthorReach(handle=h, platform=p, followers=int(f)) for h, p, f in context.authors],
        )
        for mention_id, text, url, author, followers in context.samples:
            case_id = await self._cases.case_of(str(mention_id)) or ""
            alert.samples.append(
                alert_pb2.SamplePost(
                    mention_id=mention_id, text=text, url=url, author=author, followers=int(followers), case_id=case_id
                )
            )
            if case_id and case_id not in alert.case_ids:
                alert.case_ids.append(case_id)
        alert.sample_mention_ids.extend(s.mention_id for s in alert.samples)
        alert.raised_at.FromDatetime(now)
        alert.started_at.FromDatetime(datetime.fromtimestamp(event.started_slot * SLOT_S, tz=UTC))
        alert.window_start.FromDatetime(datetime.fromtimestamp(stats.window_start_slot * SLOT_S, tz=UTC))
        alert.window_end.FromDatetime(datetime.fromtimestamp((stats.window_end_slot + 1) * SLOT_S, tz=UTC))
        return alert


def _minutes(stats: WindowStats) -> int:
    return int((stats.window_end_slot - stats.window_start_slot + 1) * SLOT_S // 60)


def _slots(records: dict[datetime, HourCounts], pick: Callable[[HourCounts], list[int] | None]) -> dict[int, int]:
    """Slot index → count, from hour records: each record's six slots start at its hour's first slot."""
    out: dict[int, int] = {}
    for hour, record in records.items():
        counts = pick(record)
        if not counts:
            continue
        first = slot_of(hour)
        for offset in range(SLOTS_PER_HOUR):
            if counts[offset]:
                out[first + offset] = counts[offset]
    return out


def _total(record: HourCounts) -> list[int]:
    return record.slots


def _of_category(category: str) -> Callable[[HourCounts], list[int] | None]:
    return lambda record: record.category_slots.get(category)


def _of_keyword(keyword: str) -> Callable[[HourCounts], list[int] | None]:
    return lambda record: record.keyword_slots.get(keyword)
