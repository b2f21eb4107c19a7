"""JsonApiSource against a real local HTTP server answering with JSON written for these tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from services.listener.config import JsonApiSourceSettings
from services.listener.errors import SourceFormatError
from services.listener.sources.base import Poll, Post, SourceState
from services.listener.sources.json_api import JsonApiSource
from services.shared.errors import ConfigError
from services.shared.outbound import FetchLimits
from tests.http_server import Handler, LocalHttpServer, serve
from tests.integration.source_cases import JsonSourceCases, answering, outbound

SINCE = datetime(2024, 1, 1, tzinfo=UTC)
REVIEW_FIELDS = {
    "id": "review_id",
    "text": "body.text",
    "url": "permalink",
    "author_handle": "user.login",
    "author_name": "user.name",
    "followers": "user.followers",
    "created_at": "created",
    "language": "lang",
    "thread_id": "order",
}


def review(review_id: int | str, text: str, created: Any = "2024-01-02T09:00:00Z", **extra: Any) -> dict[str, Any]:
    return {"review_id": review_id, "body": {"text": text}, "created": created, **extra}


def reviews_page(*items: object) -> dict[str, Any]:
    return {"meta": {"page": 1}, "data": {"reviews": list(items)}}


def settings_for(
    url: str, *, items_path: str = "data.reviews", fields: dict[str, str] | None = None
) -> JsonApiSourceSettings:
    return JsonApiSourceSettings(
        name="acme-reviews",
        kind="json",
        url=url,
        platform="reviews",
        headers={"Authorization": "Bearer test-token"},
        items_path=items_path,
        fields=fields or REVIEW_FIELDS,
    )


def answering_json(payload: object) -> Handler:
    return answering(json.dumps(payload).encode())


@asynccontextmanager
async def api_server(handler: Handler) -> AsyncIterator[LocalHttpServer]:
    async with serve({("GET", "/reviews"): handler}) as server:
        yield server


async def poll(
    server: LocalHttpServer,
    state: SourceState | None = None,
    *,
    source: JsonApiSource | None = None,
    items_path: str = "data.reviews",
    fields: dict[str, str] | None = None,
) -> Poll:
    settings = settings_for(server.url("/reviews"), items_path=items_path, fields=fields)
    limits = FetchLimits(max_bytes=settings.max_body_bytes, timeout_s=settings.timeout_s)
    async with outbound(limits=limits) as http:
        return await (source or JsonApiSource(settings)).poll(http, state or SourceState(), since=SINCE)


async def poll_payload(payload: object, **options: Any) -> Poll:
    async with api_server(answering_json(payload)) as server:
        return await poll(server, **options)


async def test_items_at_the_dotted_path_are_mapped_field_by_field() -> None:
    item = review(
        "r-1",
        "  Courier never rang the bell.  ",
        permalink="https://reviews.example/r-1",
        user={"login": "@mira", "name": "Mira K", "followers": 42},
        lang="en-US",
        order=9001,
    )

    result = await poll_payload(reviews_page(item))

    assert result.posts == [
        Post(
            native_id="r-1",
            text="Courier never rang the bell.",
            url="https://reviews.example/r-1",
            author_handle="@mira",
            author_name="Mira K",
            followers=42,
            created_at=datetime(2024, 1, 2, 9, 0, tzinfo=UTC),
            language="en",
            thread_id="9001",
        )
    ]


async def test_empty_items_path_reads_the_body_as_the_list() -> None:
    result = await poll_payload([review(1, "Box arrived crushed.")], items_path="")

    assert [post.native_id for post in result.posts] == ["1"]


async def test_created_at_accepts_epoch_seconds() -> None:
    result = await poll_payload(reviews_page(review(1, "Late again.", created=1704186000)))

    assert result.posts[0].created_at == datetime(2024, 1, 2, 9, 0, tzinfo=UTC)


async def test_created_at_without_an_offset_is_utc() -> None:
    result = await poll_payload(reviews_page(review(1, "Late again.", created="2024-01-02T09:00:00")))

    assert result.posts[0].created_at == datetime(2024, 1, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("followers", [-5, "1000", 3.5, True, None])
async def test_followers_that_are_not_a_non_negative_integer_become_zero(followers: object) -> None:
    result = await poll_payload(reviews_page(review(1, "Lost parcel.", user={"followers": followers})))

    assert result.posts[0].followers == 0


async def test_non_http_url_is_dropped() -> None:
    result = await poll_payload(reviews_page(review(1, "Lost parcel.", permalink="javascript:alert(1)")))

    assert result.posts[0].url == ""


async def test_items_without_id_or_text_are_skipped_and_counted() -> None:
    good = review(3, "Driver was rude.")
    no_id = {"body": {"text": "Where is my order?"}}
    empty_text = review(4, "   ")
    not_an_object = "just a string"

    async with api_server(answering_json(reviews_page(no_id, good, empty_text, not_an_object))) as server:
        source = JsonApiSource(settings_for(server.url("/reviews")))
        result = await poll(server, source=source)

    assert [post.native_id for post in result.posts] == ["3"]
    assert source.skipped_items == 3


async def test_every_item_unusable_is_a_format_error() -> None:
    with pytest.raises(SourceFormatError, match=r"none of the 2 items is usable \(item 0: has no id at 'review_id'\)"):
        await poll_payload(reviews_page({"id": 1, "text": "a"}, {"id": 2, "text": "b"}))


async def test_empty_items_list_is_no_posts_and_no_error() -> None:
    result = await poll_payload(reviews_page())

    assert result.posts == []


async def test_missing_items_path_is_a_format_error_naming_the_path() -> None:
    with pytest.raises(SourceFormatError, match=r"json source acme-reviews: items_path 'data\.reviews' is not in"):
        await poll_payload({"data": {"comments": []}})


async def test_items_path_that_is_not_a_list_is_a_format_error() -> None:
    with pytest.raises(SourceFormatError, match=r"items_path 'data\.reviews' is a dict, not a list"):
        await poll_payload({"data": {"reviews": {"r-1": {}}}})


async def test_configured_headers_and_etag_are_sent_and_304_means_not_modified() -> None:
    async def with_etag(request: web.Request) -> web.StreamResponse:
        if request.headers.get("If-None-Match") == '"page-1"':
            return web.Response(status=304)
        body = json.dumps(reviews_page(review(1, "Slow refund.")))
        return web.Response(text=body, content_type="application/json", headers={"ETag": '"page-1"'})

    async with api_server(with_etag) as server:
        first = await poll(server)
        second = await poll(server, first.state)

    assert second.not_modified
    assert second.posts == []
    assert server.requests[1].headers["If-None-Match"] == '"page-1"'
    assert server.requests[1].headers["Authorization"] == "Bearer test-token"


async def test_second_poll_returns_only_items_not_seen_before() -> None:
    older = review("a", "First complaint.", created="2024-01-02T09:00:00Z")
    newer = review("b", "Second complaint.", created="2024-01-03T09:00:00Z")
    pages = [reviews_page(older), reviews_page(newer, older)]

    async def next_page(request: web.Request) -> web.StreamResponse:
        return web.json_response(pages.pop(0))

    async with api_server(next_page) as server:
        first = await poll(server)
        second = await poll(server, first.state)

    assert [post.native_id for post in second.posts] == ["b"]
    assert second.state.cursor == "2024-01-03T09:00:00+00:00"


async def test_first_poll_skips_items_older_than_since() -> None:
    result = await poll_payload(reviews_page(review("old", "Last year.", created="2023-12-31T23:59:59Z")))

    assert result.posts == []
    assert result.state.is_seen("old")


def test_field_mapping_to_an_unknown_post_field_is_a_config_error() -> None:
    fields = {"id": "id", "text": "text", "likes": "stats.likes"}

    with pytest.raises(ConfigError, match="unknown post field"):
        JsonApiSource(settings_for("https://reviews.example/api", fields=fields))


class TestJsonApiLikeEveryJsonSource(JsonSourceCases):
    path, what = "/reviews", "json source acme-reviews"

    def source(self, server: LocalHttpServer) -> JsonApiSource:
        return JsonApiSource(settings_for(server.url(self.path)))
