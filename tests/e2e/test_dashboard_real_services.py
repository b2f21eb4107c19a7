"""The dashboard in headless Chromium, fed by the real services: the reputation service's counters, spike
detector and gRPC API, and the router's cases.

Real nats-server; the router's and the reputation service's parts as their ``assemble`` wires them,
placing and counting three quiet days and a surge from the TRIAGED stream; their own servicers on free
ports; ``clamor dashboard``'s server; Debian's Chromium driven by Playwright. The page must show the
watch's series and the alert the reputation service raised, with no console or page errors. The
screenshot is saved to ``test-artifacts/dashboard-real-router.png``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from clamor.v1 import reputation_service_pb2, reputation_service_pb2_grpc, router_service_pb2_grpc
from services.cli.dashboard import DashboardServer
from services.cli.trends import fetch_trends, rebuild_counters
from services.reputation.server import ReputationParts, ReputationServicer
from services.router.consumer import RulesHolder
from services.router.server import RouterParts, RouterServicer
from services.shared.clock import system_clock
from tests.e2e.browser import CHROMIUM_ARGS, require_chromium
from tests.integration.reputation_harness import reputation_settings, running_reputation
from tests.integration.router_harness import complaint, publish_triaged

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.js import JetStreamContext

    from tests.integration.reputation_harness import RunningReputation

try:
    from playwright.async_api import ConsoleMessage, async_playwright
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("Playwright is not installed: pip install -e '.[dev]'", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
ARTEFACT = REPO / "test-artifacts" / "dashboard-real-router.png"


async def history_and_surge(js: JetStreamContext, now: datetime) -> list[datetime]:
    """Three quiet days, then a surge in the last 45 minutes; returns when each post was written."""
    written: list[datetime] = []
    n = 0
    for day in (1, 2, 3):
        for minutes in range(5, 24 * 60, 40):
            n += 1
            triaged = complaint(f"mastodon:{n}", handle=f"user{n}", text=f"charged twice, order {n}")
            written.append(now - timedelta(days=day, minutes=minutes))
            triaged.mention.created_at.FromDatetime(written[-1])
            await publish_triaged(js, triaged)
    for k in range(16):
        n += 1
        triaged = complaint(
            f"mastodon:{n}",
            handle=f"wave{k}",
            category="product quality",
            text=f"the new recipe tastes odd, box {k}",
            followers=90_000 if k == 2 else 300,
        )
        written.append(now - timedelta(minutes=45 - 2.5 * k))
        triaged.mention.created_at.FromDatetime(written[-1])
        await publish_triaged(js, triaged)
    return written


@asynccontextmanager
async def services_api(running: RunningReputation) -> AsyncIterator[str]:
    """The router's and the reputation service's servicers on one free port (each serves its own API)."""
    router = running.router.router
    servicer = RouterServicer(router.settings, RulesHolder(router.settings.rules), None)
    servicer.attach(RouterParts(cases=router.cases, actions=router.actions, dead_letters=router.dead_letters))
    reputation = ReputationServicer(running.reputation.settings, clock=system_clock)
    reputation.attach(ReputationParts(trends=running.reputation.trends, reputation=running.reputation.watch))
    server = grpc.aio.server()
    router_service_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server)
    reputation_service_pb2_grpc.add_ReputationServiceServicer_to_server(reputation, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


@pytest.fixture
def chromium() -> Path:
    return require_chromium()


async def test_the_dashboard_shows_the_real_services_series_and_alert(
    nc: NatsClient, tmp_path: Path, chromium: Path
) -> None:
    js = nc.jetstream()
    now = system_clock()
    async with running_reputation(js, reputation_settings({}), tmp_path, clock=system_clock) as running:
        await history_and_surge(js, now)
        raised = await running.count_and_watch()
        assert [a.topic for a in raised] == ["acme"]
        async with services_api(running) as address, async_playwright() as playwright:
            dashboard = DashboardServer(address, address, "127.0.0.1", 0, refresh_s=30)
            await dashboard.start()
            browser = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
            errors: list[str] = []
            try:
                page = await browser.new_page(viewport={"width": 1360, "height": 900})
                page.set_default_timeout(15_000)

                def on_console(message: ConsoleMessage) -> None:
                    if message.type == "error":
                        errors.append(message.text)

                page.on("console", on_console)
                page.on("pageerror", lambda error: errors.append(str(error)))
                await page.goto(dashboard.url)
                await page.wait_for_selector("body[data-refreshes]")
                chart = page.locator('article.watch[data-watch="acme"] svg.chart:not(.small)')
                points = await chart.locator("polyline.line").get_attribute("points") or ""
                assert len(points.split()) == 48
                assert await chart.locator("path.baseline").count() == 1
                assert await chart.locator("g.band.firing").count() == 1
                card = page.locator("#alerts article.alert")
                assert await card.count() == 1
                assert await card.locator("h3").text_content() == "acme"
                assert (await card.locator(".numbers").text_content() or "").startswith("16 complaints")
                shot = tmp_path / "dashboard-real-router.png"
                await page.screenshot(path=str(shot), full_page=True)
                ARTEFACT.parent.mkdir(exist_ok=True)
                shutil.copyfile(shot, ARTEFACT)
            finally:
                await browser.close()
                await dashboard.stop()
    assert errors == []


async def test_clamor_trends_rebuild_recounts_through_the_real_reputation_service(
    nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    now = system_clock()
    async with running_reputation(js, reputation_settings({}), tmp_path, clock=system_clock) as running:
        written = await history_and_surge(js, now)
        await running.count_and_watch()
        async with services_api(running) as address:
            done = await rebuild_counters(address)
            trend = await fetch_trends(address, reputation_service_pb2.GetTrendsRequest(watch="acme", hours=48))
    assert done.messages == len(written)
    [total] = [s for s in trend.series if not s.category]
    start = total.start.ToDatetime(tzinfo=UTC)
    assert sum(total.counts) == sum(1 for at in written if at >= start)
