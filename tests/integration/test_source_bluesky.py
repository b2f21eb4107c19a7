"""The Bluesky adapter against a local server that answers app.bsky.feed.searchPosts as documented."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from services.listener.config import BlueskySourceSettings
from services.listener.errors import SourceFormatError
from services.listener.sources.base import SourceState
from services.listener.sources.bluesky import BlueskySource
from services.shared.outbound import OutboundClient
from services.shared.ratelimit import MAX_WAIT_S
from tests.http_server import LocalHttpServer, serve
from tests.integration.source_cases import (
    PagedSourceCases,
    SpentBudget,
    answering,
)

SINCE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SEARCH_PATH = "/xrpc/app.bsky.feed.searchPosts"
DID = "did:plc:abc123example"


def stamp(minutes: float) -> str:
    return (SINCE + timedelta(minutes=minutes)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def uri(rkey: str) -> str:
    return f"at://{DID}/app.bsky.feed.post/{rkey}"


def post_view(rkey: str, minutes: float, text: str = "acme support never answers", **record: Any) -> dict[str, Any]:
    return {
        "uri": uri(rkey),
        "cid": f"bafyrei{rkey}",
        "author": {"did": DID, "handle": "bea.bsky.social", "displayName": "Bea"},
        "record": {"$type": "app.bsky.feed.post", "text": text, "createdAt": stamp(minutes), "langs": ["en"]} | record,
        "replyCount": 0,
        "repostCount": 0,
        "likeCount": 0,
        "indexedAt": stamp(minutes),
    }


class FakeBluesky:
    """Search results newest first, ``page_size`` to a page, paged backwards with an opaque cursor."""

    def __init__(self, *posts: dict[str, Any], page_size: int = 100) -> None:
        self.posts = list(posts)
        self.page_size = page_size
        self.headers: dict[str, str] = {}

    async def search(self, request: web.Request) -> web.StreamResponse:
        newest = sorted(self.posts, key=lambda p: p["indexedAt"], reverse=True)
        start = int(request.query.get("cursor", "0"))
        size = min(self.page_size, int(request.query.get("limit", "25")))
        body: dict[str, Any] = {"posts": newest[start : start + size], "hitsTotal": len(newest)}
        if start + size < len(newest):
            body["cursor"] = str(start + size)
        return web.json_response(body, headers=self.headers)


def settings(server: LocalHttpServer) -> BlueskySourceSettings:
    return BlueskySourceSettings(kind="bluesky", name="bsky-acme", base_url=server.base_url, query="acme")


async def test_poll_searches_latest_posts_without_credentials(http: OutboundClient) -> None:
    bluesky = FakeBluesky(post_view("r1", 5))
    async with serve({("GET", SEARCH_PATH): bluesky.search}) as server:
        await BlueskySource(settings(server)).poll(http, SourceState(), since=SINCE)
    [request] = server.requests
    assert request.query == {"q": "acme", "sort": "latest", "limit": "100"}
    assert "Authorization" not in request.headers


async def test_post_view_becomes_a_post_with_web_url_language_and_reply_root(http: OutboundClient) -> None:
    reply = {"root": {"uri": uri("root1"), "cid": "bafyroot"}, "parent": {"uri": uri("mid"), "cid": "bafymid"}}
    bluesky = FakeBluesky(post_view("r1", 5, reply=reply, langs=["pt-BR", "en"]))
    async with serve({("GET", SEARCH_PATH): bluesky.search}) as server:
        poll = await BlueskySource(settings(server)).poll(http, SourceState(), since=SINCE)
    [post] = poll.posts
    assert post.native_id == uri("r1")
    assert post.text == "acme support never answers"
    assert post.url == "https://bsky.app/profile/bea.bsky.social/post/r1"
    assert (post.author_handle, post.author_name, post.followers) == ("bea.bsky.social", "Bea", 0)
    assert post.created_at == SINCE + timedelta(minutes=5)
    assert post.language == "pt"
    assert post.thread_id == uri("root1")


async def test_post_that_is_not_a_reply_is_its_own_thread(http: OutboundClient) -> None:
    bluesky = FakeBluesky(post_view("r1", 5, langs=[]))
    async with serve({("GET", SEARCH_PATH): bluesky.search}) as server:
        poll = await BlueskySource(settings(server)).poll(http, SourceState(), since=SINCE)
    [post] = poll.posts
    assert (post.thread_id, post.language) == (uri("r1"), "")


async def test_first_poll_takes_only_posts_newer_than_since_oldest_first(http: OutboundClient) -> None:
    bluesky = FakeBluesky(post_view("old", -1), post_view("b", 2), post_view("a", 1))
    async with serve({("GET", SEARCH_PATH): bluesky.search}) as server:
        poll = await BlueskySource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [p.native_id for p in poll.posts] == [uri("a"), uri("b")]
    assert poll.state.cursor == (SINCE + timedelta(minutes=2)).isoformat()


async def test_second_poll_returns_only_posts_that_are_new(http: OutboundClient) -> None:
    bluesky = FakeBluesky(post_view("a", 1), post_view("b", 2))
    async with serve({("GET", SEARCH_PATH): bluesky.search}) as server:
        source = BlueskySource(settings(server))
        first = await source.poll(http, SourceState(), since=SINCE)
        bluesky.posts += [post_view("c", 3), post_view("d", 4)]
        second = await source.poll(http, first.state, since=SINCE)
    assert [p.native_id for p in second.posts] == [uri("c"), uri("d")]


async def test_burst_is_followed_with_the_cursor_until_known_posts(http: OutboundClient) -> None:
    bluesky = FakeBluesky(post_view("p00", 0.5), page_size=2)
    async with serve({("GET", SEARCH_PATH): bluesky.search}) as server:
        source = BlueskySource(settings(server))
        first = await source.poll(http, SourceState(), since=SINCE)
        bluesky.posts += [post_view(f"p{i:02}", i) for i in range(1, 6)]
        server.requests.clear()
        second = await source.poll(http, first.state, since=SINCE)
    assert [p.native_id for p in second.posts] == [uri(f"p{i:02}") for i in range(1, 6)]
    assert [r.query.get("cursor") for r in server.requests] == [None, "2", "4"]


async def test_late_indexed_post_a_little_older_than_the_cursor_is_still_taken(http: OutboundClient) -> None:
    bluesky = FakeBluesky(post_view("a", 10))
    async with serve({("GET", SEARCH_PATH): bluesky.search}) as server:
        source = BlueskySource(settings(server))
        first = await source.poll(http, SourceState(), since=SINCE)
        bluesky.posts.append(post_view("late", 8))
        second = await source.poll(http, first.state, since=SINCE)
    assert [p.native_id for p in second.posts] == [uri("late")]


async def test_paging_is_bounded_within_one_poll(http: OutboundClient) -> None:
    bluesky = FakeBluesky(*(post_view(f"p{i:02}", i) for i in range(1, 30)), page_size=2)
    async with serve({("GET", SEARCH_PATH): bluesky.search}) as server:
        poll = await BlueskySource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert len(server.requests) == 5
    assert len(poll.posts) == 10


async def test_answer_without_posts_is_a_source_format_error(http: OutboundClient) -> None:
    async with serve({("GET", SEARCH_PATH): answering(b'{"cursor": "25", "hitsTotal": 3}')}) as server:
        with pytest.raises(SourceFormatError, match="'posts'"):
            await BlueskySource(settings(server)).poll(http, SourceState(), since=SINCE)


async def test_malformed_post_view_is_skipped(http: OutboundClient) -> None:
    broken = post_view("bad", 3)
    broken["uri"] = "https://not-an-at-uri.example/post"
    views = [post_view("b", 2), broken, {"uri": uri("norecord"), "author": {}}, post_view("a", 1)]
    async with serve({("GET", SEARCH_PATH): answering(json.dumps({"posts": views}).encode())}) as server:
        poll = await BlueskySource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [p.native_id for p in poll.posts] == [uri("a"), uri("b")]


class TestBlueskyLikeEveryPagedSource(PagedSourceCases):
    path, what, since = SEARCH_PATH, "bluesky source bsky-acme", SINCE

    def source(self, server: LocalHttpServer) -> BlueskySource:
        return BlueskySource(settings(server))

    def spent_budget(self) -> SpentBudget:
        bluesky = FakeBluesky(*(post_view(f"p{i:02}", i) for i in range(1, 6)), page_size=2)
        bluesky.headers = {"RateLimit-Limit": "3000", "RateLimit-Remaining": "0", "RateLimit-Reset": "4070908800"}
        return SpentBudget(bluesky.search, wait_s=MAX_WAIT_S, first_page=[uri("p04"), uri("p05")])
