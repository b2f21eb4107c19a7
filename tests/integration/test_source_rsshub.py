"""RsshubSource against a real local HTTP server answering as an RSSHub instance does (tests/data/rsshub):
RSS 2.0 and JSON Feed 1.1 bodies for four routes, its cache headers, its errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from services.listener.config import RsshubSourceSettings
from services.listener.errors import SourceFormatError
from services.listener.sources.base import Poll, Post, SourceState
from services.listener.sources.rsshub import RsshubSource
from services.shared.outbound import OutboundError
from tests.http_server import Handler, LocalHttpServer, serve
from tests.integration.source_cases import SourceCases, answering, outbound

DATA = Path(__file__).resolve().parent.parent / "data" / "rsshub"
SINCE = datetime(2026, 3, 1, tzinfo=UTC)
RSS_TYPE = "application/xml"
JSON_FEED_TYPE = "application/feed+json"
WEIBO = "/weibo/keyword/云雀航空"
ZHIHU = "/zhihu/question/600000001"
XIAOHONGSHU = "/xiaohongshu/user/5f0000000000000000000001/notes"
HEIMAO = "/sina/tousu"
# RSSHub's header middleware sends this with every answer (CACHE_EXPIRE, 5 minutes by default).
CACHE_CONTROL = "public, max-age=300"


def body(name: str) -> bytes:
    return (DATA / name).read_bytes()


def settings_for(server: LocalHttpServer, route: str, **extra: object) -> RsshubSourceSettings:
    return RsshubSourceSettings.model_validate(
        {"name": "rsshub-test", "kind": "rsshub", "base_url": server.base_url, "route": route, **extra}
    )


def rsshub_answer(payload: bytes, *, content_type: str = RSS_TYPE, charset: str | None = "utf-8") -> Handler:
    declared = f"{content_type}; charset={charset}" if charset else content_type

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=payload, headers={"Content-Type": declared, "Cache-Control": CACHE_CONTROL})

    return handler


async def poll_route(
    route: str, handler: Handler, state: SourceState | None = None, **extra: object
) -> tuple[Poll, LocalHttpServer]:
    async with serve({("GET", route): handler}) as server, outbound() as http:
        result = await RsshubSource(settings_for(server, route, **extra)).poll(
            http, state or SourceState(), since=SINCE
        )
    return result, server


def by_id(posts: list[Post]) -> dict[str, Post]:
    return {post.native_id: post for post in posts}


async def test_weibo_keyword_rss_items_become_chinese_posts_with_author_link_and_time() -> None:
    result, _ = await poll_route(WEIBO, rsshub_answer(body("weibo_keyword.xml")))

    assert by_id(result.posts)["https://weibo.com/1000000001/Pq7Lm2Xa1"] == Post(
        native_id="https://weibo.com/1000000001/Pq7Lm2Xa1",
        text=("飞鸟小王: 云雀航空把我的行李弄丢了，三天了没人回电话\n客服热线一直占线，#云雀航空# 请给个说法！"),
        url="https://weibo.com/1000000001/Pq7Lm2Xa1",
        author_handle="飞鸟小王",
        author_name="飞鸟小王",
        created_at=datetime(2026, 3, 3, 9, 12, tzinfo=UTC),
        # The channel says "en", RSSHub's default for routes that set none; weibo is read as Chinese.
        language="zh",
    )


async def test_first_poll_skips_items_older_than_since_and_requests_the_route_path() -> None:
    result, server = await poll_route(WEIBO, rsshub_answer(body("weibo_keyword.xml")))

    assert [post.native_id for post in result.posts] == [
        "https://weibo.com/1000000002/Pq7Kz9Yb2",
        "https://weibo.com/1000000001/Pq7Lm2Xa1",
    ]
    assert result.state.is_seen("https://weibo.com/1000000003/Oa1Bc2De3")
    assert server.requests[0].path == WEIBO
    assert server.requests[0].query == {}


def test_platform_is_inferred_from_the_route_and_may_be_overridden() -> None:
    def platform(route: str, **extra: object) -> str:
        settings = RsshubSourceSettings.model_validate(
            {"name": "r", "kind": "rsshub", "base_url": "https://rsshub.example", "route": route, **extra}
        )
        return RsshubSource(settings).platform

    assert platform(WEIBO) == "weibo"
    assert platform(ZHIHU) == "zhihu"
    assert platform("/bilibili/user/dynamic/2") == "bilibili"
    assert platform(XIAOHONGSHU) == "xiaohongshu"
    assert platform(HEIMAO) == "heimao"
    assert platform("/baidu/tieba/search/咕咕快递") == "tieba"
    assert platform("/sina/rollnews") == "rsshub"
    assert platform("/github/issue/acme/app") == "rsshub"
    assert platform(WEIBO, platform="weibo-cn") == "weibo-cn"


async def test_heimao_complaints_without_dates_are_all_taken_on_the_first_poll() -> None:
    result, _ = await poll_route(HEIMAO, rsshub_answer(body("heimao_tousu.xml")))

    posts = by_id(result.posts)
    assert set(posts) == {
        "https://tousu.sina.com.cn/complaint/view/90000000001/",
        "https://tousu.sina.com.cn/complaint/view/90000000002/",
    }
    complaint = posts["https://tousu.sina.com.cn/complaint/view/90000000001/"]
    assert complaint.text.startswith("咕咕快递丢件拒不赔偿\n\n投诉对象：咕咕快递")
    assert complaint.author_name == "黑猫用户7788"
    assert complaint.created_at is None
    assert complaint.language == "zh"


async def test_zhihu_json_feed_items_keep_their_own_language_and_skip_unusable_ones() -> None:
    result, server = await poll_route(
        ZHIHU, rsshub_answer(body("zhihu_question.json"), content_type=JSON_FEED_TYPE), format="json"
    )

    assert server.requests[0].query == {"format": "json"}
    posts = by_id(result.posts)
    assert posts["https://www.zhihu.com/question/600000001/answer/700000001"] == Post(
        native_id="https://www.zhihu.com/question/600000001/answer/700000001",
        text="山间明月的回答\n\n上个月寄了一台相机，外壳碎了。\n理赔拖了三周还没结果。",
        url="https://www.zhihu.com/question/600000001/answer/700000001",
        author_handle="山间明月",
        author_name="山间明月",
        created_at=datetime(2026, 3, 2, 14, 20, tzinfo=UTC),
        language="zh",
    )
    english = posts["https://www.zhihu.com/question/600000001/answer/700000002"]
    assert english.text == "Tomás 的回答\n\nOrdered twice, both parcels arrived late."
    assert english.language == "en"
    assert len(posts) == 2


async def test_xiaohongshu_user_json_feed_becomes_a_post() -> None:
    result, _ = await poll_route(
        XIAOHONGSHU, rsshub_answer(body("xiaohongshu_user.json"), content_type=JSON_FEED_TYPE), format="json"
    )

    [post] = result.posts
    assert post.text == "踩雷！蜜桃面霜用了过敏\n\n蜜桃面霜用了两天脸就红肿了，客服只让我停用。"
    assert post.author_name == "爱吃桃的兔子"
    assert post.created_at == datetime(2026, 3, 3, 2, 30, tzinfo=UTC)


async def test_access_key_is_sent_as_the_key_parameter_and_kept_out_of_links_and_errors() -> None:
    async def refuse(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503, text="upstream weibo timed out")

    result, server = await poll_route(WEIBO, rsshub_answer(body("weibo_keyword.xml")), access_key="s3cret-key")
    assert server.requests[0].query == {"key": "s3cret-key"}
    assert all("s3cret-key" not in post.url for post in result.posts)

    with pytest.raises(OutboundError) as raised:
        await poll_route(WEIBO, refuse, access_key="s3cret-key")
    assert "s3cret-key" not in str(raised.value)
    assert "rsshub source rsshub-test: HTTP 503" in str(raised.value)
    settings = RsshubSourceSettings.model_validate(
        {
            "name": "r",
            "kind": "rsshub",
            "base_url": "https://rsshub.example",
            "route": WEIBO,
            "access_key": "s3cret-key",
        }
    )
    assert "s3cret-key" not in repr(settings)


async def test_etag_answered_with_304_means_not_modified_and_no_posts() -> None:
    async def with_etag(request: web.Request) -> web.StreamResponse:
        headers = {"ETag": 'W/"5f-abc"', "Cache-Control": CACHE_CONTROL}
        if request.headers.get("If-None-Match") == 'W/"5f-abc"':
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=body("weibo_keyword.xml"),
            content_type=RSS_TYPE,
            headers={**headers, "Last-Modified": "Tue, 03 Mar 2026 10:00:00 GMT"},
        )

    async with serve({("GET", WEIBO): with_etag}) as server, outbound() as http:
        source = RsshubSource(settings_for(server, WEIBO))
        first = await source.poll(http, SourceState(), since=SINCE)
        second = await source.poll(http, first.state, since=SINCE)

    assert second.not_modified
    assert second.posts == []
    assert server.requests[1].headers["If-None-Match"] == 'W/"5f-abc"'
    assert server.requests[1].headers["If-Modified-Since"] == "Tue, 03 Mar 2026 10:00:00 GMT"


async def test_cache_max_age_longer_than_the_interval_becomes_the_wait() -> None:
    async def long_cache(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=body("weibo_keyword.xml"), content_type=RSS_TYPE, headers={"Cache-Control": "public, max-age=3600"}
        )

    longer, _ = await poll_route(WEIBO, long_cache, interval_s=600)
    within, _ = await poll_route(WEIBO, rsshub_answer(body("weibo_keyword.xml")), interval_s=600)

    assert longer.wait_s == 3600.0
    # max-age=300 is within the 600 s interval: the schedule alone decides.
    assert within.wait_s is None


async def test_429_with_retry_after_is_transient_with_the_wait() -> None:
    refusal = answering(b"Too Many Requests", status=429, content_type="text/plain", headers={"Retry-After": "120"})

    with pytest.raises(OutboundError) as raised:
        await poll_route(WEIBO, refusal)

    assert raised.value.retry_after_s == 120.0


async def test_503_from_an_upstream_failure_is_a_transient_error_naming_the_source() -> None:
    failure = answering(b"<h1>Looks like something went wrong</h1>", status=503, content_type="text/html")

    with pytest.raises(OutboundError, match="rsshub source rsshub-test: HTTP 503"):
        await poll_route(ZHIHU, failure, format="json")


async def test_malformed_xml_is_a_format_error_naming_the_source() -> None:
    mismatched = "<rss version='2.0'><channel><title>咕咕</titel></channel></rss>".encode()

    with pytest.raises(SourceFormatError, match="rsshub source rsshub-test: not well-formed XML"):
        await poll_route(WEIBO, rsshub_answer(mismatched))


async def test_rss_cut_off_mid_item_is_a_format_error() -> None:
    whole = body("weibo_keyword.xml")
    cut = whole[: whole.index("橙子不酸".encode()) + 3]

    with pytest.raises(SourceFormatError, match="rsshub source rsshub-test: the document is truncated"):
        await poll_route(WEIBO, rsshub_answer(cut))


async def test_malformed_json_feed_is_a_format_error_saying_where() -> None:
    cut = body("zhihu_question.json")[:200]

    with pytest.raises(SourceFormatError, match=r"rsshub source rsshub-test: invalid JSON at line \d+"):
        await poll_route(ZHIHU, rsshub_answer(cut, content_type=JSON_FEED_TYPE), format="json")


async def test_json_that_is_not_a_json_feed_is_a_format_error() -> None:
    with pytest.raises(SourceFormatError, match="not a JSON Feed"):
        await poll_route(
            ZHIHU, rsshub_answer(b'{"error": "route not found"}', content_type=JSON_FEED_TYPE), format="json"
        )


@pytest.mark.parametrize(
    ("declaration", "charset"),
    [('<?xml version="1.0" encoding="GB18030"?>', None), ('<?xml version="1.0"?>', "gb18030")],
    ids=["xml-declaration", "content-type"],
)
async def test_gb18030_rss_is_decoded_by_its_declared_charset(declaration: str, charset: str | None) -> None:
    utf8 = body("weibo_keyword.xml").decode("utf-8")
    gb18030 = utf8.replace('<?xml version="1.0" encoding="UTF-8"?>', declaration).encode("gb18030")

    result, _ = await poll_route(WEIBO, rsshub_answer(gb18030, charset=charset))

    assert by_id(result.posts)["https://weibo.com/1000000002/Pq7Kz9Yb2"].text == (
        "橙子不酸: 云雀航空延误五个小时，连一瓶水都没有"
    )


async def test_gb18030_json_feed_declared_by_the_content_type_is_decoded() -> None:
    gb18030 = body("xiaohongshu_user.json").decode("utf-8").encode("gb18030")

    result, _ = await poll_route(
        XIAOHONGSHU, rsshub_answer(gb18030, content_type=JSON_FEED_TYPE, charset="GB18030"), format="json"
    )

    assert result.posts[0].author_name == "爱吃桃的兔子"


def test_route_must_start_with_a_slash() -> None:
    with pytest.raises(ValueError, match=r"route\n.*must start with '/'"):
        RsshubSourceSettings.model_validate(
            {"name": "r", "kind": "rsshub", "base_url": "https://rsshub.example", "route": "weibo/keyword/x"}
        )


class TestRsshubLikeEverySource(SourceCases):
    path = WEIBO

    def source(self, server: LocalHttpServer) -> RsshubSource:
        return RsshubSource(settings_for(server, self.path))
