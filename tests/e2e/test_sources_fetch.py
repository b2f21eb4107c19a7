"""`clamor sources fetch` prints what a source would publish, as JSON lines, and publishes nothing."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.http_server import LocalHttpServer, serve

pytestmark = pytest.mark.e2e

FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><guid>a-1</guid><title>Kettle &amp; Co biscuits taste odd</title><link>https://reviews.example/k/1</link>
<pubDate>Mon, 23 Nov 2026 08:00:00 GMT</pubDate></item></channel></rss>"""


@pytest.fixture
async def feed_server() -> AsyncIterator[LocalHttpServer]:
    async def rss(_: web.Request) -> web.Response:
        return web.Response(body=FEED, content_type="application/rss+xml")

    async with serve({("GET", "/feed.xml"): rss}) as server:
        yield server


async def clamor(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from services.cli import main; main()",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_fetch_prints_one_json_line_per_mention(feed_server: LocalHttpServer) -> None:
    code, out, err = await clamor(
        "sources", "fetch", "rss", "--url", feed_server.url("/feed.xml"), "--allow-host", "127.0.0.1", "--hours", "1e5"
    )
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 1
    mention = lines[0]
    assert mention["id"] == "rss:a-1"
    assert mention["native_id"] == "a-1"
    assert mention["url"] == "https://reviews.example/k/1"
    assert "taste odd" in mention["text"]
    assert mention["created_at"] == "2026-11-23T08:00:00Z"
    assert {"source", "author", "language"} <= set(mention)


async def test_fetch_refuses_a_local_address_unless_allowed(feed_server: LocalHttpServer) -> None:
    code, out, err = await clamor("sources", "fetch", "rss", "--url", feed_server.url("/feed.xml"))
    assert code == 1
    assert out == ""
    assert "loopback" in err
    assert feed_server.requests == []


async def test_fetch_names_a_missing_setting() -> None:
    code, _, err = await clamor("sources", "fetch", "x", "--query", "lumo")
    assert code == 2
    assert "bearer_token" in err
