"""Canned APIs for the CLI's trends, alerts and cases views: a RouterService and a ReputationService on one
free loopback port.

``FakeRouterApi`` answers GetTrends and ListAlerts (the reputation service's) and ListCases (the
router's) from realistic fixed data (two watches
over 48 hours, a billing surge on one with a FIRING alert, an older RESOLVED one on the other, cases
of every severity with one SLA breach, posts with hostile text) and records what it was asked. It
lets the dashboard and ``clamor trends`` be tested without a router, a reputation service, NATS or
counters; the real services' answers are tested with the services.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from clamor.v1 import (
    alert_pb2,
    case_pb2,
    mention_pb2,
    reputation_service_pb2,
    reputation_service_pb2_grpc,
    router_service_pb2,
    router_service_pb2_grpc,
    triage_pb2,
)

HOURS = 48
# The latest hour of every series; the first is HOURS - 1 hours before it.
LATEST_HOUR = datetime(2026, 11, 2, 12, tzinfo=UTC)
START = LATEST_HOUR - timedelta(hours=HOURS - 1)
# The billing surge: the last three hours of "acme".
SURGE = [26, 41, 58]
HOSTILE = "<img src=x onerror=alert(1)>"
NOT_CANNED = "not part of the canned router API"
HOSTILE_SCRIPT = "<script>alert(2)</script> refund me"


URGENT, NORMAL = case_pb2.CASE_PRIORITY_URGENT, case_pb2.CASE_PRIORITY_NORMAL


def stamp(at: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(at)
    return result


def daily(hour: int, level: float) -> float:
    """A day's rhythm: quiet at night (UTC), busiest mid-afternoon."""
    at = (START + timedelta(hours=hour)).hour
    return level * (1.0 + 0.6 * math.sin((at - 9) / 24 * 2 * math.pi))


def category_series(
    watch: str, category: str, level: float, *, surge: list[int] | None = None
) -> reputation_service_pb2.TrendSeries:
    baseline = [round(daily(h, level), 2) for h in range(HOURS)]
    # Deterministic wobble around the baseline, so the lines differ without a random seed.
    counts = [max(0, round(b + ((h * 7 + len(category)) % 5 - 2) * 0.6)) for h, b in enumerate(baseline)]
    if surge:
        counts[-len(surge) :] = surge
    return reputation_service_pb2.TrendSeries(
        watch=watch, category=category, start=stamp(START), counts=counts, baseline=baseline
    )


def watch_total(parts: list[reputation_service_pb2.TrendSeries]) -> reputation_service_pb2.TrendSeries:
    return reputation_service_pb2.TrendSeries(
        watch=parts[0].watch,
        start=stamp(START),
        counts=[sum(values) for values in zip(*(p.counts for p in parts), strict=True)],
        baseline=[round(sum(values), 2) for values in zip(*(p.baseline for p in parts), strict=True)],
    )


ACME_CATEGORIES = [
    category_series("acme", "billing", 3.0, surge=SURGE),
    category_series("acme", "delivery", 5.0),
    category_series("acme", "app", 2.0),
    category_series("acme", "support", 1.0),
]
GLOBEX_CATEGORIES = [category_series("globex", "quality", 2.5), category_series("globex", "delivery", 1.5)]
SERIES = [watch_total(ACME_CATEGORIES), *ACME_CATEGORIES, watch_total(GLOBEX_CATEGORIES), *GLOBEX_CATEGORIES]

SURGE_BASELINE = round(sum(ACME_CATEGORIES[0].baseline[-len(SURGE) :]), 1)
FIRING = alert_pb2.Alert(
    id="al_acme_billing",
    kind=alert_pb2.ALERT_KIND_REPUTATION_SPIKE,
    topic="acme/billing",
    summary="Billing complaints about acme are 12 times their usual level: customers report double charges.",
    status=alert_pb2.ALERT_STATUS_FIRING,
    revision=3,
    watch="acme",
    category="billing",
    count=sum(SURGE),
    peak=max(SURGE),
    baseline=SURGE_BASELINE,
    ratio=round(sum(SURGE) / SURGE_BASELINE, 1),
    p_value=1e-12,
    window_start=stamp(LATEST_HOUR - timedelta(hours=len(SURGE) - 1)),
    window_end=stamp(LATEST_HOUR + timedelta(hours=1)),
    started_at=stamp(LATEST_HOUR - timedelta(hours=len(SURGE) - 1)),
    raised_at=stamp(LATEST_HOUR),
    top_terms=["double charge", "refund", "card", "twice"],
    categories=[alert_pb2.Share(name="billing", count=sum(SURGE))],
    sources=[alert_pb2.Share(name="reddit", count=80), alert_pb2.Share(name="mastodon", count=45)],
    languages=[alert_pb2.Share(name="en", count=120)],
    authors=[alert_pb2.AuthorReach(handle="bigvoice", platform="mastodon", followers=52000)],
    samples=[
        alert_pb2.SamplePost(
            mention_id="reddit:s1",
            text="Charged twice for one order, support will not answer",
            url="https://reddit.example/r/acme/s1",
            author="dana",
            followers=120,
            case_id="c_0001",
        ),
        alert_pb2.SamplePost(mention_id="reddit:s2", text=HOSTILE, url="javascript:alert(1)", author="mallory"),
        alert_pb2.SamplePost(
            mention_id="mastodon:s3",
            text=HOSTILE_SCRIPT,
            url="https://social.example/@bigvoice/3",
            author="bigvoice",
            followers=52000,
        ),
    ],
    case_ids=["c_0001"],
)
RESOLVED = alert_pb2.Alert(
    id="al_globex_quality",
    kind=alert_pb2.ALERT_KIND_REPUTATION_SPIKE,
    topic="globex/quality",
    status=alert_pb2.ALERT_STATUS_RESOLVED,
    revision=4,
    watch="globex",
    category="quality",
    count=19,
    baseline=4.2,
    ratio=4.5,
    window_start=stamp(START + timedelta(hours=20)),
    window_end=stamp(START + timedelta(hours=23)),
    top_terms=["broken", "lid"],
)
ALERTS = [FIRING, RESOLVED]


def post(case_id: str, n: int, text: str, severity: triage_pb2.Severity.ValueType) -> triage_pb2.TriagedMention:
    return triage_pb2.TriagedMention(
        mention=mention_pb2.Mention(
            id=f"reddit:{case_id}-{n}",
            platform="reddit",
            text=text,
            watch="acme",
            url=f"https://reddit.example/r/acme/{case_id}-{n}",
            author=mention_pb2.Author(handle=f"user{n}"),
            created_at=stamp(LATEST_HOUR - timedelta(minutes=10 * n)),
        ),
        result=triage_pb2.TriageResult(verdict=triage_pb2.VERDICT_COMPLAINT, severity=severity, category="billing"),
    )


def case(
    case_id: str,
    severity: triage_pb2.Severity.ValueType,
    state: case_pb2.CaseState.ValueType,
    *,
    texts: list[str],
    first_response_breached: bool = False,
) -> case_pb2.Case:
    created = LATEST_HOUR - timedelta(hours=int(case_id[-1]))
    return case_pb2.Case(
        id=case_id,
        state=state,
        severity=severity,
        category="billing",
        team="care",
        priority_level=URGENT if severity == triage_pb2.SEVERITY_CRITICAL else NORMAL,
        sla=case_pb2.SlaDeadlines(
            first_response_due=stamp(created + timedelta(hours=1)),
            resolution_due=stamp(created + timedelta(days=1)),
            first_response_breached=first_response_breached,
        ),
        mentions=[post(case_id, int(case_id[-1]) * 10 + i, text, severity) for i, text in enumerate(texts)],
        created_at=stamp(created),
        updated_at=stamp(created),
    )


CASES = [
    case(
        "c_0001",
        triage_pb2.SEVERITY_CRITICAL,
        case_pb2.CASE_STATE_ESCALATED,
        first_response_breached=True,
        texts=["Charged twice for one order, support will not answer", "Still no refund. My lawyer is next."],
    ),
    case("c_0002", triage_pb2.SEVERITY_HIGH, case_pb2.CASE_STATE_ROUTED, texts=["Card charged three times"]),
    case("c_0003", triage_pb2.SEVERITY_HIGH, case_pb2.CASE_STATE_ACKNOWLEDGED, texts=["Refund promised, never came"]),
    case("c_0004", triage_pb2.SEVERITY_MEDIUM, case_pb2.CASE_STATE_NEW, texts=[HOSTILE]),
    case("c_0005", triage_pb2.SEVERITY_LOW, case_pb2.CASE_STATE_ROUTED, texts=["Invoice PDF will not download"]),
    case("c_0006", triage_pb2.SEVERITY_LOW, case_pb2.CASE_STATE_RESOLVED, texts=["Wrong VAT on the invoice"]),
]
# The open cases as the dashboard counts them: severity -> (on time, first response breached, resolution breached).
OPEN_CASE_COUNTS = {"CRITICAL": (0, 1, 0), "HIGH": (2, 0, 0), "MEDIUM": (1, 0, 0), "LOW": (1, 0, 0)}


@dataclass
class FakeRouterApi(
    router_service_pb2_grpc.RouterServiceServicer, reputation_service_pb2_grpc.ReputationServiceServicer
):
    """Canned trends, alerts and cases; ``failures`` makes an RPC (by name) fail with a status and details."""

    series: list[reputation_service_pb2.TrendSeries] = field(default_factory=lambda: list(SERIES))
    alerts: list[alert_pb2.Alert] = field(default_factory=lambda: list(ALERTS))
    cases: list[case_pb2.Case] = field(default_factory=lambda: list(CASES))
    failures: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)
    asked: list[object] = field(default_factory=list)

    def _heard(self, rpc: str, request: object, context: grpc.ServicerContext) -> None:
        self.asked.append(request)
        if rpc in self.failures:
            context.abort(*self.failures[rpc])

    def GetTrends(
        self, request: reputation_service_pb2.GetTrendsRequest, context: grpc.ServicerContext
    ) -> reputation_service_pb2.GetTrendsResponse:
        self._heard("GetTrends", request, context)
        hours = min(request.hours or HOURS, HOURS)
        series = []
        for found in self.series:
            if request.watch and found.watch != request.watch:
                continue
            start = found.start.ToDatetime(tzinfo=UTC) + timedelta(hours=len(found.counts) - hours)
            series.append(
                reputation_service_pb2.TrendSeries(
                    watch=found.watch,
                    category=found.category,
                    start=stamp(start),
                    counts=found.counts[-hours:],
                    baseline=found.baseline[-hours:],
                )
            )
        alerts = [a for a in self.alerts if not request.watch or a.watch == request.watch]
        return reputation_service_pb2.GetTrendsResponse(
            series=series,
            alerts=alerts,
            top_terms=[alert_pb2.Share(name="refund", count=90), alert_pb2.Share(name="double charge", count=70)],
            generated_at=stamp(LATEST_HOUR + timedelta(minutes=40)),
        )

    def ListAlerts(
        self, request: reputation_service_pb2.ListAlertsRequest, context: grpc.ServicerContext
    ) -> reputation_service_pb2.ListAlertsResponse:
        self._heard("ListAlerts", request, context)
        found = [a for a in self.alerts if not request.firing_only or a.status == alert_pb2.ALERT_STATUS_FIRING]
        return reputation_service_pb2.ListAlertsResponse(alerts=found[: request.page_size or 100])

    def ListCases(
        self, request: router_service_pb2.ListCasesRequest, context: grpc.ServicerContext
    ) -> router_service_pb2.ListCasesResponse:
        self._heard("ListCases", request, context)
        return router_service_pb2.ListCasesResponse(cases=self.cases[: request.page_size or request.limit or 100])

    # The rest of the APIs is not canned: it answers UNIMPLEMENTED, as a service without it would.

    def GetCase(self, request: router_service_pb2.GetCaseRequest, context: grpc.ServicerContext) -> NoReturn:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, NOT_CANNED)

    def ValidateRules(
        self, request: router_service_pb2.ValidateRulesRequest, context: grpc.ServicerContext
    ) -> NoReturn:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, NOT_CANNED)

    def ReloadRules(self, request: router_service_pb2.ReloadRulesRequest, context: grpc.ServicerContext) -> NoReturn:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, NOT_CANNED)

    def ActOnCase(self, request: router_service_pb2.ActOnCaseRequest, context: grpc.ServicerContext) -> NoReturn:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, NOT_CANNED)

    def ListDeadLetters(
        self, request: router_service_pb2.ListDeadLettersRequest, context: grpc.ServicerContext
    ) -> NoReturn:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, NOT_CANNED)

    def ReplayDeadLetters(
        self, request: router_service_pb2.ReplayDeadLettersRequest, context: grpc.ServicerContext
    ) -> NoReturn:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, NOT_CANNED)

    def RebuildCounters(
        self, request: reputation_service_pb2.RebuildCountersRequest, context: grpc.ServicerContext
    ) -> NoReturn:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, NOT_CANNED)


def free_address() -> str:
    """A loopback address nobody listens on: where a service that is not running would be."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def serving(servicer: FakeRouterApi) -> Iterator[str]:
    """Serve ``servicer`` as both services on a free loopback port; yields its address, ``127.0.0.1:<port>``."""
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    router_service_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server)
    reputation_service_pb2_grpc.add_ReputationServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait()
