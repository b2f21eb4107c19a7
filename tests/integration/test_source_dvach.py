"""The 2ch.hk adapter against a local server that answers catalog.json and res/<num>.json as 2ch does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from services.listener.config import DvachSourceSettings
from services.listener.errors import ApiRefusedError, SourceFormatError
from services.listener.sources.base import SourceState
from services.listener.sources.dvach import DvachSource
from services.shared.outbound import OutboundClient, OutboundError
from tests.http_server import LocalHttpServer, serve
from tests.integration.source_cases import JsonSourceCases, answering

CATALOG_PATH = "/b/catalog.json"
THREAD_PATH = "/b/res/{num}.json"
SINCE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
BOARD = {"id": "b", "name": "Бред", "bump_limit": 500, "default_name": "Аноним", "enable_trips": True}


def at(minutes: float) -> int:
    return int((SINCE + timedelta(minutes=minutes)).timestamp())


def board_post(
    num: int, thread: int, minutes: float, comment: str = "Сколько можно ждать посылку?", **extra: Any
) -> dict[str, Any]:
    return {
        "num": num,
        "parent": 0 if num == thread else thread,
        "board": "b",
        "timestamp": at(minutes),
        "lasthit": at(minutes),
        "date": "20/11/26 Птн 12:00:00",
        "email": "",
        "subject": "",
        "comment": comment,
        "files": [],
        "views": 0,
        "sticky": 0,
        "endless": 0,
        "closed": 0,
        "banned": 0,
        "op": 1 if num == thread else 0,
        "name": "Аноним",
        "trip": "",
    } | extra


class FakeDvach:
    """A board: threads of posts, a catalog of their opening posts with the time of their last post."""

    def __init__(self, *threads: list[dict[str, Any]]) -> None:
        self.threads = {posts[0]["num"]: list(posts) for posts in threads}
        self.etag = ""
        self.missing: set[int] = set()

    async def catalog(self, request: web.Request) -> web.StreamResponse:
        headers = {"ETag": self.etag} if self.etag else {}
        if self.etag and request.headers.get("If-None-Match") == self.etag:
            return web.Response(status=304, headers=headers)
        listed = [
            posts[0] | {"lasthit": max(p["timestamp"] for p in posts), "posts_count": len(posts)}
            for posts in self.threads.values()
        ]
        return web.json_response({"board": BOARD, "filter": "standart", "threads": listed}, headers=headers)

    async def thread(self, request: web.Request) -> web.StreamResponse:
        num = int(request.match_info["num"])
        if num not in self.threads or num in self.missing:
            return web.json_response({"error": {"code": -3, "message": "Тред не найден"}}, status=404)
        posts = self.threads[num]
        body = {
            "board": BOARD,
            "current_thread": num,
            "is_board": False,
            "is_closed": 0,
            "max_num": posts[-1]["num"],
            "posts_count": len(posts),
            "threads": [{"posts": posts}],
            "title": posts[0]["subject"],
            "unique_posters": 2,
        }
        return web.json_response(body)

    def routes(self) -> dict[tuple[str, str], Any]:
        return {("GET", CATALOG_PATH): self.catalog, ("GET", THREAD_PATH): self.thread}


def settings(server: LocalHttpServer, **overrides: Any) -> DvachSourceSettings:
    values: dict[str, Any] = {"kind": "dvach", "name": "dvach-b", "base_url": server.base_url, "board": "b"}
    return DvachSourceSettings(**(values | overrides))


def thread_reads(server: LocalHttpServer) -> list[str]:
    return [r.path for r in server.requests if "/res/" in r.path]


def two_threads() -> FakeDvach:
    courier = [
        board_post(300, 300, 1, "Курьеры СеверЭкспресс <strong>опять</strong> потеряли заказ", subject="СеверЭкспресс"),
        board_post(
            302,
            300,
            3,
            '<a href="/b/res/300.html#300" class="post-reply-link" data-thread="300" data-num="300">&gt;&gt;300</a>'
            "<br>У меня так же, третья неделя",
            name="Аноним",
            trip="!!KoTik",
        ),
    ]
    kettle = [board_post(301, 301, 2, "Чайник Фьорд течёт после недели"), board_post(303, 301, 4, "Верни по гарантии")]
    return FakeDvach(courier, kettle)


async def test_catalog_threads_become_posts_with_board_ids_urls_and_thread_ids(http: OutboundClient) -> None:
    board = two_threads()
    async with serve(board.routes()) as server:
        poll = await DvachSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [p.native_id for p in poll.posts] == ["b/300", "b/301", "b/302", "b/303"]
    opening, _, reply, _ = poll.posts
    assert opening.text == "СеверЭкспресс\n\nКурьеры СеверЭкспресс опять потеряли заказ"
    assert opening.url == "https://2ch.hk/b/res/300.html#300"
    assert opening.thread_id == "b/300"
    assert opening.created_at == SINCE + timedelta(minutes=1)
    assert (opening.author_handle, opening.author_name) == ("", "Аноним")
    assert reply.text == ">>300\nУ меня так же, третья неделя"
    assert reply.url == "https://2ch.hk/b/res/300.html#302"
    assert (reply.author_handle, reply.thread_id) == ("!!KoTik", "b/300")


async def test_subject_that_only_repeats_the_start_of_the_text_is_not_doubled(http: OutboundClient) -> None:
    board = FakeDvach([board_post(300, 300, 1, "Фьорд течёт, и это брак", subject="Фьорд течёт")])
    async with serve(board.routes()) as server:
        poll = await DvachSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [p.text for p in poll.posts] == ["Фьорд течёт, и это брак"]


async def test_first_poll_takes_posts_from_since_and_skips_threads_quiet_since_then(http: OutboundClient) -> None:
    old = [board_post(100, 100, -120), board_post(101, 100, -90)]
    mixed = [board_post(200, 200, -60), board_post(201, 200, 5, "Фьорд не отвечает на письма")]
    board = FakeDvach(old, mixed)
    async with serve(board.routes()) as server:
        poll = await DvachSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [p.native_id for p in poll.posts] == ["b/201"]
    assert thread_reads(server) == ["/b/res/200.json"]


async def test_next_poll_reads_only_threads_with_new_posts_and_takes_only_those(http: OutboundClient) -> None:
    board = two_threads()
    async with serve(board.routes()) as server:
        source = DvachSource(settings(server))
        first = await source.poll(http, SourceState(), since=SINCE)
        board.threads[301].append(board_post(304, 301, 6, "Сервис Фьорд молчит"))
        server.requests.clear()
        second = await source.poll(http, first.state, since=SINCE)
    assert [p.native_id for p in second.posts] == ["b/304"]
    assert thread_reads(server) == ["/b/res/301.json"]


async def test_unchanged_catalog_answers_304_and_no_thread_is_read(http: OutboundClient) -> None:
    board = two_threads()
    board.etag = '"catalog-1"'
    async with serve(board.routes()) as server:
        source = DvachSource(settings(server))
        first = await source.poll(http, SourceState(), since=SINCE)
        server.requests.clear()
        second = await source.poll(http, first.state, since=SINCE)
    assert second.not_modified
    assert second.posts == []
    assert [r.path for r in server.requests] == [CATALOG_PATH]
    assert server.requests[0].headers["If-None-Match"] == '"catalog-1"'


async def test_threads_beyond_the_bound_wait_for_the_next_poll_which_reads_the_catalog_again(
    http: OutboundClient,
) -> None:
    board = FakeDvach(*([board_post(n, n, n - 299, f"Жалоба номер {n}")] for n in (300, 301, 302)))
    board.etag = '"catalog-1"'
    async with serve(board.routes()) as server:
        source = DvachSource(settings(server, max_threads_per_poll=2))
        first = await source.poll(http, SourceState(), since=SINCE)
        second = await source.poll(http, first.state, since=SINCE)
    # Most recently active first; the thread left over is read next, though the catalog did not change.
    assert [p.native_id for p in first.posts] == ["b/301", "b/302"]
    assert [p.native_id for p in second.posts] == ["b/300"]
    assert "If-None-Match" not in server.requests[3].headers


async def test_named_threads_are_read_without_the_catalog(http: OutboundClient) -> None:
    board = two_threads()
    async with serve(board.routes()) as server:
        poll = await DvachSource(settings(server, threads=[301])).poll(http, SourceState(), since=SINCE)
    assert [r.path for r in server.requests] == ["/b/res/301.json"]
    assert [p.native_id for p in poll.posts] == ["b/301", "b/303"]


async def test_a_named_thread_that_is_gone_is_skipped_while_another_answers(http: OutboundClient) -> None:
    board = two_threads()
    board.missing = {300}
    async with serve(board.routes()) as server:
        poll = await DvachSource(settings(server, threads=[300, 301])).poll(http, SourceState(), since=SINCE)
    assert [p.native_id for p in poll.posts] == ["b/301", "b/303"]


async def test_named_threads_all_gone_is_a_permanent_error_naming_them(http: OutboundClient) -> None:
    board = two_threads()
    board.missing = {300, 301}
    async with serve(board.routes()) as server:
        with pytest.raises(ApiRefusedError, match=r"^dvach source dvach-b: threads 300, 301 of /b/ are gone \(404\)"):
            await DvachSource(settings(server, threads=[300, 301])).poll(http, SourceState(), since=SINCE)


async def test_post_with_a_picture_and_no_text_is_skipped(http: OutboundClient) -> None:
    picture = board_post(301, 300, 2, "", files=[{"name": "1.jpg", "path": "/b/src/300/1.jpg"}])
    board = FakeDvach([board_post(300, 300, 1), picture])
    async with serve(board.routes()) as server:
        poll = await DvachSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [p.native_id for p in poll.posts] == ["b/300"]


async def test_thread_that_is_not_json_is_a_source_format_error_naming_the_thread(http: OutboundClient) -> None:
    board = two_threads()
    routes = board.routes() | {("GET", THREAD_PATH): answering(b'{"threads": [{"posts": [{"num": 3')}
    async with serve(routes) as server:
        with pytest.raises(SourceFormatError, match=r"^dvach source dvach-b \(thread 30[01]\): invalid JSON"):
            await DvachSource(settings(server)).poll(http, SourceState(), since=SINCE)


async def test_thread_without_posts_is_a_source_format_error(http: OutboundClient) -> None:
    routes = two_threads().routes() | {("GET", THREAD_PATH): answering(json.dumps({"threads": []}).encode())}
    async with serve(routes) as server:
        with pytest.raises(SourceFormatError, match="'posts' list"):
            await DvachSource(settings(server)).poll(http, SourceState(), since=SINCE)


async def test_catalog_without_threads_is_a_source_format_error(http: OutboundClient) -> None:
    async with serve({("GET", CATALOG_PATH): answering(json.dumps({"board": BOARD}).encode())}) as server:
        with pytest.raises(SourceFormatError, match="'threads' list"):
            await DvachSource(settings(server)).poll(http, SourceState(), since=SINCE)


async def test_thread_answering_503_fails_the_poll_with_the_wait_asked(http: OutboundClient) -> None:
    busy = answering(b"<html>503</html>", status=503, content_type="text/html", headers={"Retry-After": "120"})
    routes = two_threads().routes() | {("GET", THREAD_PATH): busy}
    state = SourceState()
    async with serve(routes) as server:
        with pytest.raises(OutboundError) as failed:
            await DvachSource(settings(server)).poll(http, state, since=SINCE)
    assert failed.value.retry_after_s == 120.0
    assert state.cursor == ""


async def test_unreadable_cursor_reads_every_thread_again_from_since(http: OutboundClient) -> None:
    board = two_threads()
    async with serve(board.routes()) as server:
        poll = await DvachSource(settings(server)).poll(http, SourceState(cursor="{not json"), since=SINCE)
    assert [p.native_id for p in poll.posts] == ["b/300", "b/301", "b/302", "b/303"]
    assert json.loads(poll.state.cursor).keys() == {"300", "301"}


class TestDvachLikeEveryJsonSource(JsonSourceCases):
    path, what, since = CATALOG_PATH, "dvach source dvach-b", SINCE

    def source(self, server: LocalHttpServer) -> DvachSource:
        return DvachSource(settings(server))
