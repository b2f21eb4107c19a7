"""`clamor dashboard`'s HTTP server against canned services: JSON endpoints, errors, headers, static files.

The router and the reputation service are ``tests.integration.router_api_fake`` on a free loopback
port; the dashboard is a real ``DashboardServer`` on port 0, asked over HTTP with aiohttp's client. The
page itself is tested in a browser by ``tests/e2e/test_dashboard_browser.py``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from yarl import URL

from clamor.v1 import reputation_service_pb2, router_service_pb2, triage_pb2
from services.cli.dashboard import DashboardServer
from tests.integration.router_api_fake import HOURS, FakeRouterApi, free_address, serving

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def router() -> Iterator[tuple[FakeRouterApi, str]]:
    fake = FakeRouterApi()
    with serving(fake) as address:
        yield fake, address


async def started(router_address: str, reputation_address: str | None = None) -> DashboardServer:
    server = DashboardServer(router_address, reputation_address or router_address, "127.0.0.1", 0)
    await server.start()
    return server


@pytest.fixture
async def dashboard(router: tuple[FakeRouterApi, str]) -> AsyncIterator[DashboardServer]:
    server = await started(router[1])
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


# --- the JSON endpoints -------------------------------------------------------------------------


async def test_trends_is_get_trends_as_json_with_proto_field_names(
    dashboard: DashboardServer, router: tuple[FakeRouterApi, str], http: aiohttp.ClientSession
) -> None:
    status, body = await get_json(http, f"{dashboard.url}api/trends")
    assert status == 200
    assert router[0].asked == [
        reputation_service_pb2.GetTrendsRequest(hours=48, counted_verdict=triage_pb2.VERDICT_COMPLAINT)
    ]
    assert [(s["watch"], s.get("category", "")) for s in body["series"]][:2] == [("acme", ""), ("acme", "billing")]
    assert len(body["series"][0]["counts"]) == HOURS
    firing = body["alerts"][0]
    assert (firing["status"], firing["window_start"], firing["top_terms"][0]) == (
        "ALERT_STATUS_FIRING",
        "2026-11-02T10:00:00Z",
        "double charge",
    )


async def test_trends_passes_watch_hours_and_verdict(
    dashboard: DashboardServer, router: tuple[FakeRouterApi, str], http: aiohttp.ClientSession
) -> None:
    status, body = await get_json(http, f"{dashboard.url}api/trends?watch=globex&hours=24&verdict=noise")
    assert status == 200
    assert router[0].asked == [
        reputation_service_pb2.GetTrendsRequest(watch="globex", hours=24, counted_verdict=triage_pb2.VERDICT_NOISE)
    ]
    assert {s["watch"] for s in body["series"]} == {"globex"}


@pytest.mark.parametrize("query", ["hours=0", "hours=721", "hours=many", "verdict=spam", "hours=1e3"])
async def test_a_bad_trends_query_is_400_and_never_reaches_the_router(
    dashboard: DashboardServer, router: tuple[FakeRouterApi, str], http: aiohttp.ClientSession, query: str
) -> None:
    status, body = await get_json(http, f"{dashboard.url}api/trends?{query}")
    assert status == 400
    assert set(body) == {"error"}
    assert router[0].asked == []


async def test_alerts_is_list_alerts_as_json(
    dashboard: DashboardServer, router: tuple[FakeRouterApi, str], http: aiohttp.ClientSession
) -> None:
    status, body = await get_json(http, f"{dashboard.url}api/alerts?firing_only=true&limit=5")
    assert status == 200
    assert router[0].asked == [reputation_service_pb2.ListAlertsRequest(firing_only=True, page_size=5)]
    assert [a["id"] for a in body["alerts"]] == ["al_acme_billing"]
    assert body["alerts"][0]["samples"][1]["text"] == "<img src=x onerror=alert(1)>"


async def test_cases_is_list_cases_as_json(
    dashboard: DashboardServer, router: tuple[FakeRouterApi, str], http: aiohttp.ClientSession
) -> None:
    status, body = await get_json(http, f"{dashboard.url}api/cases?limit=2")
    assert status == 200
    assert router[0].asked == [router_service_pb2.ListCasesRequest(limit=2)]
    assert [case["id"] for case in body["cases"]] == ["c_0001", "c_0002"]
    first = body["cases"][0]
    assert (first["severity"], first["sla"]["first_response_breached"]) == ("SEVERITY_CRITICAL", True)


async def test_config_gives_the_refresh_interval_and_the_router(
    dashboard: DashboardServer, router: tuple[FakeRouterApi, str], http: aiohttp.ClientSession
) -> None:
    config = {"refresh_s": 30.0, "router": router[1], "reputation": router[1]}
    assert await get_json(http, f"{dashboard.url}api/config") == (200, config)


# --- router failures ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["api/cases"])
async def test_no_router_is_503_with_one_line_naming_it(http: aiohttp.ClientSession, path: str) -> None:
    address = free_address()
    server = await started(address)
    try:
        status, body = await get_json(http, f"{server.url}{path}")
    finally:
        await server.stop()
    said = f"no router at {address}: start the mesh with clamor up, or the router alone with clamor serve router"
    assert (status, body) == (503, {"error": said})


@pytest.mark.parametrize("path", ["api/trends", "api/alerts"])
async def test_no_reputation_service_is_503_with_one_line_naming_it(http: aiohttp.ClientSession, path: str) -> None:
    address = free_address()
    server = await started(address)
    try:
        status, body = await get_json(http, f"{server.url}{path}")
    finally:
        await server.stop()
    said = (
        f"no reputation service at {address}: start the mesh with clamor up, "
        "or the reputation service alone with clamor serve reputation"
    )
    assert (status, body) == (503, {"error": said})


async def test_a_reputation_service_without_trends_yet_is_502_saying_so(
    dashboard: DashboardServer, router: tuple[FakeRouterApi, str], http: aiohttp.ClientSession
) -> None:
    router[0].failures["GetTrends"] = (grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
    status, body = await get_json(http, f"{dashboard.url}api/trends")
    assert (status, body) == (
        502,
        {"error": f"the reputation service at {router[1]} does not answer GetTrends yet: update it and start it again"},
    )


async def test_a_router_error_is_its_code_and_details_never_a_traceback(
    dashboard: DashboardServer, router: tuple[FakeRouterApi, str], http: aiohttp.ClientSession
) -> None:
    router[0].failures["ListCases"] = (grpc.StatusCode.INTERNAL, "counter store corrupt")
    status, body = await get_json(http, f"{dashboard.url}api/cases")
    assert (status, body) == (502, {"error": f"router at {router[1]}: INTERNAL counter store corrupt"})


# --- static files and headers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type", "starts"),
    [
        ("", "text/html", b"<!doctype html>"),
        ("app.js", "text/javascript", b"// Clamor dashboard"),
        ("style.css", "text/css", b"/* Clamor dashboard"),
        ("favicon.svg", "image/svg+xml", b"<svg"),
    ],
)
async def test_the_page_files_are_served_with_their_types(
    dashboard: DashboardServer, http: aiohttp.ClientSession, path: str, content_type: str, starts: bytes
) -> None:
    async with http.get(f"{dashboard.url}{path}") as response:
        assert response.status == 200
        assert response.content_type == content_type
        assert (await response.read()).startswith(starts)


def test_the_page_loads_nothing_from_elsewhere_and_never_parses_html() -> None:
    folder = REPO / "services" / "cli_data" / "dashboard"
    for name in ("index.html", "app.js", "style.css"):
        text = (folder / name).read_text(encoding="utf-8")
        assert set(re.findall(r"https?://[^\s\"'`]+", text)) <= {"http://www.w3.org/2000/svg"}, name
        assert not re.search(r"@import|url\(|innerHTML|outerHTML|insertAdjacentHTML|document\.write", text), name


@pytest.mark.parametrize("path", ["", "app.js", "api/cases", "api/trends?hours=0", "no-such-file"])
async def test_every_response_carries_the_security_headers(
    dashboard: DashboardServer, http: aiohttp.ClientSession, path: str
) -> None:
    async with http.get(f"{dashboard.url}{path}") as response:
        headers = response.headers
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy
    assert "connect-src 'self';" in policy
    assert "unsafe" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize(
    "raw_path",
    [
        "/../pyproject.toml",
        "/%2e%2e/pyproject.toml",
        "/..%2fpyproject.toml",
        "/..%2F..%2F..%2Fpyproject.toml",
        "/dashboard/app.js",
        "/clamor.yaml",
        "/__init__.py",
        "/%2e%2e%2f__init__.py",
        "/app.js%00.html",
    ],
)
async def test_no_path_reaches_a_file_outside_the_page(
    dashboard: DashboardServer, http: aiohttp.ClientSession, raw_path: str
) -> None:
    url = URL(f"{dashboard.url.rstrip('/')}{raw_path}", encoded=True)
    async with http.get(url) as response:
        body = await response.read()
    assert response.status == 404
    assert b"[build-system]" not in body
    assert b"router:" not in body


async def test_only_get_is_answered(dashboard: DashboardServer, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{dashboard.url}api/cases", json={}) as response:
        assert response.status == 405


async def test_a_request_for_another_host_name_is_refused(
    dashboard: DashboardServer, http: aiohttp.ClientSession
) -> None:
    # What a page on evil.example sees after pointing its DNS name at 127.0.0.1 (DNS rebinding).
    async with http.get(f"{dashboard.url}api/cases", headers={"Host": f"evil.example:{dashboard.port}"}) as response:
        assert response.status == 421
        assert "cases" not in await response.json()


async def test_localhost_by_name_is_answered(dashboard: DashboardServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"http://localhost:{dashboard.port}/api/cases") as response:
        assert response.status == 200


# --- starting and stopping -------------------------------------------------------------------


async def test_a_taken_port_is_an_os_error_and_leaves_nothing_open(dashboard: DashboardServer) -> None:
    second = DashboardServer(dashboard.router_address, dashboard.reputation_address, "127.0.0.1", dashboard.port)
    with pytest.raises(OSError, match="address already in use"):
        await second.start()
    await second.stop()


async def test_stop_closes_the_port(router: tuple[FakeRouterApi, str], http: aiohttp.ClientSession) -> None:
    server = await started(router[1])
    await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get(f"{server.url}api/cases")


def test_the_command_prints_the_url_serves_and_stops_on_ctrl_c(
    tmp_path: Path, router: tuple[FakeRouterApi, str]
) -> None:
    host, port = router[1].rsplit(":", 1)
    config = tmp_path / "clamor.yaml"
    config.write_text(f"router:\n  grpc: {{host: {host}, port: {port}}}\n", encoding="utf-8")
    command = [sys.executable, "-c", "from services.cli import main; main()", "dashboard", "--port", "0"]
    env = {**os.environ, "COLUMNS": "200"}
    with subprocess.Popen(
        [*command, "--config", str(config)], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("dashboard at http://127.0.0.1:"), first
        url = first.split()[2]
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1].rstrip("/"))), timeout=5) as sock:
            sock.sendall(b"GET /api/cases HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert sock.recv(64).startswith(b"HTTP/1.1 200")
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert rest.strip().splitlines()[-1] == "dashboard stopped"
