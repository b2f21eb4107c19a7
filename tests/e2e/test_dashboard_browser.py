"""The dashboard page in a real headless Chromium, against a canned router API (not yet the real router).

A real ``DashboardServer`` serves the page and asks ``tests.integration.router_api_fake`` (a
RouterService with fixed trends, alerts and cases on a free loopback port) for its data; Playwright
drives Debian's ``/usr/bin/chromium``. The tests check what a person sees: one chart per watch with
a point per hour, the alert band and card, hostile post text shown as text, the case counts, no
console or page errors, no request leaving the page's origin. A later test will drive the same page
with the real router and its counters.

The full page is saved as a screenshot in the test's tmp_path and copied to
``test-artifacts/dashboard.png`` at the repository root. Without Chromium the tests are skipped,
except under CI=true where they fail: ``.ci/run`` installs it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from services.cli.dashboard import DashboardServer
from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium
from tests.integration.router_api_fake import (
    HOSTILE,
    HOURS,
    OPEN_CASE_COUNTS,
    SURGE,
    FakeRouterApi,
    free_address,
    serving,
)

try:
    from playwright.async_api import Browser, ConsoleMessage, Dialog, Page, Request, Route, async_playwright
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("Playwright is not installed: pip install -e '.[dev]'", allow_module_level=True)

# One browser for the module: its tests share the module's event loop.
pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

REPO = Path(__file__).resolve().parents[2]
ARTEFACT = REPO / "test-artifacts" / "dashboard.png"


@pytest.fixture(scope="module", autouse=True)
def chromium_installed() -> None:
    require_chromium()


@pytest.fixture
def router() -> Iterator[tuple[FakeRouterApi, str]]:
    fake = FakeRouterApi()
    with serving(fake) as address:
        yield fake, address


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@dataclass
class Visit:
    """The page once it has drawn one refresh, and what the browser reported meanwhile."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)


@asynccontextmanager
async def visit(browser: Browser, router_address: str, *, refresh_s: float = 30.0) -> AsyncIterator[Visit]:
    server = DashboardServer(router_address, router_address, "127.0.0.1", 0, refresh_s=refresh_s)
    await server.start()
    page = await browser.new_page(viewport={"width": 1360, "height": 900})
    page.set_default_timeout(10_000)
    seen = Visit(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.console_errors.append(message.text)

    async def on_dialog(dialog: Dialog) -> None:
        seen.dialogs.append(dialog.message)
        await dialog.dismiss()

    async def same_origin_only(route: Route, request: Request) -> None:
        if request.url.startswith(server.url):
            await route.continue_()
        else:
            seen.elsewhere.append(request.url)
            await route.abort()

    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.page_errors.append(str(error)))
    page.on("dialog", on_dialog)
    await page.route("**/*", same_origin_only)
    try:
        await page.goto(server.url)
        await page.wait_for_selector("body[data-refreshes]")
        yield seen
    finally:
        await page.close()
        await server.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def loaded(browser: Browser, router: tuple[FakeRouterApi, str]) -> AsyncIterator[Visit]:
    async with visit(browser, router[1]) as seen:
        yield seen


async def test_the_page_loads_without_errors_or_outside_requests(loaded: Visit, tmp_path: Path) -> None:
    page = loaded.page
    assert await page.title() == "Clamor dashboard"
    assert await page.locator("#banner").is_hidden()
    shot = tmp_path / "dashboard.png"
    await page.screenshot(path=str(shot), full_page=True)
    ARTEFACT.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTEFACT)
    print(f"dashboard screenshot: {shot} (copied to {ARTEFACT})")
    assert (loaded.console_errors, loaded.page_errors, loaded.dialogs, loaded.elsewhere) == ([], [], [], [])


async def test_each_watch_has_a_chart_with_a_point_per_hour_and_a_baseline(loaded: Visit) -> None:
    watches = loaded.page.locator("article.watch")
    assert await watches.evaluate_all("nodes => nodes.map(n => n.dataset.watch)") == ["acme", "globex"]
    for index in range(2):
        chart = watches.nth(index).locator("svg.chart:not(.small)")
        assert await chart.count() == 1
        points = await chart.locator("polyline.line").get_attribute("points")
        assert points is not None
        assert len(points.split()) == HOURS
        assert await chart.locator("path.baseline").count() == 1
        assert "complaints in 48 hours" in (await chart.get_attribute("aria-label") or "")
    assert await watches.nth(0).locator("figure.multiple svg.chart.small").count() == 4


async def test_the_firing_alert_is_a_band_on_the_chart_and_a_card_with_count_and_ratio(loaded: Visit) -> None:
    acme = loaded.page.locator('article.watch[data-watch="acme"] svg.chart:not(.small)')
    band = acme.locator("g.band.firing")
    assert await band.count() == 1
    assert await band.locator("text.band-label").text_content() == f"▲ billing ×10.8 ({sum(SURGE)} vs 11.6)"
    # The band covers the surge's three hours: three of the 48 hour slots of the plot.
    width = float(await band.locator("rect").get_attribute("width") or 0)
    slot = (960 - 40 - 10) / HOURS
    assert width == pytest.approx(3 * slot, abs=0.01)
    assert (
        await loaded.page.locator('article.watch[data-watch="globex"] svg.chart:not(.small) g.band.resolved').count()
        == 1
    )
    card = loaded.page.locator("#alerts article.alert")
    assert await card.count() == 1
    assert await card.locator("h3").text_content() == "acme · billing"
    assert await card.locator(".ratio").text_content() == "×10.8"
    numbers = await card.locator(".numbers").text_content() or ""
    assert numbers.startswith(f"{sum(SURGE)} complaints vs 11.6 expected")
    assert await card.locator(".terms li").all_text_contents() == ["double charge", "refund", "card", "twice"]


async def test_hostile_post_text_is_shown_as_text_and_bad_links_are_dropped(loaded: Visit) -> None:
    page = loaded.page
    assert await page.locator("img").count() == 0
    assert await page.locator("script").count() == 1
    assert await page.locator('a[href^="javascript:"]').count() == 0
    samples = await page.locator("#alerts blockquote").all_text_contents()
    assert HOSTILE in samples
    assert "<script>alert(2)</script> refund me" in samples
    assert HOSTILE in await page.locator("#posts .text").all_text_contents()
    links = await page.locator("#alerts a, #posts a").evaluate_all("nodes => nodes.map(n => [n.protocol, n.rel])")
    assert links
    assert all(protocol == "https:" and "noopener" in rel for protocol, rel in links)
    assert loaded.dialogs == []


async def test_open_cases_are_counted_by_severity_and_sla_state(loaded: Visit) -> None:
    table = loaded.page.locator("#cases")
    shown = {}
    for severity in OPEN_CASE_COUNTS:
        cells = await table.locator(f'tr[data-severity="{severity}"] td').all_text_contents()
        shown[severity] = tuple(int(cell) for cell in cells)
    assert shown == {severity: (*counts, sum(counts)) for severity, counts in OPEN_CASE_COUNTS.items()}
    assert await table.locator("caption").text_content() == "Open: 5 of the 6 latest cases"
    assert await loaded.page.locator('#cases tr[data-severity="CRITICAL"] td.bad').text_content() == "1"


async def test_latest_complaints_are_the_newest_posts_first(loaded: Visit) -> None:
    posted = await loaded.page.locator("#posts tbody td.when").all_text_contents()
    assert len(posted) == 7
    assert posted == sorted(posted, reverse=True)
    assert posted[0] == "2026-11-02 10:20"


async def test_services_that_are_down_are_a_banner_not_a_page_error(browser: Browser) -> None:
    address = free_address()
    async with visit(browser, address) as seen:
        banner = seen.page.locator("#banner")
        assert await banner.is_visible()
        assert await banner.locator("p").all_text_contents() == [
            f"no reputation service at {address}: start the mesh with clamor up, "
            "or the reputation service alone with clamor serve reputation",
            f"no router at {address}: start the mesh with clamor up, or the router alone with clamor serve router",
        ]
        assert seen.page_errors == []
        # The browser itself logs each failed fetch (503) as a console error; nothing else may be there.
        assert all("503" in text for text in seen.console_errors), seen.console_errors
        assert await seen.page.locator("#alerts").text_content() == "Not available: see the message above."


async def test_the_page_refreshes_on_its_own(browser: Browser, router: tuple[FakeRouterApi, str]) -> None:
    fake, address = router
    async with visit(browser, address, refresh_s=0.3) as seen:
        fake.cases = fake.cases[:1]
        # Two more refreshes: the second began after the change. (Polled here: the page's CSP
        # forbids the string evaluation wait_for_function needs.)
        refreshes = "Number(document.body.dataset.refreshes)"
        wanted = await seen.page.evaluate(refreshes) + 2
        for _ in range(100):
            if await seen.page.evaluate(refreshes) >= wanted:
                break
            await asyncio.sleep(0.1)
        assert await seen.page.locator("#cases caption").text_content() == "Open: 1 of the 1 latest case"
        assert seen.page_errors == []
