"""`clamor trends`: sparklines, the latest hour against its baseline, the per-watch view and what a failed call says.

The drawing is tested on hand-made GetTrends answers. The last tests run the command against the
canned RouterService of ``tests.integration.router_api_fake`` on a free loopback port (an in-process
gRPC server, no router), to check the request it sends and the one line it prints on failure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from click import unstyle
from rich.console import Console
from typer.testing import CliRunner, Result

from clamor.v1 import alert_pb2, reputation_service_pb2, triage_pb2
from services.cli.app import app
from services.cli.trends import (
    BARS,
    MAX_CATEGORIES,
    latest_hour,
    render,
    reputation_problem,
    service_problem,
    sparkline,
)
from tests.integration.router_api_fake import HOURS, FakeRouterApi, free_address, serving

# --- sparkline ----------------------------------------------------------------------------------


def test_a_sparkline_of_zeros_is_a_flat_line_of_the_lowest_bar() -> None:
    assert sparkline([0, 0, 0, 0]) == "▁▁▁▁"


def test_an_empty_series_draws_nothing() -> None:
    assert sparkline([]) == ""


def test_one_spike_is_the_full_bar_and_silence_the_lowest() -> None:
    assert sparkline([0, 0, 12, 0]) == "▁▁█▁"


def test_a_single_post_is_higher_than_silence_even_next_to_a_surge() -> None:
    assert sparkline([0, 1, 500]) == "▁▂█"


def test_a_constant_non_zero_series_is_all_full_bars() -> None:
    assert sparkline([3, 3, 3]) == "███"


def test_bars_rise_with_the_values() -> None:
    line = sparkline([float(v) for v in range(8)])
    assert [BARS.index(bar) for bar in line] == sorted(BARS.index(bar) for bar in line)
    assert (line[0], line[-1]) == (BARS[0], BARS[-1])


def test_negative_nan_and_infinite_values_count_as_zero() -> None:
    assert sparkline([math.nan, -4, math.inf, -math.inf, 2]) == "▁▁▁▁█"


def test_a_long_series_is_squeezed_to_the_width_and_keeps_its_spike() -> None:
    week = [0.0] * 168
    week[100] = 40
    line = sparkline(week, width=72)
    assert len(line) == 72
    assert line.count("█") == 1
    assert set(line) == {"▁", "█"}


# --- the latest hour against its baseline --------------------------------------------------


def series(
    counts: list[int], baseline: list[float], *, watch: str = "acme", category: str = ""
) -> reputation_service_pb2.TrendSeries:
    return reputation_service_pb2.TrendSeries(watch=watch, category=category, counts=counts, baseline=baseline)


def test_the_latest_hour_is_compared_with_its_baseline() -> None:
    assert latest_hour(series([1, 2, 12], [1.0, 2.0, 3.5])) == "latest hour 12 vs 3.5 expected (×3.4)"


@pytest.mark.parametrize(
    "baseline",
    [[], [1.0, 2.0], [1.0, 2.0, math.nan], [1.0, 2.0, math.inf], [1.0, 2.0, -1.0]],
    ids=["none", "shorter", "nan", "infinite", "negative"],
)
def test_a_missing_or_broken_baseline_is_no_baseline_never_nan(baseline: list[float]) -> None:
    assert latest_hour(series([1, 2, 5], baseline)) == "latest hour 5 (no baseline yet)"


def test_a_zero_baseline_gives_no_ratio() -> None:
    assert latest_hour(series([0, 4], [0.0, 0.0])) == "latest hour 4 vs 0.0 expected"


def test_a_series_without_hours_says_so() -> None:
    assert latest_hour(series([], [])) == "no hours counted"


# --- the per-watch view -------------------------------------------------------------------------


def shown(response: reputation_service_pb2.GetTrendsResponse) -> str:
    console = Console(record=True, width=200, color_system=None)
    for part in render(response):
        console.print(part)
    return console.export_text()


def firing(
    watch: str, category: str, *, status: alert_pb2.AlertStatus.ValueType = alert_pb2.ALERT_STATUS_FIRING
) -> alert_pb2.Alert:
    return alert_pb2.Alert(
        watch=watch,
        category=category,
        status=status,
        count=120,
        baseline=10.0,
        ratio=12.0,
        top_terms=["refund", "double charge"],
    )


def test_each_watch_shows_its_total_then_its_categories_biggest_first() -> None:
    answer = reputation_service_pb2.GetTrendsResponse(
        series=[
            series([1, 2], [1.0, 1.0], category="app"),
            series([5, 9], [1.0, 1.0]),
            series([4, 7], [1.0, 1.0], category="billing"),
            series([0, 3], [1.0, 1.0], watch="globex"),
        ]
    )
    lines = [line.split()[0] for line in shown(answer).splitlines()[1:]]
    assert lines == ["acme", "billing", "app", "globex"]


def test_at_most_eight_categories_are_listed_and_the_rest_counted() -> None:
    categories = [series([n, n], [1.0, 1.0], category=f"cat{n:02}") for n in range(MAX_CATEGORIES + 2)]
    text = shown(reputation_service_pb2.GetTrendsResponse(series=[series([9, 9], [1.0, 1.0]), *categories]))
    assert "cat09" in text
    assert "cat00" not in text
    assert "cat01" not in text
    assert "… and 2 more categories" in text


def test_firing_alerts_are_listed_under_their_watch_with_ratio_counts_and_terms() -> None:
    answer = reputation_service_pb2.GetTrendsResponse(
        series=[series([1, 9], [1.0, 1.0]), series([1, 2], [1.0, 1.0], watch="globex")],
        alerts=[firing("acme", "billing"), firing("globex", "quality", status=alert_pb2.ALERT_STATUS_RESOLVED)],
    )
    lines = shown(answer).splitlines()
    acme = next(i for i, line in enumerate(lines) if line.startswith("acme"))
    assert lines[acme + 1].strip() == "▲ billing ×12.0: 120 vs 10.0 expected · refund, double charge"
    assert "quality" not in "\n".join(lines)


def test_a_firing_alert_on_a_watch_without_series_is_still_shown() -> None:
    answer = reputation_service_pb2.GetTrendsResponse(
        series=[series([1, 9], [1.0, 1.0])], alerts=[firing("initech", "outage")]
    )
    text = shown(answer)
    assert "other firing alerts" in text
    assert "▲ outage ×12.0" in text


def test_an_alert_with_a_nan_ratio_or_baseline_shows_a_question_mark() -> None:
    alert = firing("acme", "billing")
    alert.ratio, alert.baseline = math.nan, math.inf
    text = shown(reputation_service_pb2.GetTrendsResponse(series=[series([1, 9], [1.0, 1.0])], alerts=[alert]))
    assert "▲ billing ×?: 120 vs ? expected" in text
    assert "nan" not in text.lower()
    assert "inf" not in text.lower()


def test_nothing_counted_draws_nothing() -> None:
    assert render(reputation_service_pb2.GetTrendsResponse()) == []


# --- what a failed call says --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "details", "said"),
    [
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses; last error: ...",
            "no router at 127.0.0.1:1: start the mesh with clamor up, or the router alone with clamor serve router",
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            "the router is still connecting to NATS",
            "router at 127.0.0.1:1: UNAVAILABLE the router is still connecting to NATS",
        ),
        (
            grpc.StatusCode.UNIMPLEMENTED,
            "Method not found!",
            "the router at 127.0.0.1:1 does not answer GetTrends yet: update it and start it again",
        ),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "", "the router at 127.0.0.1:1 did not answer GetTrends within 10s"),
        (grpc.StatusCode.INTERNAL, "boom", "router at 127.0.0.1:1: INTERNAL boom"),
    ],
)
def test_a_failed_call_is_one_plain_line(code: grpc.StatusCode, details: str, said: str) -> None:
    assert service_problem("router", "127.0.0.1:1", code, details, rpc="GetTrends") == said


# --- the command against an in-process ReputationService -------------------------------------


@pytest.fixture
def router() -> Iterator[tuple[FakeRouterApi, str]]:
    fake = FakeRouterApi()
    with serving(fake) as address:
        yield fake, address


def config_for(folder: Path, address: str) -> Path:
    host, port = address.rsplit(":", 1)
    path = folder / "clamor.yaml"
    path.write_text(f"reputation:\n  grpc: {{host: {host}, port: {port}}}\n", encoding="utf-8")
    return path


def clamor(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["trends", *args, "--config", str(config)], env={"COLUMNS": "200"})


def test_trends_asks_for_the_watch_hours_and_verdict_given(tmp_path: Path, router: tuple[FakeRouterApi, str]) -> None:
    fake, address = router
    result = clamor(config_for(tmp_path, address), "--watch", "globex", "--hours", "24", "--noise")
    assert result.exit_code == 0, result.output
    assert fake.asked == [
        reputation_service_pb2.GetTrendsRequest(watch="globex", hours=24, counted_verdict=triage_pb2.VERDICT_NOISE)
    ]
    assert unstyle(result.stdout).startswith("noise posts per hour over 24 h")


def test_trends_prints_every_watch_and_the_firing_alert(tmp_path: Path, router: tuple[FakeRouterApi, str]) -> None:
    fake, address = router
    result = clamor(config_for(tmp_path, address))
    assert result.exit_code == 0, result.output
    assert fake.asked == [
        reputation_service_pb2.GetTrendsRequest(hours=48, counted_verdict=triage_pb2.VERDICT_COMPLAINT)
    ]
    text = unstyle(result.stdout)
    watches = [line.split()[0] for line in text.splitlines() if not line.startswith((" ", "complaints"))]
    assert watches == ["acme", "globex"]
    assert "▲ billing ×10.8: 125 vs 11.6 expected in 10:00–13:00 UTC · double charge, refund, card, twice" in text
    assert "quality ×" not in text


def test_trends_as_json_is_the_reputation_service_answer(tmp_path: Path, router: tuple[FakeRouterApi, str]) -> None:
    _, address = router
    result = clamor(config_for(tmp_path, address), "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert len(answer["series"]) == 8
    assert len(answer["series"][0]["counts"]) == HOURS
    assert answer["alerts"][0]["window_start"] == "2026-11-02T10:00:00Z"


def test_a_reputation_service_without_trends_yet_is_one_line(tmp_path: Path, router: tuple[FakeRouterApi, str]) -> None:
    fake, address = router
    fake.failures["GetTrends"] = (grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
    result = clamor(config_for(tmp_path, address))
    assert result.exit_code == 1
    assert unstyle(result.stderr).splitlines() == [
        f"the reputation service at {address} does not answer GetTrends yet: update it and start it again"
    ]


def test_no_reputation_service_running_is_one_line_naming_the_address(tmp_path: Path) -> None:
    address = free_address()
    result = clamor(config_for(tmp_path, address))
    assert result.exit_code == 1
    assert unstyle(result.stderr).splitlines() == [
        f"no reputation service at {address}: start the mesh with clamor up, "
        "or the reputation service alone with clamor serve reputation"
    ]


def test_a_failed_call_to_the_reputation_service_names_it() -> None:
    said = reputation_problem("127.0.0.1:1", grpc.StatusCode.DEADLINE_EXCEEDED, "", rpc="GetTrends")
    assert said == "the reputation service at 127.0.0.1:1 did not answer GetTrends within 10s"
