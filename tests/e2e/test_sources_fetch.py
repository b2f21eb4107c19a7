"""`clamor sources fetch` prints what a source would publish, as JSON lines, and publishes nothing."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.http_server import Handler, LocalHttpServer, serve

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


BOARD_SUBJECT = "1763600000.dat<>ミドリ運輸の配達遅延について (2)\n".encode("cp932")
BOARD_DAT = (
    "名無しさん<>sage<>2026/11/23(月) 09:00:00.00 ID:Ab1Cd2Ef0<> 荷物が三日も届かない <br> 返金してほしい <>"
    "ミドリ運輸の配達遅延について\n"
    "名無しさん<><>2026/11/23(月) 09:05:00.00 ID:Zz9Yy8Xx0<> &gt;&gt;1 うちも同じ <>\n"
).encode("cp932")


async def test_fetch_fivech_prints_the_posts_of_a_board() -> None:
    async def subject(_: web.Request) -> web.StreamResponse:
        return web.Response(body=BOARD_SUBJECT, headers={"Content-Type": "text/plain"})

    async def dat(_: web.Request) -> web.StreamResponse:
        return web.Response(body=BOARD_DAT, headers={"Content-Type": "text/plain"})

    routes: dict[tuple[str, str], Handler] = {
        ("GET", "/news/subject.txt"): subject,
        ("GET", "/news/dat/1763600000.dat"): dat,
    }
    async with serve(routes) as board:
        options = ("-o", "board=news", "--allow-host", "127.0.0.1", "--hours", "1e5")
        code, out, err = await clamor("sources", "fetch", "fivech", "--url", board.base_url, *options)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["native_id"] for line in lines] == ["news/1763600000/1", "news/1763600000/2"]
    assert lines[0]["id"] == "5ch:news/1763600000/1"
    assert lines[0]["text"] == "ミドリ運輸の配達遅延について\n\n荷物が三日も届かない\n返金してほしい"
    assert lines[0]["created_at"] == "2026-11-23T00:00:00Z"
    assert lines[1]["thread_id"] == "news/1763600000"
    assert lines[1]["language"] == "ja"
