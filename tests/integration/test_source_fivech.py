"""FivechSource against a local board that serves subject.txt and dat files as 5ch does: Shift_JIS
(cp932), ``<>``-separated fields, byte ranges for what a thread gained."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from services.listener.config import FivechSourceSettings
from services.listener.errors import SourceFormatError
from services.listener.sources.base import Poll, SourceState
from services.listener.sources.fivech import FivechSource
from services.shared.outbound import OutboundClient, OutboundError
from tests.http_server import LocalHttpServer, serve
from tests.integration.source_cases import SourceCases

SINCE = datetime(2026, 11, 19, tzinfo=UTC)
TEXT_PLAIN = "text/plain"
DELETED = "あぼーん<>あぼーん<>あぼーん<>あぼーん<>"
DELIVERY = "1763600000"
COFFEE = "1763610000"
PHONE = "1763620000"


def line(name: str, stamp: str, body: str, *, mail: str = "", title: str = "") -> str:
    return f"{name}<>{mail}<>{stamp}<> {body} <>{title}"


DELIVERY_POSTS = [
    line(
        "名無しさん </b>◆Tr1pK3y0AB <b>",
        "2026/11/20(金) 12:34:56.78 ID:Ab1Cd2Ef0",
        "ミドリ運輸の荷物が三日も届かない。 <br> 追跡番号も「調査中」のまま &gt;_&lt;",
        mail="sage",
        title="ミドリ運輸の配達遅延について\t",
    ),
    line(
        "名無しさん",
        "2026/11/20(金) 12:40:01.02 ID:Zz9Yy8Xx0",
        '<a href="../test/read.cgi/news/1763600000/1" rel="noopener noreferrer" target="_blank">&gt;&gt;1</a>'
        " <br> うちも同じ。問い合わせ窓口に電話しても繋がらない",
    ),
    DELETED,
    line("<b>配送マニア</b>", "2026/11/20(金) 13:05:00.00 ID:Qq1Ww2Ee0", "返金対応も遅い。①と②の注文が両方ダメだった"),
]
COFFEE_POSTS = [
    line(
        "珈琲好き",
        "2026/11/20(金) 18:00:00.00 ID:Cf1Cf2Cf0",
        "拾光コーヒーの豆、焙煎日が半年前だった",
        title="拾光コーヒーの豆が古い",
    ),
    line("名無しさん", "2026/11/20(金) 18:10:30.50 ID:Cf3Cf4Cf0", "髙島屋の店舗でも同じロットが売られてる"),
]


def new_post(text: str, minute: int = 0) -> str:
    return line("名無しさん", f"2026/11/21(土) 09:{minute:02d}:00.00 ID:Nn1Nn2Nn0", text)


class FakeBoard:
    """One board, "news": threads in bump order, each a list of dat lines, served in ``encoding``."""

    def __init__(self, encoding: str = "cp932") -> None:
        self.encoding = encoding
        self.threads: dict[str, list[str]] = {DELIVERY: list(DELIVERY_POSTS), COFFEE: list(COFFEE_POSTS)}
        self.titles = {DELIVERY: "ミドリ運輸の配達遅延について", COFFEE: "拾光コーヒーの豆が古い"}
        self.titles[PHONE] = "スマホの修理"
        self.honour_ranges = True
        self.refusals: dict[str, web.Response] = {}
        self.last_modified = "Sat, 21 Nov 2026 00:00:00 GMT"
        self.subject_extra = ""
        self.content_type = TEXT_PLAIN

    def dat(self, key: str) -> bytes:
        return "".join(f"{entry}\n" for entry in self.threads[key]).encode(self.encoding)

    def post(self, key: str, entry: str) -> None:
        """A new post: its thread goes to the top of subject.txt, which is then newer."""
        self.threads = {key: [*self.threads.get(key, []), entry], **{k: v for k, v in self.threads.items() if k != key}}
        self.last_modified = "Sat, 21 Nov 2026 00:05:00 GMT"

    async def subject(self, request: web.Request) -> web.StreamResponse:
        if "subject" in self.refusals:
            return self.refusals["subject"]
        if request.headers.get("If-Modified-Since") == self.last_modified:
            return web.Response(status=304)
        listing = "".join(f"{key}.dat<>{self.titles[key]} ({len(posts)})\n" for key, posts in self.threads.items())
        body = (listing + self.subject_extra).encode(self.encoding)
        return web.Response(body=body, headers={"Content-Type": self.content_type, "Last-Modified": self.last_modified})

    async def dat_file(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        if key in self.refusals:
            return self.refusals[key]
        if key not in self.threads:
            return web.Response(status=404, text="not found")
        body = self.dat(key)
        wanted = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
        if wanted is None or not self.honour_ranges:
            return web.Response(body=body, headers={"Content-Type": self.content_type})
        start = int(wanted[1])
        if start >= len(body):
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(body)}"})
        headers = {"Content-Type": self.content_type, "Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
        return web.Response(status=206, body=body[start:], headers=headers)

    def routes(self) -> dict[tuple[str, str], Any]:
        return {("GET", "/news/subject.txt"): self.subject, ("GET", "/news/dat/{key}.dat"): self.dat_file}


def settings(server: LocalHttpServer, **overrides: Any) -> FivechSourceSettings:
    values: dict[str, Any] = {"kind": "fivech", "name": "news-board", "base_url": server.base_url, "board": "news"}
    return FivechSourceSettings(**(values | overrides))


async def poll_twice(
    http: OutboundClient, board: FakeBoard, between: Any, **overrides: Any
) -> tuple[Poll, Poll, LocalHttpServer]:
    async with serve(board.routes()) as server:
        source = FivechSource(settings(server, **overrides))
        first = await source.poll(http, SourceState(), since=SINCE)
        between()
        server.requests.clear()
        second = await source.poll(http, first.state, since=SINCE)
    return first, second, server


async def first_poll(http: OutboundClient, board: FakeBoard, **overrides: Any) -> tuple[Poll, LocalHttpServer]:
    async with serve(board.routes()) as server:
        poll = await FivechSource(settings(server, **overrides)).poll(http, SourceState(), since=SINCE)
    return poll, server


async def test_first_poll_reads_every_thread_and_skips_deleted_posts(http: OutboundClient) -> None:
    poll, _ = await first_poll(http, FakeBoard())

    assert [post.native_id for post in poll.posts] == [
        f"news/{DELIVERY}/1",
        f"news/{DELIVERY}/2",
        f"news/{DELIVERY}/4",
        f"news/{COFFEE}/1",
        f"news/{COFFEE}/2",
    ]


async def test_first_post_carries_the_title_trip_id_and_japan_time(http: OutboundClient) -> None:
    poll, server = await first_poll(http, FakeBoard())

    first = poll.posts[0]
    assert first.text == (
        "ミドリ運輸の配達遅延について\n\nミドリ運輸の荷物が三日も届かない。\n追跡番号も「調査中」のまま >_<"
    )
    assert (first.author_name, first.author_handle) == ("名無しさん", "◆Tr1pK3y0AB")
    assert first.created_at == datetime(2026, 11, 20, 3, 34, 56, 780000, tzinfo=UTC)
    assert first.thread_id == f"news/{DELIVERY}"
    assert first.url == server.url(f"/test/read.cgi/news/{DELIVERY}/1")
    assert first.language == "ja"


async def test_reply_keeps_its_anchor_as_text_and_its_id_as_handle(http: OutboundClient) -> None:
    poll, _ = await first_poll(http, FakeBoard())

    reply = poll.posts[1]
    assert reply.text == ">>1\nうちも同じ。問い合わせ窓口に電話しても繋がらない"
    assert (reply.author_name, reply.author_handle) == ("名無しさん", "Zz9Yy8Xx0")


async def test_names_lose_their_markup_and_cp932_characters_survive(http: OutboundClient) -> None:
    poll, _ = await first_poll(http, FakeBoard())

    posts = {post.native_id: post for post in poll.posts}
    assert posts[f"news/{DELIVERY}/4"].author_name == "配送マニア"
    assert posts[f"news/{DELIVERY}/4"].text == "返金対応も遅い。①と②の注文が両方ダメだった"
    assert posts[f"news/{COFFEE}/2"].text == "髙島屋の店舗でも同じロットが売られてる"


async def test_requests_name_the_client_as_5ch_asks(http: OutboundClient) -> None:
    _, server = await first_poll(http, FakeBoard())

    assert [request.path for request in server.requests] == [
        "/news/subject.txt",
        f"/news/dat/{DELIVERY}.dat",
        f"/news/dat/{COFFEE}.dat",
    ]
    assert {request.headers["User-Agent"] for request in server.requests} == {"Monazilla/1.00 clamor-listener/0.1"}


async def test_re_poll_asks_only_for_the_bytes_a_thread_gained(http: OutboundClient) -> None:
    board = FakeBoard()
    size = len(board.dat(DELIVERY))

    _, second, server = await poll_twice(
        http, board, lambda: board.post(DELIVERY, new_post("まだ届かない。明日で一週間"))
    )

    assert [post.native_id for post in second.posts] == [f"news/{DELIVERY}/5"]
    assert second.posts[0].text == "まだ届かない。明日で一週間"
    assert [request.path for request in server.requests] == ["/news/subject.txt", f"/news/dat/{DELIVERY}.dat"]
    assert server.requests[1].headers["Range"] == f"bytes={size - 1}-"
    assert server.requests[1].headers["Accept-Encoding"] == "identity"


async def test_re_poll_of_an_unchanged_board_is_answered_not_modified(http: OutboundClient) -> None:
    board = FakeBoard()

    _, second, server = await poll_twice(http, board, lambda: None)

    assert second.not_modified
    assert second.posts == []
    assert [request.path for request in server.requests] == ["/news/subject.txt"]
    assert server.requests[0].headers["If-Modified-Since"] == board.last_modified


async def test_thread_rewritten_by_a_deletion_is_read_whole_and_only_new_posts_taken(http: OutboundClient) -> None:
    board = FakeBoard()
    size = len(board.dat(DELIVERY))

    def delete_and_post() -> None:
        board.threads[DELIVERY][1] = DELETED
        board.post(DELIVERY, new_post("削除されたレスがあるね"))

    _, second, server = await poll_twice(http, board, delete_and_post)

    assert [post.native_id for post in second.posts] == [f"news/{DELIVERY}/5"]
    # The range no longer begins with the newline that ended the last post read: the file is read whole.
    assert [request.headers.get("Range") for request in server.requests[1:]] == [f"bytes={size - 1}-", None]


async def test_server_that_ignores_ranges_still_yields_only_new_posts(http: OutboundClient) -> None:
    board = FakeBoard()
    board.honour_ranges = False

    _, second, _ = await poll_twice(http, board, lambda: board.post(COFFEE, new_post("交換してもらえた人いる？")))

    assert [post.native_id for post in second.posts] == [f"news/{COFFEE}/3"]


async def test_threads_per_poll_are_bounded_and_the_rest_read_next_time(http: OutboundClient) -> None:
    board = FakeBoard()
    stamp = "2026/11/20(金) 20:00:00.00 ID:Ph1Ph2Ph0"
    board.threads[PHONE] = [line("名無しさん", stamp, "画面が割れたまま", title="スマホの修理")]

    first, second, server = await poll_twice(http, board, lambda: None, max_threads_per_poll=2)

    assert {post.thread_id for post in first.posts} == {f"news/{DELIVERY}", f"news/{COFFEE}"}
    assert [post.native_id for post in second.posts] == [f"news/{PHONE}/1"]
    # Threads were left unread, so the board is asked again although it says nothing changed.
    assert "If-Modified-Since" not in server.requests[0].headers
    assert [request.path for request in server.requests[1:]] == [f"/news/dat/{PHONE}.dat"]


async def test_thread_first_met_is_read_from_since_on(http: OutboundClient) -> None:
    board = FakeBoard()
    last_year = line("古参", "2025/01/05(日) 10:00:00.00 ID:Old0Old00", "去年も遅れた", title="古い")
    board.threads[DELIVERY].insert(0, last_year)

    poll, _ = await first_poll(http, board)

    assert f"news/{DELIVERY}/1" not in {post.native_id for post in poll.posts}
    assert f"news/{DELIVERY}/2" in {post.native_id for post in poll.posts}


async def test_malformed_dat_lines_are_skipped_and_numbering_kept(http: OutboundClient) -> None:
    board = FakeBoard()
    board.threads[COFFEE].insert(1, "壊れた行")

    poll, _ = await first_poll(http, board)

    assert [post.native_id for post in poll.posts if post.thread_id == f"news/{COFFEE}"] == [
        f"news/{COFFEE}/1",
        f"news/{COFFEE}/3",
    ]


async def test_thread_that_is_not_a_dat_file_is_skipped_and_the_others_read(http: OutboundClient) -> None:
    board = FakeBoard()
    board.refusals[DELIVERY] = web.Response(body="<html><body>過去ログ倉庫へ</body></html>\n".encode("cp932"))

    async with serve(board.routes()) as server:
        source = FivechSource(settings(server))
        poll = await source.poll(http, SourceState(), since=SINCE)

    assert {post.thread_id for post in poll.posts} == {f"news/{COFFEE}"}
    assert source.skipped_threads == 1


async def test_thread_gone_from_the_server_is_skipped(http: OutboundClient) -> None:
    board = FakeBoard()
    board.refusals[DELIVERY] = web.Response(status=404, text="Not Found")

    poll, _ = await first_poll(http, board)

    assert {post.thread_id for post in poll.posts} == {f"news/{COFFEE}"}


async def test_subject_lines_that_are_not_threads_are_skipped(http: OutboundClient) -> None:
    board = FakeBoard()
    board.subject_extra = "広告<>ここはスレッドではありません\n"

    poll, _ = await first_poll(http, board)

    assert len(poll.posts) == 5


async def test_subject_without_any_thread_line_is_a_format_error(http: OutboundClient) -> None:
    board = FakeBoard()
    board.refusals["subject"] = web.Response(body="<html>人大杉</html>".encode("cp932"), content_type="text/html")

    with pytest.raises(SourceFormatError, match=r"fivech source news-board \(board news\): subject.txt has no thread"):
        await first_poll(http, board)


async def test_refused_dat_ends_the_poll_with_what_was_read_and_the_wait(http: OutboundClient) -> None:
    board = FakeBoard()
    board.refusals[COFFEE] = web.Response(status=503, text="busy", headers={"Retry-After": "120"})

    async with serve(board.routes()) as server:
        source = FivechSource(settings(server))
        first = await source.poll(http, SourceState(), since=SINCE)
        del board.refusals[COFFEE]
        second = await source.poll(http, first.state, since=SINCE)

    assert first.wait_s == 120.0
    assert {post.thread_id for post in first.posts} == {f"news/{DELIVERY}"}
    assert [post.native_id for post in second.posts] == [f"news/{COFFEE}/1", f"news/{COFFEE}/2"]


async def test_refused_first_dat_fails_the_poll_with_the_wait(http: OutboundClient) -> None:
    board = FakeBoard()
    board.refusals[DELIVERY] = web.Response(status=429, text="slow down", headers={"Retry-After": "30"})

    with pytest.raises(OutboundError) as raised:
        await first_poll(http, board)

    assert raised.value.retry_after_s == 30.0


async def test_mirror_serving_utf8_with_a_declared_charset_is_read(http: OutboundClient) -> None:
    board = FakeBoard(encoding="utf-8")
    board.content_type = "text/plain; charset=UTF-8"

    poll, _ = await first_poll(http, board)

    assert poll.posts[-1].text == "髙島屋の店舗でも同じロットが売られてる"


async def test_board_in_euc_jp_is_read_by_the_encoding_setting(http: OutboundClient) -> None:
    board = FakeBoard(encoding="euc-jp")
    board.threads = {COFFEE: board.threads[COFFEE][:1]}

    poll, _ = await first_poll(http, board, encoding="euc-jp")

    assert poll.posts[0].text == "拾光コーヒーの豆が古い\n\n拾光コーヒーの豆、焙煎日が半年前だった"


async def test_threads_that_leave_the_board_are_forgotten(http: OutboundClient) -> None:
    board = FakeBoard()

    def drop_delivery() -> None:
        del board.threads[DELIVERY]
        board.post(COFFEE, new_post("まだ売ってる"))

    _, second, _ = await poll_twice(http, board, drop_delivery)

    assert DELIVERY not in second.state.cursor
    assert COFFEE in second.state.cursor


def test_unknown_encoding_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="encoding"):
        FivechSourceSettings(kind="fivech", name="b", base_url="https://board.example", board="news", encoding="x-no")


class TestFivechLikeEverySource(SourceCases):
    path = "/news/subject.txt"

    def source(self, server: LocalHttpServer) -> FivechSource:
        return FivechSource(settings(server))
