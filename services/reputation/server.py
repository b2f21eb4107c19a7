"""The reputation service's gRPC API: trends, alerts, and a recount of the counters."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import TYPE_CHECKING

import grpc

from clamor.v1 import alert_pb2, reputation_service_pb2, reputation_service_pb2_grpc, triage_pb2
from services.reputation.counters import series_for
from services.reputation.domain import merged, verdict_label
from services.reputation.watch import shares
from services.shared.errors import TransientError

if TYPE_CHECKING:
    from services.reputation.config import ReputationSettings
    from services.reputation.counters import TrendsCounter
    from services.reputation.watch import ReputationWatch
    from services.shared.clock import Clock

log = logging.getLogger(__name__)

SERVICE_NAME = reputation_service_pb2.DESCRIPTOR.services_by_name["ReputationService"].full_name
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
DEFAULT_HOURS = 48
MAX_HOURS = 24 * 31
Context = grpc.aio.ServicerContext[object, object]


@dataclass
class ReputationParts:
    trends: TrendsCounter
    reputation: ReputationWatch


class ReputationServicer(reputation_service_pb2_grpc.ReputationServiceServicer):
    """Serves from the start (health must answer), and works once :meth:`attach` gave it NATS."""

    def __init__(self, settings: ReputationSettings, *, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._parts: ReputationParts | None = None

    def attach(self, parts: ReputationParts) -> None:
        self._parts = parts

    async def _ready(self, context: Context) -> ReputationParts:
        if self._parts is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the reputation service is still connecting to NATS")
        assert self._parts is not None
        return self._parts

    async def GetTrends(
        self, request: reputation_service_pb2.GetTrendsRequest, context: Context
    ) -> reputation_service_pb2.GetTrendsResponse:
        parts = await self._ready(context)
        if request.counted_verdict not in (
            triage_pb2.VERDICT_UNSPECIFIED,
            triage_pb2.VERDICT_COMPLAINT,
            triage_pb2.VERDICT_NOISE,
        ):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown verdict {request.counted_verdict}")
        verdict = verdict_label(request.counted_verdict or triage_pb2.VERDICT_COMPLAINT)
        hours = request.hours or DEFAULT_HOURS
        if not 1 <= hours <= MAX_HOURS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"hours must be 1 to {MAX_HOURS}, not {hours}")
        now = self._clock()
        known = await parts.trends.store.watches()
        watches = [request.watch] if request.watch else list(known)
        baseline_days = self._settings.spikes.baseline_days
        response = reputation_service_pb2.GetTrendsResponse()
        response.generated_at.FromDatetime(now)
        spans = []
        try:
            for watch in watches:
                lines, span = await series_for(
                    parts.trends.store, watch, verdict=verdict, hours=hours, now=now, baseline_days=baseline_days
                )
                spans.append(span)
                for line in lines:
                    item = response.series.add(
                        watch=line.watch, category=line.category, counts=line.counts, baseline=line.baseline
                    )
                    item.start.FromDatetime(line.start)
        except TransientError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        whole = merged(spans)
        response.top_terms.extend(shares(whole.terms, 15))
        response.categories.extend(shares(whole.categories, 20))
        response.severities.extend(shares(whole.severities, 4))
        response.languages.extend(shares(whole.languages, 10))
        response.sources.extend(shares(whole.sources, 10))
        since = now - timedelta(hours=hours)
        for alert in parts.reputation.alerts():
            ended = alert.window_end.ToDatetime(tzinfo=UTC)
            if (not watches or alert.watch in watches) and (
                ended >= since or alert.status == alert_pb2.ALERT_STATUS_FIRING
            ):
                response.alerts.append(alert)
        return response

    async def ListAlerts(
        self, request: reputation_service_pb2.ListAlertsRequest, context: Context
    ) -> reputation_service_pb2.ListAlertsResponse:
        parts = await self._ready(context)
        if request.page_size < 0:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"page_size must be 0 (the default) or more, not {request.page_size}"
            )
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        # The token is the position of the page's first alert in the newest-first order; alerts
        # raised since the last page move later ones down, which a caller paging through sees again.
        start = int(request.page_token) if request.page_token.isdigit() else 0
        if request.page_token and not request.page_token.isdigit():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not a page token: {request.page_token!r}")
        found = parts.reputation.alerts(firing_only=request.firing_only)
        page = found[start : start + size]
        token = str(start + size) if start + size < len(found) else ""
        return reputation_service_pb2.ListAlertsResponse(alerts=page, next_page_token=token)

    async def RebuildCounters(
        self, request: reputation_service_pb2.RebuildCountersRequest, context: Context
    ) -> reputation_service_pb2.RebuildCountersResponse:
        parts = await self._ready(context)
        try:
            counted = await parts.trends.rebuild()
        except TransientError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        log.info("trend counters rebuilt: %d messages into %d hourly records", counted.messages, counted.hours)
        return reputation_service_pb2.RebuildCountersResponse(messages=counted.messages, hours=counted.hours)
