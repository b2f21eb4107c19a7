"""``clamor trends``: hourly complaint volume per watch and category as sparklines, with the alerts firing on them.

It asks the running reputation service's ``GetTrends`` at the address the config file gives
(``reputation.grpc``). The drawing is kept apart from the call (``sparkline``, ``render``) so it can be
checked on canned answers; ``service_problem`` words a failed call, and the dashboard shows the same words.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Annotated

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from clamor.v1 import alert_pb2, reputation_service_pb2, triage_pb2
from services.cli import clients
from services.cli.config_in_use import ConfigOption, mesh_in_use

BARS = "▁▂▃▄▅▆▇█"
# Past this many hours a sparkline shows the mean of neighbouring hours, so a week fits a terminal line.
MAX_WIDTH = 72
MAX_CATEGORIES = 8
REBUILD_TIMEOUT_S = 1800.0
TIMEOUT_S = 10.0
# name, sparkline, total, peak, latest hour
COLUMNS: tuple[JustifyMethod, ...] = ("left", "left", "right", "right", "left")

console = Console()
errors = Console(stderr=True, soft_wrap=True)


# --- drawing ----------------------------------------------------------------------------------


def sparkline(values: Sequence[float], *, width: int = MAX_WIDTH) -> str:
    """One bar per value, scaled to the highest; zero is the lowest bar and anything above zero is higher.

    Negative, NaN and infinite values count as zero. A series longer than ``width`` is squeezed by
    averaging neighbours, so a spike stays visible however long the series is.
    """
    points = [value if math.isfinite(value) and value > 0 else 0.0 for value in values]
    if len(points) > width > 0:
        points = [_mean(points[i * len(points) // width : (i + 1) * len(points) // width]) for i in range(width)]
    top = max(points, default=0.0)
    if top <= 0:
        return BARS[0] * len(points)
    steps = len(BARS) - 2
    # A single post must not look like silence: every non-zero value gets at least the second bar.
    return "".join(BARS[0] if value <= 0 else BARS[1 + round(value / top * steps)] for value in points)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def expected_at(series: reputation_service_pb2.TrendSeries, hour: int) -> float | None:
    """The baseline of one hour, or None where the router has none (missing, negative, NaN or infinite)."""
    if not 0 <= hour < len(series.baseline):
        return None
    value = series.baseline[hour]
    return value if math.isfinite(value) and value >= 0 else None


def latest_hour(series: reputation_service_pb2.TrendSeries) -> str:
    """The latest hour against its baseline: ``12 vs 3.5 expected (×3.4)``."""
    if not series.counts:
        return "no hours counted"
    hour = len(series.counts) - 1
    count = series.counts[hour]
    expected = expected_at(series, hour)
    if expected is None:
        return f"latest hour {count} (no baseline yet)"
    ratio = f" (×{count / expected:.1f})" if expected > 0 else ""
    return f"latest hour {count} vs {expected:.1f} expected{ratio}"


@dataclass(frozen=True)
class WatchTrend:
    """One watch's series: its total and its categories, biggest first."""

    watch: str
    total: reputation_service_pb2.TrendSeries | None
    categories: list[reputation_service_pb2.TrendSeries]


def by_watch(response: reputation_service_pb2.GetTrendsResponse) -> list[WatchTrend]:
    watches = sorted({series.watch for series in response.series})
    grouped = []
    for watch in watches:
        mine = [series for series in response.series if series.watch == watch]
        total = next((series for series in mine if not series.category), None)
        categories = sorted((s for s in mine if s.category), key=lambda s: (-sum(s.counts), s.category))
        grouped.append(WatchTrend(watch, total, categories))
    return grouped


def _decimal(value: float) -> str:
    return f"{value:.1f}" if math.isfinite(value) else "?"


def alert_line(alert: alert_pb2.Alert) -> Text:
    """A firing alert in one line: what, ratio, count vs baseline, window and top terms."""
    what = alert.category or (f'"{alert.keyword}"' if alert.keyword else "") or alert.topic or "all complaints"
    line = Text("▲ ", style="bold red")
    line.append(f"{what} ×{_decimal(alert.ratio)}", style="bold")
    line.append(f": {alert.count} vs {_decimal(alert.baseline)} expected")
    if alert.window_start.seconds and alert.window_end.seconds:
        start = alert.window_start.ToDatetime(tzinfo=UTC)
        end = alert.window_end.ToDatetime(tzinfo=UTC)
        line.append(f" in {start:%H:%M}–{end:%H:%M} UTC")
    if alert.top_terms:
        line.append(" · " + ", ".join(alert.top_terms[:6]), style="dim")
    return line


def _series_row(table: Table, name: Text, series: reputation_service_pb2.TrendSeries) -> None:
    table.add_row(
        name,
        Text(sparkline([float(c) for c in series.counts]), style="cyan"),
        str(sum(series.counts)),
        f"peak {max(series.counts, default=0)}/h",
        latest_hour(series),
    )


def render(response: reputation_service_pb2.GetTrendsResponse, *, what: str = "complaints") -> list[RenderableType]:
    """The answer as ``clamor trends`` prints it: per watch its line, its categories, its firing alerts."""
    firing = [alert for alert in response.alerts if alert.status == alert_pb2.ALERT_STATUS_FIRING]
    parts: list[RenderableType] = []
    for trend in by_watch(response):
        table = Table.grid(padding=(0, 2))
        for justify in COLUMNS:
            table.add_column(justify=justify)
        if trend.total is not None:
            _series_row(table, Text(trend.watch, style="bold"), trend.total)
        else:
            table.add_row(Text(trend.watch, style="bold"), "", "", "", "")
        for series in trend.categories[:MAX_CATEGORIES]:
            _series_row(table, Text("  " + series.category), series)
        lines: list[RenderableType] = [table]
        hidden = len(trend.categories) - MAX_CATEGORIES
        if hidden > 0:
            lines.append(Text(f"  … and {hidden} more categor{'y' if hidden == 1 else 'ies'}", style="dim"))
        lines += [Text("  ") + alert_line(alert) for alert in firing if alert.watch == trend.watch]
        parts.append(Group(*lines))
    watches = {series.watch for series in response.series}
    others = [alert for alert in firing if alert.watch not in watches]
    if others:
        parts.append(Group(Text("other firing alerts", style="bold"), *(Text("  ") + alert_line(a) for a in others)))
    if not parts:
        return []
    hours = max((len(series.counts) for series in response.series), default=0)
    header = Text(f"{what} per hour over {hours} h, oldest left", style="dim")
    last = _latest_hour_start(response)
    if last:
        header.append(f"; the latest hour began {last} UTC")
    return [header, *parts]


def _latest_hour_start(response: reputation_service_pb2.GetTrendsResponse) -> str:
    stamped = [s for s in response.series if s.start.seconds and s.counts]
    if not stamped:
        return ""
    latest = max(s.start.ToDatetime(tzinfo=UTC) + timedelta(hours=len(s.counts) - 1) for s in stamped)
    return f"{latest:%Y-%m-%d %H:%M}"


# --- talking to the services ------------------------------------------------------------------


def service_problem(service: str, address: str, code: grpc.StatusCode, details: str, *, rpc: str) -> str:
    """A failed call to ``service`` (as ``clamor serve`` names it) in one plain line, for a terminal or a banner."""
    name = f"{service} service" if service == "reputation" else service
    # A refused connection reads "failed to connect to all addresses"; the service's own UNAVAILABLE
    # (still connecting to NATS) carries its reason, which says more than advice to start it.
    if code == grpc.StatusCode.UNAVAILABLE and (not details or details.startswith("failed to connect")):
        return f"no {name} at {address}: start the mesh with clamor up, or the {name} alone with clamor serve {service}"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return f"the {name} at {address} does not answer {rpc} yet: update it and start it again"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the {name} at {address} did not answer {rpc} within {TIMEOUT_S:g}s"
    return f"{name} at {address}: {code.name} {details}".rstrip()


def reputation_problem(address: str, code: grpc.StatusCode, details: str, *, rpc: str) -> str:
    return service_problem("reputation", address, code, details, rpc=rpc)


async def fetch_trends(
    address: str, request: reputation_service_pb2.GetTrendsRequest
) -> reputation_service_pb2.GetTrendsResponse:
    async with clients.connect(address) as channel:
        return await clients.reputation(channel).GetTrends(request, timeout=TIMEOUT_S)


async def rebuild_counters(address: str) -> reputation_service_pb2.RebuildCountersResponse:
    async with clients.connect(address) as channel:
        stub = clients.reputation(channel)
        # A recount reads the whole stream: minutes, not seconds, on a long history.
        return await stub.RebuildCounters(reputation_service_pb2.RebuildCountersRequest(), timeout=REBUILD_TIMEOUT_S)


def trends(
    watch: Annotated[str, typer.Option(help="Only this watch (default: every watch).")] = "",
    hours: Annotated[int, typer.Option(min=1, max=720, help="Hours back from now, at most 720 (30 days).")] = 48,
    noise: Annotated[bool, typer.Option("--noise", help="Posts triage judged noise, instead of complaints.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The service's answer as one JSON object.")] = False,
    rebuild: Annotated[
        bool,
        typer.Option("--rebuild", help="First recount every hourly counter from the stream (after a keyword change)."),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Hourly complaint volume per watch and category as sparklines, against baseline, with firing alerts."""
    address = clients.address_of(mesh_in_use(config).reputation.grpc)
    if rebuild:
        errors.print("recounting every hourly counter from the TRIAGED stream…")
        try:
            done = asyncio.run(rebuild_counters(address))
        except grpc.aio.AioRpcError as exc:
            problem = reputation_problem(address, exc.code(), exc.details() or "", rpc="RebuildCounters")
            errors.print(f"[red]{escape(problem)}[/red]")
            raise typer.Exit(1) from exc
        errors.print(f"recounted {done.messages:,} posts into {done.hours:,} hourly records")
    verdict = triage_pb2.VERDICT_NOISE if noise else triage_pb2.VERDICT_COMPLAINT
    request = reputation_service_pb2.GetTrendsRequest(watch=watch, hours=hours, counted_verdict=verdict)
    try:
        response = asyncio.run(fetch_trends(address, request))
    except grpc.aio.AioRpcError as exc:
        errors.print(
            f"[red]{escape(reputation_problem(address, exc.code(), exc.details() or '', rpc='GetTrends'))}[/red]"
        )
        raise typer.Exit(1) from exc
    if as_json:
        print(json.dumps(MessageToDict(response, preserving_proto_field_name=True), ensure_ascii=False, indent=2))
        return
    parts = render(response, what="noise posts" if noise else "complaints")
    if not parts:
        scope = f" for watch {escape(watch)}" if watch else ""
        console.print(f"nothing counted{scope} in the last {hours} h")
        return
    for part in parts:
        console.print(part)
    if not any(sum(series.counts) for series in response.series):
        # Posts count in the hour they were written: a replayed or backfilled file may be older than the span.
        errors.print(
            f"nothing was written in the last {hours} h; posts count by when they were written: try --hours 720"
        )
