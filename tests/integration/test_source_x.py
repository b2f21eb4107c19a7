"""The X adapter against a local server that answers API v2 recent search as documented."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from services.listener.config import XSourceSettings
from services.listener.errors import SourceFormatError
from services.listener.sources.base import SourceState
from services.listener.sources.x import XSource
from services.shared.outbound import OutboundClient, OutboundError
from services.shared.ratelimit import MAX_WAIT_S
from tests.http_server import LocalHttpServer, serve
from tests.integration.source_cases import (
    PagedSourceCases,
    SpentBudget,
    answering,
)

SEARCH_PATH = "/2/tweets/search/recent"
TWEET_FIELDS = "created_at,lang,author_id,conversation_id,public_metrics"
# Recent search reaches back seven days, so the tests' posts are recent too.
SINCE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def tid(number: int) -> str:
    return str(1_890_000_000_000_000_000 + number)


def tweet(number: int, minutes: float, text: str = "@acme my order is two weeks late", **extra: Any) -> dict[str, Any]:
    return {
        "id": tid(number),
        "text": text,
        "created_at": (SINCE + timedelta(minutes=minutes)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "lang": "en",
        "author_id": "2244",
        "conversation_id": tid(number),
        "edit_history_tweet_ids": [tid(number)],
        "public_metrics": {"retweet_count": 0, "reply_count": 0, "like_count": 1, "quote_count": 0},
    } | extra


USER = {
    "id": "2244",
    "username": "cara_c",
    "name": "Cara C.",
    "public_metrics": {"followers_count": 1290, "following_count": 80, "tweet_count": 5000, "listed_count": 2},
}


class FakeX:
    """Recent search: newest first, since_id and start_time honoured, pages linked by next_token."""

    def __init__(self, *tweets: dict[str, Any], page_size: int = 100) -> None:
        self.tweets = list(tweets)
        self.page_size = page_size
        self.headers: dict[str, str] = {}

    async def search(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        newest = sorted(self.tweets, key=lambda t: int(t["id"]), reverse=True)
        if "since_id" in query:
            newest = [t for t in newest if int(t["id"]) > int(query["since_id"])]
        if "start_time" in query:
            start = datetime.fromisoformat(query["start_time"].replace("Z", "+00:00"))
            newest = [t for t in newest if datetime.fromisoformat(t["created_at"].replace("Z", "+00:00")) >= start]
        offset = int(query.get("next_token", "0"))
        size = min(self.page_size, int(query.get("max_results", "10")))
        chunk = newest[offset : offset + size]
        meta: dict[str, Any] = {"result_count": len(chunk)}
        if chunk:
            meta |= {"newest_id": chunk[0]["id"], "oldest_id": chunk[-1]["id"]}
            if offset + size < len(newest):
                meta["next_token"] = str(offset + size)
        body: dict[str, Any] = {"meta": meta}
        if chunk:
            body |= {"data": chunk, "includes": {"users": [USER]}}
        return web.json_response(body, headers=self.headers)


def settings(server: LocalHttpServer) -> XSourceSettings:
    return XSourceSettings(
        kind="x", name="x-acme", base_url=server.base_url, query="@acme -is:retweet", bearer_token="app-token"
    )


async def test_first_poll_searches_from_since_with_the_bearer_token(http: OutboundClient) -> None:
    x = FakeX(tweet(1, 5))
    async with serve({("GET", SEARCH_PATH): x.search}) as server:
        await XSource(settings(server)).poll(http, SourceState(), since=SINCE)
    [request] = server.requests
    assert request.headers["Authorization"] == "Bearer app-token"
    assert request.query == {
        "query": "@acme -is:retweet",
        "max_results": "100",
        "tweet.fields": TWEET_FIELDS,
        "expansions": "author_id",
        "user.fields": "username,name,public_metrics",
        "start_time": SINCE.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


async def test_first_poll_never_asks_further_back_than_recent_search_allows(http: OutboundClient) -> None:
    x = FakeX(tweet(1, 5))
    async with serve({("GET", SEARCH_PATH): x.search}) as server:
        await XSource(settings(server)).poll(http, SourceState(), since=SINCE - timedelta(days=30))
    start = datetime.fromisoformat(server.requests[0].query["start_time"].replace("Z", "+00:00"))
    assert start > SINCE - timedelta(days=7)


async def test_tweet_becomes_a_post_with_its_author_followers_and_conversation(http: OutboundClient) -> None:
    reply = tweet(2, 5, text="@acme refund &amp; replacement, please", conversation_id=tid(1), lang="und")
    x = FakeX(reply)
    async with serve({("GET", SEARCH_PATH): x.search}) as server:
        poll = await XSource(settings(server)).poll(http, SourceState(), since=SINCE)
    [post] = poll.posts
    assert post.native_id == tid(2)
    assert post.text == "@acme refund & replacement, please"
    assert post.url == f"https://x.com/cara_c/status/{tid(2)}"
    assert (post.author_handle, post.author_name, post.followers) == ("cara_c", "Cara C.", 1290)
    assert post.created_at == SINCE + timedelta(minutes=5)
    assert post.language == ""
    assert post.thread_id == tid(1)


async def test_second_poll_asks_since_the_newest_id_and_returns_only_new_posts(http: OutboundClient) -> None:
    x = FakeX(tweet(1, 1), tweet(2, 2))
    async with serve({("GET", SEARCH_PATH): x.search}) as server:
        source = XSource(settings(server))
        first = await source.poll(http, SourceState(), since=SINCE)
        x.tweets += [tweet(3, 3), tweet(4, 4)]
        second = await source.poll(http, first.state, since=SINCE)
    assert [p.native_id for p in second.posts] == [tid(3), tid(4)]
    assert server.requests[-1].query["since_id"] == tid(2)
    assert "start_time" not in server.requests[-1].query
    assert second.state.cursor == tid(4)


async def test_burst_is_followed_with_next_token_within_one_poll(http: OutboundClient) -> None:
    x = FakeX(*(tweet(i, i) for i in range(1, 6)), page_size=2)
    async with serve({("GET", SEARCH_PATH): x.search}) as server:
        poll = await XSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [p.native_id for p in poll.posts] == [tid(i) for i in range(1, 6)]
    assert [r.query.get("next_token") for r in server.requests] == [None, "2", "4"]


async def test_empty_result_without_data_is_not_an_error(http: OutboundClient) -> None:
    x = FakeX(tweet(1, 1))
    async with serve({("GET", SEARCH_PATH): x.search}) as server:
        source = XSource(settings(server))
        first = await source.poll(http, SourceState(), since=SINCE)
        second = await source.poll(http, first.state, since=SINCE)
    assert second.posts == []
    assert second.state.cursor == tid(1)


async def test_rate_limited_answer_waits_until_the_window_resets(http: OutboundClient) -> None:
    headers = {"x-rate-limit-limit": "450", "x-rate-limit-remaining": "0", "x-rate-limit-reset": "4070908800"}
    body = b'{"title": "Too Many Requests", "status": 429}'
    async with serve({("GET", SEARCH_PATH): answering(body, status=429, headers=headers)}) as server:
        with pytest.raises(OutboundError) as caught:
            await XSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert caught.value.retry_after_s == MAX_WAIT_S


async def test_answer_without_meta_is_a_source_format_error(http: OutboundClient) -> None:
    async with serve({("GET", SEARCH_PATH): answering(json.dumps({"data": [tweet(1, 1)]}).encode())}) as server:
        with pytest.raises(SourceFormatError, match="'meta'"):
            await XSource(settings(server)).poll(http, SourceState(), since=SINCE)


async def test_results_without_a_data_list_are_a_source_format_error(http: OutboundClient) -> None:
    body = json.dumps({"data": {"id": tid(1)}, "meta": {"result_count": 1}}).encode()
    async with serve({("GET", SEARCH_PATH): answering(body)}) as server:
        with pytest.raises(SourceFormatError, match="'data'"):
            await XSource(settings(server)).poll(http, SourceState(), since=SINCE)


async def test_malformed_tweet_is_skipped(http: OutboundClient) -> None:
    tweets = [tweet(3, 3), {"id": tid(2), "text": "no time"}, {"text": "no id"}, tweet(1, 1)]
    body = {"data": tweets, "includes": {"users": [USER]}, "meta": {"result_count": 4}}
    async with serve({("GET", SEARCH_PATH): answering(json.dumps(body).encode())}) as server:
        poll = await XSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [p.native_id for p in poll.posts] == [tid(1), tid(3)]


class TestXLikeEveryPagedSource(PagedSourceCases):
    path, what, since = SEARCH_PATH, "x source x-acme", SINCE

    def source(self, server: LocalHttpServer) -> XSource:
        return XSource(settings(server))

    def spent_budget(self) -> SpentBudget:
        x = FakeX(*(tweet(i, i) for i in range(1, 6)), page_size=2)
        x.headers = {"x-rate-limit-limit": "450", "x-rate-limit-remaining": "0", "x-rate-limit-reset": "4070908800"}
        return SpentBudget(x.search, wait_s=MAX_WAIT_S, first_page=[tid(4), tid(5)])
