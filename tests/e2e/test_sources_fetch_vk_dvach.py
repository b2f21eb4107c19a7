"""`clamor sources fetch vk` and `… dvach` print what those sources would publish, as JSON lines."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

import pytest
from aiohttp import web

from tests.e2e.test_sources_fetch import clamor
from tests.http_server import LocalHttpServer, serve

pytestmark = pytest.mark.e2e

# An hour ago: within the default 24 hours the command looks back.
POSTED = int(time.time()) - 3600
TOKEN = "vk1.a.cli-service-token"


@pytest.fixture
async def vk_api() -> AsyncIterator[LocalHttpServer]:
    async def search(request: web.Request) -> web.Response:
        params = dict(parse_qsl((await request.read()).decode()))
        if params.get("access_token") != TOKEN:
            return web.json_response({"error": {"error_code": 5, "error_msg": "User authorization failed"}})
        item = {"id": 9, "owner_id": -42, "from_id": -42, "date": POSTED, "text": "Фьорд, где возврат денег?"}
        group = {"id": 42, "name": "Фьорд Поддержка", "screen_name": "fjord_help", "members_count": 900}
        return web.json_response({"response": {"items": [item], "count": 1, "profiles": [], "groups": [group]}})

    async with serve({("POST", "/method/newsfeed.search"): search}) as server:
        yield server


@pytest.fixture
async def board() -> AsyncIterator[LocalHttpServer]:
    async def catalog(_: web.Request) -> web.Response:
        return web.json_response({"threads": [{"num": 500, "timestamp": POSTED, "lasthit": POSTED}]})

    async def thread(_: web.Request) -> web.Response:
        posts = [{"num": 500, "timestamp": POSTED, "name": "Аноним", "subject": "", "comment": "Чайник Фьорд течёт"}]
        return web.json_response({"threads": [{"posts": posts}]})

    async with serve({("GET", "/po/catalog.json"): catalog, ("GET", "/po/res/500.json"): thread}) as server:
        yield server


async def test_fetch_vk_prints_the_search_results_as_json_lines(vk_api: LocalHttpServer) -> None:
    code, out, err = await clamor(
        "sources", "fetch", "vk", "--url", vk_api.base_url, "--allow-host", "127.0.0.1",
        "-o", f"access_token={TOKEN}", "--query", "Фьорд",
    )  # fmt: skip
    assert code == 0, err
    [mention] = [json.loads(line) for line in out.splitlines()]
    assert mention["id"] == "vk:-42_9"
    assert mention["url"] == "https://vk.com/wall-42_9"
    assert mention["author"] == {"handle": "fjord_help", "display_name": "Фьорд Поддержка", "followers": "900"}
    assert mention["text"] == "Фьорд, где возврат денег?"
    assert TOKEN not in err


async def test_fetch_vk_with_a_bad_token_names_access_token(vk_api: LocalHttpServer) -> None:
    code, out, err = await clamor(
        "sources", "fetch", "vk", "--url", vk_api.base_url, "--allow-host", "127.0.0.1",
        "-o", "access_token=vk1.a.wrong", "-o", "query=Фьорд",
    )  # fmt: skip
    assert (code, out) == (1, "")
    assert "access_token" in err
    assert "vk1.a.wrong" not in err


async def test_fetch_dvach_prints_the_board_posts_as_json_lines(board: LocalHttpServer) -> None:
    code, out, err = await clamor(
        "sources", "fetch", "dvach", "--url", board.base_url, "--allow-host", "127.0.0.1", "-o", "board=po"
    )
    assert code == 0, err
    [mention] = [json.loads(line) for line in out.splitlines()]
    assert mention["id"] == "dvach:po/500"
    assert mention["url"] == "https://2ch.hk/po/res/500.html#500"
    assert mention["thread_id"] == "po/500"
    assert mention["text"] == "Чайник Фьорд течёт"


async def test_fetch_dvach_reads_the_threads_named_in_one_option(board: LocalHttpServer) -> None:
    code, out, err = await clamor(
        "sources", "fetch", "dvach", "--url", board.base_url, "--allow-host", "127.0.0.1",
        "-o", "board=po", "-o", "threads=500",
    )  # fmt: skip
    assert code == 0, err
    assert [json.loads(line)["native_id"] for line in out.splitlines()] == ["po/500"]
    assert [r.path for r in board.requests] == ["/po/res/500.json"]
