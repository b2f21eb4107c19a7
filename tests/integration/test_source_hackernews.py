"""The Hacker News adapter against a local server that answers Algolia's search_by_date as documented."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from services.listener.config import HackerNewsSourceSettings
from services.listener.errors import SourceFormatError
from services.listener.sources.base import SourceState
from services.listener.sources.hackernews import HackerNewsSource
from services.shared.outbound import OutboundClient
from tests.http_server import LocalHttpServer, serve
from tests.integration.source_cases import (
    PagedSourceCases,
    SpentBudget,
    answering,
)

SINCE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SEARCH_PATH = "/api/v1/search_by_date"


def epoch(minutes: float) -> int:
    return int((SINCE + timedelta(minutes=minutes)).timestamp())


def story(
    object_id: int, minutes: float, title: str | None = "Acme Cloud outage postmortem", **extra: Any
) -> dict[str, Any]:
    created = SINCE + timedelta(minutes=minutes)
    return {
        "objectID": str(object_id),
        "created_at": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "created_at_i": int(created.timestamp()),
        "title": title,
        "url": "https://status.example/incidents/1",
        "author": "ops_olga",
        "points": 3,
        "story_text": None,
        "comment_text": None,
        "num_comments": 0,
        "story_id": object_id,
        "parent_id": None,
        "_tags": ["story", "author_ops_olga", f"story_{object_id}"],
    } | extra


def comment(object_id: int, minutes: float, html: str, story_id: int) -> dict[str, Any]:
    return story(
        object_id,
        minutes,
        title=None,
        url=None,
        comment_text=html,
        story_id=story_id,
        parent_id=story_id,
        author="dev_dan",
        _tags=["comment", "author_dev_dan", f"story_{story_id}"],
    )


class FakeAlgolia:
    """Hits newest first, filtered by ``created_at_i>N``, numbered pages of ``page_size``."""

    def __init__(self, *hits: dict[str, Any], page_size: int = 100) -> None:
        self.hits = list(hits)
        self.page_size = page_size
        self.headers: dict[str, str] = {}

    async def search(self, request: web.Request) -> web.StreamResponse:
        newest = sorted(self.hits, key=lambda h: h["created_at_i"], reverse=True)
        match = re.fullmatch(r"created_at_i>(\d+)", request.query.get("numericFilters", ""))
        if match:
            newest = [h for h in newest if h["created_at_i"] > int(match.group(1))]
        size = min(self.page_size, int(request.query.get("hitsPerPage", "20")))
        page = int(request.query.get("page", "0"))
        body = {
            "hits": newest[page * size : (page + 1) * size],
            "nbHits": len(newest),
            "page": page,
            "nbPages": max(-(-len(newest) // size), 1),
            "hitsPerPage": size,
            "query": request.query.get("query", ""),
        }
        return web.json_response(body, headers=self.headers)


def settings(server: LocalHttpServer) -> HackerNewsSourceSettings:
    return HackerNewsSourceSettings(kind="hackernews", name="hn-acme", base_url=server.base_url, query="acme")


async def test_first_poll_searches_by_date_from_since(http: OutboundClient) -> None:
    algolia = FakeAlgolia(story(100, 5))
    async with serve({("GET", SEARCH_PATH): algolia.search}) as server:
        await HackerNewsSource(settings(server)).poll(http, SourceState(), since=SINCE)
    [request] = server.requests
    assert request.query == {
        "query": "acme",
        "tags": "(story,comment)",
        "numericFilters": f"created_at_i>{epoch(0)}",
        "hitsPerPage": "100",
        "page": "0",
    }


async def test_story_becomes_a_post_with_title_text_and_item_url(http: OutboundClient) -> None:
    algolia = FakeAlgolia(story(100, 5, story_text="Ask HN: is it down for everyone?<p>Since 9am &amp; counting."))
    async with serve({("GET", SEARCH_PATH): algolia.search}) as server:
        poll = await HackerNewsSource(settings(server)).poll(http, SourceState(), since=SINCE)
    [post] = poll.posts
    assert post.native_id == "100"
    assert post.text == "Acme Cloud outage postmortem\n\nAsk HN: is it down for everyone?\nSince 9am & counting."
    assert post.url == "https://news.ycombinator.com/item?id=100"
    assert post.author_handle == "ops_olga"
    assert post.created_at == SINCE + timedelta(minutes=5)
    assert post.thread_id == "100"


async def test_comment_becomes_plain_text_in_its_story_thread(http: OutboundClient) -> None:
    html = 'We saw the same on Acme&#x27;s EU region.<p>Their <a href="https://status.example">status page</a> lied.'
    algolia = FakeAlgolia(comment(101, 6, html, story_id=100))
    async with serve({("GET", SEARCH_PATH): algolia.search}) as server:
        poll = await HackerNewsSource(settings(server)).poll(http, SourceState(), since=SINCE)
    [post] = poll.posts
    assert post.text == "We saw the same on Acme's EU region.\nTheir status page lied."
    assert (post.thread_id, post.author_handle) == ("100", "dev_dan")


async def test_second_poll_returns_only_posts_that_are_new(http: OutboundClient) -> None:
    algolia = FakeAlgolia(story(100, 1), story(101, 2))
    async with serve({("GET", SEARCH_PATH): algolia.search}) as server:
        source = HackerNewsSource(settings(server))
        first = await source.poll(http, SourceState(), since=SINCE)
        algolia.hits += [story(102, 3), story(103, 4)]
        second = await source.poll(http, first.state, since=SINCE)
    assert [p.native_id for p in second.posts] == ["102", "103"]
    assert second.state.cursor == str(epoch(4))


async def test_later_poll_filters_from_the_cursor_with_a_margin_for_late_indexing(http: OutboundClient) -> None:
    algolia = FakeAlgolia(story(100, 10))
    async with serve({("GET", SEARCH_PATH): algolia.search}) as server:
        source = HackerNewsSource(settings(server))
        first = await source.poll(http, SourceState(), since=SINCE)
        algolia.hits.append(story(99, 8))
        second = await source.poll(http, first.state, since=SINCE)
    assert server.requests[-1].query["numericFilters"] == f"created_at_i>{epoch(5)}"
    assert [p.native_id for p in second.posts] == ["99"]


async def test_burst_is_followed_across_pages_within_one_poll(http: OutboundClient) -> None:
    algolia = FakeAlgolia(*(story(100 + i, i) for i in range(1, 6)), page_size=2)
    async with serve({("GET", SEARCH_PATH): algolia.search}) as server:
        poll = await HackerNewsSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [p.native_id for p in poll.posts] == [str(100 + i) for i in range(1, 6)]
    assert [r.query["page"] for r in server.requests] == ["0", "1", "2"]


async def test_paging_is_bounded_within_one_poll(http: OutboundClient) -> None:
    algolia = FakeAlgolia(*(story(100 + i, i) for i in range(1, 30)), page_size=2)
    async with serve({("GET", SEARCH_PATH): algolia.search}) as server:
        poll = await HackerNewsSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert len(server.requests) == 5
    assert len(poll.posts) == 10


async def test_answer_without_hits_is_a_source_format_error(http: OutboundClient) -> None:
    async with serve({("GET", SEARCH_PATH): answering(b'{"nbHits": 0, "page": 0}')}) as server:
        with pytest.raises(SourceFormatError, match="'hits'"):
            await HackerNewsSource(settings(server)).poll(http, SourceState(), since=SINCE)


async def test_malformed_hit_is_skipped(http: OutboundClient) -> None:
    hits = [story(102, 2), {"objectID": "103", "title": "no time at all"}, [], story(101, 1)]
    async with serve({("GET", SEARCH_PATH): answering(json.dumps({"hits": hits, "nbPages": 1}).encode())}) as server:
        poll = await HackerNewsSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [p.native_id for p in poll.posts] == ["101", "102"]


class TestHackerNewsLikeEveryPagedSource(PagedSourceCases):
    path, what, since = SEARCH_PATH, "hackernews source hn-acme", SINCE

    def source(self, server: LocalHttpServer) -> HackerNewsSource:
        return HackerNewsSource(settings(server))

    def spent_budget(self) -> SpentBudget:
        algolia = FakeAlgolia(*(story(100 + i, i) for i in range(1, 6)), page_size=2)
        algolia.headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "300"}
        return SpentBudget(algolia.search, wait_s=300.0, first_page=["104", "105"])
