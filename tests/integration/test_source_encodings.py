"""Feeds and JSON in the legacy charsets of Chinese, Japanese and Russian sites, from a local server.

Each body is declared in one place only (the Content-Type header, the XML declaration) or in none,
as such sites serve them; the posts must come out as the text that was written.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from aiohttp import web

from services.listener.config import JsonApiSourceSettings, RssSourceSettings
from services.listener.sources.base import Post, SourceState
from services.listener.sources.json_api import JsonApiSource
from services.listener.sources.rss import RssSource
from services.shared.outbound import OutboundClient
from tests.http_server import Handler, serve

SINCE = datetime(2026, 1, 1, tzinfo=UTC)

ZH = (
    "拾光咖啡的外卖送到时已经凉了，包装也破了。客服电话一直打不通，申请退款三天了还没有人处理，"
    "会员积分也莫名其妙少了一半。"
)
JA = (
    "ミドリ運輸の配達が三日も遅れている。問い合わせ窓口に電話しても全然つながらないし、"
    "追跡番号の状況も更新されないまま。"
)
RU = (
    "Третью неделю жду возврата денег за сломанный чайник Лумо. Поддержка обещает перезвонить "
    "и пропадает, курьер привёз коробку мятой, а внутри трещина."
)
# (charset label as a site writes it, text) for every charset these sites use.
BODIES = [
    pytest.param("GB18030", ZH, id="gb18030"),
    pytest.param("GBK", ZH, id="gbk"),
    pytest.param("Shift_JIS", JA, id="shift_jis"),
    pytest.param("EUC-JP", JA, id="euc-jp"),
    pytest.param("windows-1251", RU, id="windows-1251"),
    pytest.param("KOI8-R", RU, id="koi8-r"),
]


def rss(text: str, *, declared: str | None) -> str:
    declaration = f'<?xml version="1.0" encoding="{declared}"?>\n' if declared else ""
    return (
        f'{declaration}<rss version="2.0"><channel><title>complaints</title>'
        f"<item><guid>post-1</guid><title>{text[:12]}</title><description>{text}</description>"
        "<pubDate>Mon, 23 Nov 2026 08:00:00 GMT</pubDate></item></channel></rss>"
    )


def reviews(text: str) -> str:
    return json.dumps({"reviews": [{"id": "r-1", "text": text, "created": "2026-11-23T08:00:00Z"}]}, ensure_ascii=False)


def serving(body: bytes, content_type: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        # Set as raw bytes, so aiohttp neither adds a charset nor changes the one given.
        return web.Response(body=body, headers={"Content-Type": content_type})

    return handler


async def feed_posts(http: OutboundClient, body: bytes, content_type: str) -> list[Post]:
    async with serve({("GET", "/feed"): serving(body, content_type)}) as server:
        settings = RssSourceSettings(name="complaints", kind="rss", url=server.url("/feed"))
        poll = await RssSource(settings).poll(http, SourceState(), since=SINCE)
    return poll.posts


async def json_posts(http: OutboundClient, body: bytes, content_type: str) -> list[Post]:
    async with serve({("GET", "/reviews"): serving(body, content_type)}) as server:
        settings = JsonApiSourceSettings(
            name="reviews",
            kind="json",
            url=server.url("/reviews"),
            items_path="reviews",
            fields={"id": "id", "text": "text", "created_at": "created"},
        )
        poll = await JsonApiSource(settings).poll(http, SourceState(), since=SINCE)
    return poll.posts


@pytest.mark.parametrize(("charset", "text"), BODIES)
async def test_feed_is_decoded_by_the_charset_its_header_declares(
    http: OutboundClient, charset: str, text: str
) -> None:
    body = rss(text, declared=None).encode(charset)

    [post] = await feed_posts(http, body, f"application/rss+xml; charset={charset}")

    assert post.text == text


@pytest.mark.parametrize(("charset", "text"), BODIES)
async def test_feed_is_decoded_by_the_charset_its_xml_declaration_names(
    http: OutboundClient, charset: str, text: str
) -> None:
    body = rss(text, declared=charset).encode(charset)

    [post] = await feed_posts(http, body, "application/rss+xml")

    assert post.text == text


@pytest.mark.parametrize(("charset", "text"), BODIES)
async def test_feed_that_declares_no_charset_is_decoded_by_detection(
    http: OutboundClient, charset: str, text: str
) -> None:
    body = rss(text, declared=None).encode(charset)

    [post] = await feed_posts(http, body, "application/rss+xml")

    assert post.text == text


async def test_feed_whose_header_says_utf8_but_whose_declaration_says_gbk_is_read_as_gbk(
    http: OutboundClient,
) -> None:
    body = rss(ZH, declared="GBK").encode("gbk")

    [post] = await feed_posts(http, body, "text/xml; charset=utf-8")

    assert post.text.endswith(ZH)


async def test_feed_labelled_gb2312_with_characters_only_gb18030_has_is_read_whole(http: OutboundClient) -> None:
    # 𠮷 (a CJK extension B character) has no GB2312 or GBK code; sites labelled GB2312 still send it.
    text = "𠮷野家的外卖少送了一份，客服说不能退款。"
    body = rss(text, declared="GB2312").encode("gb18030")

    [post] = await feed_posts(http, body, "application/rss+xml")

    assert post.text == text


@pytest.mark.parametrize(("charset", "text"), BODIES)
async def test_json_is_decoded_by_the_charset_its_header_declares(
    http: OutboundClient, charset: str, text: str
) -> None:
    [post] = await json_posts(http, reviews(text).encode(charset), f"application/json; charset={charset}")

    assert post.text == text


@pytest.mark.parametrize(("charset", "text"), BODIES)
async def test_json_that_declares_no_charset_is_decoded_by_detection(
    http: OutboundClient, charset: str, text: str
) -> None:
    [post] = await json_posts(http, reviews(text).encode(charset), "application/json")

    assert post.text == text


async def test_json_labelled_shift_jis_with_windows_extensions_is_read_as_cp932(http: OutboundClient) -> None:
    # ① and 髙 are Windows (cp932) additions to Shift_JIS, common in Japanese posts.
    text = "①髙橋さんの荷物が届かない。②電話もつながらない。"

    [post] = await json_posts(http, reviews(text).encode("cp932"), "application/json; charset=Shift_JIS")

    assert post.text == text
