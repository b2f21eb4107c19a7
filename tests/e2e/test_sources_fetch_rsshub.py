"""`clamor sources fetch rsshub` reads one route of an RSSHub instance and prints its mentions as JSON lines."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.e2e.test_sources_fetch import clamor
from tests.http_server import LocalHttpServer, serve

pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parent.parent / "data" / "rsshub"
ROUTE = "/weibo/keyword/云雀航空"


@pytest.fixture
async def rsshub() -> AsyncIterator[LocalHttpServer]:
    async def weibo(request: web.Request) -> web.Response:
        if request.query.get("key") != "local-key":
            return web.Response(status=403, text="Authentication failed. Access denied.")
        return web.Response(body=(DATA / "weibo_keyword.xml").read_bytes(), content_type="application/xml")

    async with serve({("GET", ROUTE): weibo}) as server:
        yield server


async def test_fetch_rsshub_route_prints_weibo_mentions(rsshub: LocalHttpServer) -> None:
    code, out, err = await clamor(
        "sources", "fetch", "rsshub", "--url", rsshub.base_url, "-o", f"route={ROUTE}", "-o", "access_key=local-key",
        "--allow-host", "127.0.0.1", "--hours", "1e5",
    )  # fmt: skip

    assert code == 0, err
    mentions = [json.loads(line) for line in out.splitlines()]
    assert [m["id"] for m in mentions] == [
        "weibo:https://weibo.com/1000000003/Oa1Bc2De3",
        "weibo:https://weibo.com/1000000002/Pq7Kz9Yb2",
        "weibo:https://weibo.com/1000000001/Pq7Lm2Xa1",
    ]
    first = mentions[-1]
    assert first["platform"] == "weibo"
    assert first["language"] == "zh"
    assert first["author"]["display_name"] == "飞鸟小王"
    assert first["created_at"] == "2026-03-03T09:12:00Z"
    assert "行李弄丢了" in first["text"]
    assert "local-key" not in out + err


async def test_fetch_rsshub_names_a_route_without_its_slash() -> None:
    code, _, err = await clamor("sources", "fetch", "rsshub", "--url", "https://rsshub.example", "-o", "route=weibo/x")

    assert code == 2
    assert "route" in err
    assert "must start with '/'" in err
