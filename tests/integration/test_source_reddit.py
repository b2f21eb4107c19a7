"""The Reddit adapter against a local server that answers in Reddit's documented Listing format."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from services.listener.config import RedditSourceSettings
from services.listener.errors import SourceFormatError
from services.listener.sources.base import SourceState
from services.listener.sources.reddit import RedditSource
from services.shared.errors import ConfigError
from services.shared.outbound import HttpStatusError, OutboundClient
from tests.http_server import Handler, LocalHttpServer, serve
from tests.integration.source_cases import (
    PagedSourceCases,
    SpentBudget,
    answering,
)

SINCE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> float:
    return (SINCE + timedelta(minutes=minutes)).timestamp()


def link(short_id: str, minutes: float, title: str = "Parcel stuck again", selftext: str = "") -> dict[str, Any]:
    return {
        "kind": "t3",
        "data": {
            "id": short_id,
            "name": f"t3_{short_id}",
            "title": title,
            "selftext": selftext,
            "author": f"user_{short_id}",
            "created_utc": at(minutes),
            "permalink": f"/r/acme/comments/{short_id}/a_title/",
            "url": f"https://www.reddit.com/r/acme/comments/{short_id}/a_title/",
            "subreddit": "acme",
        },
    }


class FakeReddit:
    """A subreddit: things newest first, ``page_size`` to a page, paged with ``after``."""

    def __init__(self, *things: dict[str, Any], page_size: int = 100) -> None:
        self.things = list(things)
        self.page_size = page_size
        self.headers: dict[str, str] = {}

    async def listing(self, request: web.Request) -> web.StreamResponse:
        newest = sorted(self.things, key=lambda t: float(t["data"]["created_utc"]), reverse=True)
        names = [t["data"]["name"] for t in newest]
        after = request.query.get("after")
        start = names.index(after) + 1 if after in names else 0
        size = min(self.page_size, int(request.query.get("limit", "25")))
        chunk = newest[start : start + size]
        more = start + size < len(newest)
        data = {"after": chunk[-1]["data"]["name"] if more and chunk else None, "before": None, "children": chunk}
        return web.json_response({"kind": "Listing", "data": data}, headers=self.headers)


def settings(server: LocalHttpServer, **overrides: Any) -> RedditSourceSettings:
    values: dict[str, Any] = {
        "kind": "reddit",
        "name": "reddit-acme",
        "base_url": server.base_url,
        "subreddit": "acme",
        "user_agent": "clamor-test/1.0 (by u/clamor)",
    }
    return RedditSourceSettings(**(values | overrides))


async def test_subreddit_poll_requests_the_new_listing_with_the_configured_user_agent(http: OutboundClient) -> None:
    reddit = FakeReddit(link("a1", 5))
    async with serve({("GET", "/r/acme/new.json"): reddit.listing}) as server:
        await RedditSource(settings(server)).poll(http, SourceState(), since=SINCE)
    [request] = server.requests
    assert request.query == {"limit": "100", "raw_json": "1"}
    assert request.headers["User-Agent"] == "clamor-test/1.0 (by u/clamor)"
    assert "Authorization" not in request.headers


async def test_query_with_subreddit_searches_newest_first_within_it(http: OutboundClient) -> None:
    reddit = FakeReddit(link("a1", 5))
    async with serve({("GET", "/r/acme/search.json"): reddit.listing}) as server:
        await RedditSource(settings(server, query="late delivery")).poll(http, SourceState(), since=SINCE)
    [request] = server.requests
    assert request.query == {"q": "late delivery", "sort": "new", "restrict_sr": "1", "limit": "100", "raw_json": "1"}


async def test_query_alone_searches_all_of_reddit(http: OutboundClient) -> None:
    reddit = FakeReddit(link("a1", 5))
    async with serve({("GET", "/search.json"): reddit.listing}) as server:
        await RedditSource(settings(server, subreddit="", query="acme")).poll(http, SourceState(), since=SINCE)
    [request] = server.requests
    assert request.query["q"] == "acme"
    assert "restrict_sr" not in request.query


def test_subreddit_of_only_blanks_without_a_query_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="reddit-acme"):
        RedditSource(RedditSourceSettings(kind="reddit", name="reddit-acme", subreddit="  "))


async def test_link_becomes_a_post_with_title_and_body_permalink_and_own_thread(http: OutboundClient) -> None:
    reddit = FakeReddit(link("a1", 5, title="Refund never arrived", selftext="Three weeks & counting."))
    async with serve({("GET", "/r/acme/new.json"): reddit.listing}) as server:
        poll = await RedditSource(settings(server)).poll(http, SourceState(), since=SINCE)
    [post] = poll.posts
    assert post.native_id == "t3_a1"
    assert post.text == "Refund never arrived\n\nThree weeks & counting."
    assert post.url == "https://www.reddit.com/r/acme/comments/a1/a_title/"
    assert post.author_handle == "user_a1"
    assert post.created_at == SINCE + timedelta(minutes=5)
    assert post.thread_id == "t3_a1"


async def test_comment_thread_is_the_link_it_belongs_to(http: OutboundClient) -> None:
    comment = {
        "kind": "t1",
        "data": {
            "id": "c9",
            "name": "t1_c9",
            "body": "Same problem here.",
            "author": "another_user",
            "created_utc": at(7),
            "link_id": "t3_a1",
            "permalink": "/r/acme/comments/a1/a_title/c9/",
        },
    }
    reddit = FakeReddit(comment)
    async with serve({("GET", "/r/acme/new.json"): reddit.listing}) as server:
        poll = await RedditSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [(p.native_id, p.thread_id, p.text) for p in poll.posts] == [("t1_c9", "t3_a1", "Same problem here.")]


async def test_first_poll_takes_only_posts_newer_than_since_oldest_first(http: OutboundClient) -> None:
    reddit = FakeReddit(link("old", -30), link("b", 20), link("a", 10))
    async with serve({("GET", "/r/acme/new.json"): reddit.listing}) as server:
        poll = await RedditSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [p.native_id for p in poll.posts] == ["t3_a", "t3_b"]
    assert poll.state.seen == ["t3_old", "t3_a", "t3_b"]


async def test_post_older_than_since_is_not_taken_by_a_later_poll_either(http: OutboundClient) -> None:
    reddit = FakeReddit(link("early", -1))
    async with serve({("GET", "/r/acme/new.json"): reddit.listing}) as server:
        source = RedditSource(settings(server))
        first = await source.poll(http, SourceState(), since=SINCE)
        second = await source.poll(http, first.state, since=SINCE)
    assert first.posts == second.posts == []


async def test_second_poll_returns_only_posts_that_are_new(http: OutboundClient) -> None:
    reddit = FakeReddit(link("a", 10), link("b", 20))
    async with serve({("GET", "/r/acme/new.json"): reddit.listing}) as server:
        source = RedditSource(settings(server))
        first = await source.poll(http, SourceState(), since=SINCE)
        reddit.things += [link("c", 30), link("d", 31)]
        second = await source.poll(http, first.state, since=SINCE)
    assert [p.native_id for p in second.posts] == ["t3_c", "t3_d"]
    assert second.state.cursor == str(int(at(31)))


async def test_burst_is_followed_across_pages_within_one_poll(http: OutboundClient) -> None:
    reddit = FakeReddit(*(link(f"p{i}", i) for i in range(1, 6)), page_size=2)
    async with serve({("GET", "/r/acme/new.json"): reddit.listing}) as server:
        poll = await RedditSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [p.native_id for p in poll.posts] == [f"t3_p{i}" for i in range(1, 6)]
    assert [r.query.get("after") for r in server.requests] == [None, "t3_p4", "t3_p2"]


async def test_paging_stops_at_posts_already_taken(http: OutboundClient) -> None:
    reddit = FakeReddit(*(link(f"p{i}", i) for i in range(1, 5)), page_size=2)
    async with serve({("GET", "/r/acme/new.json"): reddit.listing}) as server:
        source = RedditSource(settings(server))
        first = await source.poll(http, SourceState(), since=SINCE)
        reddit.things += [link("p5", 5), link("p6", 6), link("p7", 7)]
        server.requests.clear()
        second = await source.poll(http, first.state, since=SINCE)
    assert [p.native_id for p in second.posts] == ["t3_p5", "t3_p6", "t3_p7"]
    assert len(server.requests) == 2


async def test_paging_is_bounded_within_one_poll(http: OutboundClient) -> None:
    reddit = FakeReddit(*(link(f"p{i}", i) for i in range(1, 30)), page_size=2)
    async with serve({("GET", "/r/acme/new.json"): reddit.listing}) as server:
        poll = await RedditSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert len(server.requests) == 5
    assert [p.native_id for p in poll.posts][-1] == "t3_p29"


async def test_forbidden_subreddit_is_a_permanent_http_status_error(http: OutboundClient) -> None:
    handler = answering(b'{"reason": "private", "message": "Forbidden", "error": 403}', status=403)
    async with serve({("GET", "/r/acme/new.json"): handler}) as server:
        with pytest.raises(HttpStatusError):
            await RedditSource(settings(server)).poll(http, SourceState(), since=SINCE)


async def test_listing_without_data_is_a_source_format_error(http: OutboundClient) -> None:
    async with serve({("GET", "/r/acme/new.json"): answering(b'{"kind": "Listing"}')}) as server:
        with pytest.raises(SourceFormatError, match="'data'"):
            await RedditSource(settings(server)).poll(http, SourceState(), since=SINCE)


async def test_malformed_child_is_skipped(http: OutboundClient) -> None:
    children = [
        link("b", 20),
        {"kind": "t3", "data": {"name": "t3_bad", "title": "no time", "created_utc": "soon"}},
        {"kind": "t3", "data": "not an object"},
        link("a", 10),
    ]
    body = json.dumps({"kind": "Listing", "data": {"after": None, "children": children}}).encode()
    async with serve({("GET", "/r/acme/new.json"): answering(body)}) as server:
        poll = await RedditSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [p.native_id for p in poll.posts] == ["t3_a", "t3_b"]


class OAuthReddit:
    """Reddit's token endpoint plus the OAuth API host, on one local server."""

    def __init__(self) -> None:
        self.issued = 0
        self.listing = FakeReddit(link("a", 10))
        self.reject_once = False

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {("POST", "/api/v1/access_token"): self.token, ("GET", "/r/acme/new"): self.api}

    async def token(self, request: web.Request) -> web.StreamResponse:
        self.issued += 1
        body = {"access_token": f"token-{self.issued}", "token_type": "bearer", "expires_in": 86400, "scope": "*"}
        return web.json_response(body)

    async def api(self, request: web.Request) -> web.StreamResponse:
        if self.reject_once or request.headers.get("Authorization") != f"bearer token-{self.issued}":
            self.reject_once = False
            return web.json_response({"message": "Unauthorized", "error": 401}, status=401)
        return await self.listing.listing(request)


def oauth_settings(server: LocalHttpServer) -> RedditSourceSettings:
    return settings(
        server,
        client_id="app-id",
        client_secret="app-secret",
        token_url=server.url("/api/v1/access_token"),
        oauth_base_url=server.base_url,
    )


async def test_oauth_fetches_an_app_only_token_with_basic_auth_and_uses_it_as_bearer(http: OutboundClient) -> None:
    reddit = OAuthReddit()
    async with serve(reddit.routes()) as server:
        poll = await RedditSource(oauth_settings(server)).poll(http, SourceState(), since=SINCE)
    token_request, api_request = server.requests
    assert token_request.headers["Authorization"] == "Basic " + base64.b64encode(b"app-id:app-secret").decode()
    assert token_request.body == b"grant_type=client_credentials"
    assert token_request.headers["User-Agent"] == "clamor-test/1.0 (by u/clamor)"
    assert api_request.headers["Authorization"] == "bearer token-1"
    assert api_request.headers["User-Agent"] == "clamor-test/1.0 (by u/clamor)"
    assert [p.native_id for p in poll.posts] == ["t3_a"]


async def test_oauth_token_is_reused_until_it_nears_expiry(http: OutboundClient) -> None:
    reddit = OAuthReddit()
    now = [1000.0]
    async with serve(reddit.routes()) as server:
        source = RedditSource(oauth_settings(server), clock=lambda: now[0])
        state = (await source.poll(http, SourceState(), since=SINCE)).state
        state = (await source.poll(http, state, since=SINCE)).state
        assert reddit.issued == 1
        now[0] += 86400 - 30
        await source.poll(http, state, since=SINCE)
    assert reddit.issued == 2
    assert server.requests[-1].headers["Authorization"] == "bearer token-2"


async def test_oauth_rejected_token_is_replaced_once(http: OutboundClient) -> None:
    reddit = OAuthReddit()
    async with serve(reddit.routes()) as server:
        source = RedditSource(oauth_settings(server))
        state = (await source.poll(http, SourceState(), since=SINCE)).state
        reddit.reject_once = True
        reddit.listing.things.append(link("b", 20))
        poll = await source.poll(http, state, since=SINCE)
    assert reddit.issued == 2
    assert [p.native_id for p in poll.posts] == ["t3_b"]


class TestRedditLikeEveryPagedSource(PagedSourceCases):
    path, what, since = "/r/acme/new.json", "reddit source reddit-acme", SINCE

    def source(self, server: LocalHttpServer) -> RedditSource:
        return RedditSource(settings(server))

    def spent_budget(self) -> SpentBudget:
        reddit = FakeReddit(*(link(f"p{i}", i) for i in range(1, 6)), page_size=2)
        reddit.headers = {"X-Ratelimit-Used": "100", "X-Ratelimit-Remaining": "0.0", "X-Ratelimit-Reset": "240"}
        return SpentBudget(reddit.listing, wait_s=240.0, first_page=["t3_p4", "t3_p5"])
