"""RssSource against a real local HTTP server serving feeds written for these tests (tests/data/feeds)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from services.listener.config import RssSourceSettings
from services.listener.errors import SourceFormatError
from services.listener.sources.base import Poll, Post, SourceState
from services.listener.sources.rss import RssSource
from services.shared.outbound import BlockedAddressError, FetchLimits, OutboundClient, ResponseTooLargeError
from tests.http_server import Handler, LocalHttpServer, serve
from tests.integration.source_cases import SourceCases, answering, outbound

FEEDS = Path(__file__).resolve().parent.parent / "data" / "feeds"
SINCE = datetime(2024, 1, 1, tzinfo=UTC)
RSS_TYPE = "application/rss+xml"


def feed(name: str) -> bytes:
    return (FEEDS / name).read_bytes()


def settings_for(url: str, *, max_body_bytes: int = 5 * 1024 * 1024) -> RssSourceSettings:
    return RssSourceSettings(name="acme-forum", kind="rss", url=url, platform="forum", max_body_bytes=max_body_bytes)


def client_for(settings: RssSourceSettings, *, allow: tuple[str, ...] = ("127.0.0.1",)) -> OutboundClient:
    return outbound(allow=allow, limits=FetchLimits(max_bytes=settings.max_body_bytes, timeout_s=settings.timeout_s))


def answering_feed(body: bytes) -> Handler:
    return answering(body, content_type=RSS_TYPE)


@asynccontextmanager
async def feed_server(handler: Handler) -> AsyncIterator[LocalHttpServer]:
    async with serve({("GET", "/feed"): handler}) as server:
        yield server


async def poll(server: LocalHttpServer, state: SourceState | None = None, *, max_body_bytes: int = 1 << 20) -> Poll:
    settings = settings_for(server.url("/feed"), max_body_bytes=max_body_bytes)
    async with client_for(settings) as http:
        return await RssSource(settings).poll(http, state or SourceState(), since=SINCE)


async def poll_body(body: bytes, state: SourceState | None = None) -> Poll:
    async with feed_server(answering_feed(body)) as server:
        return await poll(server, state)


def by_id(posts: list[Post]) -> dict[str, Post]:
    return {post.native_id: post for post in posts}


async def test_rss_item_becomes_a_post_with_plain_text_author_time_and_language() -> None:
    result = await poll_body(feed("acme_forum_rss20.xml"))

    assert by_id(result.posts)["acme-forum-topic-1001"] == Post(
        native_id="acme-forum-topic-1001",
        text=(
            "Parcel stuck at the Riverside depot for a week\n\n"
            "My parcel has been stuck at the Riverside depot since Monday.\n"
            'Support keeps saying "wait" & nothing happens.'
        ),
        url="https://forum.acme-parcel.example/t/1001",
        author_handle="Dana Reyes",
        author_name="Dana Reyes",
        created_at=datetime(2024, 1, 2, 9, 30, tzinfo=UTC),
        language="en",
    )


async def test_rss_cdata_html_loses_tags_and_scripts() -> None:
    result = await poll_body(feed("acme_forum_rss20.xml"))

    post = by_id(result.posts)["acme-forum-topic-1002"]
    assert post.text == (
        "Driver left my order in the rain\n\nThree things went wrong:\nno knock\nbox left on the step\n"
        "photo shows the wrong house"
    )
    assert post.author_name == "kwame_o"
    assert post.created_at == datetime(2024, 1, 3, 13, 0, tzinfo=UTC)


async def test_rss_item_without_guid_is_identified_by_its_link_as_written() -> None:
    async with feed_server(answering_feed(feed("acme_forum_rss20.xml"))) as server:
        result = await poll(server)

    post = by_id(result.posts)["/t/1003"]
    assert post.url == server.url("/t/1003")


async def test_rss_item_without_guid_or_link_gets_the_same_hash_id_every_time() -> None:
    first = await poll_body(feed("acme_forum_rss20.xml"))
    again = await poll_body(feed("acme_forum_rss20.xml"))

    hashed = [post.native_id for post in first.posts if post.native_id.startswith("sha256:")]
    assert len(hashed) == 1
    assert hashed == [post.native_id for post in again.posts if post.native_id.startswith("sha256:")]


async def test_rss_link_that_is_not_http_is_dropped() -> None:
    result = await poll_body(feed("acme_forum_rss20.xml"))

    assert by_id(result.posts)["acme-forum-topic-1005"].url == ""


async def test_first_poll_skips_entries_older_than_since_but_remembers_them() -> None:
    result = await poll_body(feed("acme_forum_rss20.xml"))

    assert "acme-forum-topic-0990" not in by_id(result.posts)
    assert len(result.posts) == 5
    assert result.state.is_seen("acme-forum-topic-0990")
    assert result.state.cursor == "2024-01-06T07:00:00+00:00"


async def test_atom_japanese_feed_becomes_posts_in_japanese() -> None:
    result = await poll_body(feed("acme_reviews_ja_atom10.xml"))

    posts = by_id(result.posts)
    assert posts["urn:example:acme-reviews-ja:3001"] == Post(
        native_id="urn:example:acme-reviews-ja:3001",
        text="配達が遅すぎる\n\n注文してから 一週間 経っても届きません。\n問い合わせにも返事がない。",
        url="https://reviews.example/acme/ja/3001",
        author_handle="山田花子",
        author_name="山田花子",
        created_at=datetime(2024, 1, 3, 1, 0, tzinfo=UTC),
        language="ja",
    )
    assert posts["urn:example:acme-reviews-ja:3002"].text == "アプリが起動しない\n\n更新後、毎回クラッシュします。"


async def test_atom_entry_without_published_is_dated_by_updated() -> None:
    result = await poll_body(feed("acme_reviews_ja_atom10.xml"))

    post = by_id(result.posts)["urn:example:acme-reviews-ja:3002"]
    assert post.created_at == datetime(2024, 1, 4, 12, 30, tzinfo=UTC)


async def test_atom_entry_language_overrides_the_feed_language() -> None:
    result = await poll_body(feed("acme_reviews_ja_atom10.xml"))

    assert by_id(result.posts)["urn:example:acme-reviews-ja:3003"].language == "en"


async def test_chinese_feed_has_primary_language_zh_and_plain_text() -> None:
    result = await poll_body(feed("acme_weibo_zh_rss20.xml"))

    post = by_id(result.posts)["zh-2001"]
    assert post.text == "快递三天没有更新物流信息\n\n包裹在上海转运中心停了三天，客服电话一直打不通。"
    assert post.language == "zh"
    assert post.author_name == "小李"


async def test_feed_in_a_legacy_chinese_encoding_is_decoded() -> None:
    utf8 = feed("acme_weibo_zh_rss20.xml").decode("utf-8")
    gb2312 = utf8.replace('encoding="UTF-8"', 'encoding="GB2312"').encode("gb2312")

    result = await poll_body(gb2312)

    assert by_id(result.posts)["zh-2002"].text == "外包装破损，商品受潮\n\n收到的时候箱子已经湿透了，要求赔偿。"


async def test_second_poll_returns_only_entries_new_since_the_first() -> None:
    pages = [feed("acme_forum_rss20.xml"), feed("acme_forum_rss20_next.xml")]

    async def next_page(request: web.Request) -> web.StreamResponse:
        return web.Response(body=pages.pop(0), content_type=RSS_TYPE)

    async with feed_server(next_page) as server:
        first = await poll(server)
        second = await poll(server, first.state)

    assert [post.native_id for post in second.posts] == ["acme-forum-topic-1006", "acme-forum-topic-1007"]
    assert second.state.cursor == "2024-01-08T10:00:00+00:00"


async def test_poll_leaves_the_state_it_was_given_unchanged() -> None:
    state = SourceState()

    result = await poll_body(feed("acme_forum_rss20.xml"), state)

    assert state == SourceState()
    assert result.state.seen


async def test_etag_answered_with_304_means_not_modified_and_no_posts() -> None:
    async def with_etag(request: web.Request) -> web.StreamResponse:
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.Response(body=feed("acme_forum_rss20.xml"), content_type=RSS_TYPE, headers={"ETag": '"v1"'})

    async with feed_server(with_etag) as server:
        first = await poll(server)
        second = await poll(server, first.state)

    assert second.not_modified
    assert second.posts == []
    assert "If-None-Match" not in server.requests[0].headers
    assert server.requests[1].headers["If-None-Match"] == '"v1"'


async def test_last_modified_answered_with_304_means_not_modified_and_no_posts() -> None:
    stamp = "Sat, 06 Jan 2024 07:00:00 GMT"

    async def with_last_modified(request: web.Request) -> web.StreamResponse:
        if request.headers.get("If-Modified-Since") == stamp:
            return web.Response(status=304)
        return web.Response(body=feed("acme_forum_rss20.xml"), content_type=RSS_TYPE, headers={"Last-Modified": stamp})

    async with feed_server(with_last_modified) as server:
        first = await poll(server)
        second = await poll(server, first.state)

    assert second.not_modified
    assert second.posts == []
    assert server.requests[1].headers["If-Modified-Since"] == stamp


async def test_malformed_xml_without_entries_is_a_format_error() -> None:
    with pytest.raises(SourceFormatError, match="feed acme-forum: not well-formed XML"):
        await poll_body(feed("not_a_feed.xml"))


async def test_feed_truncated_mid_element_is_a_format_error() -> None:
    whole = feed("acme_forum_rss20.xml")
    cut = whole[: whole.index(b"<title>Courier app") + len(b"<title>Cour")]

    with pytest.raises(SourceFormatError, match="feed acme-forum: the document is truncated"):
        await poll_body(cut)


async def test_feed_with_a_bare_ampersand_still_yields_its_entries() -> None:
    sloppy = feed("acme_forum_rss20.xml").replace(b"order in the rain", b"order in the rain & wind")

    result = await poll_body(sloppy)

    assert len(result.posts) == 5


@pytest.mark.timeout(10)
async def test_billion_laughs_feed_is_refused_before_expansion() -> None:
    with pytest.raises(SourceFormatError, match="entity declarations are refused"):
        await poll_body(feed("billion_laughs.xml"))


async def test_external_entity_feed_is_refused() -> None:
    with pytest.raises(SourceFormatError, match="feed acme-forum: entity declarations are refused"):
        await poll_body(feed("external_entity.xml"))


async def test_entity_declaration_in_an_encoding_expat_cannot_read_is_refused() -> None:
    declaration = b'<?xml version="1.0" encoding="Shift_JIS"?>'
    shift_jis = feed("external_entity.xml").replace(b'<?xml version="1.0"?>', declaration)

    with pytest.raises(SourceFormatError, match="entity declarations are refused"):
        await poll_body(shift_jis)


async def test_body_over_max_body_bytes_is_refused_unread() -> None:
    oversized = feed("acme_forum_rss20.xml") * 4

    async with feed_server(answering_feed(oversized)) as server:
        with pytest.raises(ResponseTooLargeError):
            await poll(server, max_body_bytes=2048)


async def test_redirect_to_a_loopback_address_that_is_not_allowed_is_blocked() -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"http://127.0.0.1:{request.url.port}/feed")

    routes = {("GET", "/"): redirect, ("GET", "/feed"): answering_feed(feed("acme_forum_rss20.xml"))}
    async with serve(routes) as server:
        settings = settings_for(f"http://localhost:{server.port}/")
        async with client_for(settings, allow=("localhost",)) as http:
            with pytest.raises(BlockedAddressError, match=r"127\.0\.0\.1"):
                await RssSource(settings).poll(http, SourceState(), since=SINCE)

    assert [request.path for request in server.requests] == ["/"]


def test_platform_label_comes_from_the_settings() -> None:
    source = RssSource(settings_for("https://forum.acme-parcel.example/feed"))

    assert RssSource.platform == "rss"
    assert source.platform == "forum"


class TestRssLikeEverySource(SourceCases):
    path = "/feed"

    def source(self, server: LocalHttpServer) -> RssSource:
        return RssSource(settings_for(server.url(self.path)))
