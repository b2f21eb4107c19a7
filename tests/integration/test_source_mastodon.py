"""The Mastodon adapter against a local server that answers with documented Status entities."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from services.listener.config import MastodonSourceSettings
from services.listener.errors import SourceFormatError
from services.listener.sources.base import SourceState
from services.listener.sources.mastodon import MastodonSource
from services.shared.errors import ConfigError
from services.shared.outbound import OutboundClient
from services.shared.ratelimit import MAX_WAIT_S
from tests.http_server import LocalHttpServer, serve
from tests.integration.source_cases import (
    PagedSourceCases,
    SpentBudget,
    answering,
)

SINCE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TAG_PATH = "/api/v1/timelines/tag/acme"
SEARCH_PATH = "/api/v2/search"


def status(
    number: int, minutes: float, content: str = "<p>My parcel is late again</p>", **extra: Any
) -> dict[str, Any]:
    """A Status whose id grows with ``number`` the way Mastodon's time-based ids do."""
    native_id = str(110_000_000_000_000_000 + number)
    return {
        "id": native_id,
        "created_at": (SINCE + timedelta(minutes=minutes)).isoformat().replace("+00:00", ".000Z"),
        "in_reply_to_id": None,
        "language": "en",
        "uri": f"https://social.example/users/ana/statuses/{native_id}",
        "url": f"https://social.example/@ana/{native_id}",
        "content": content,
        "spoiler_text": "",
        "reblog": None,
        "account": {
            "id": "42",
            "username": "ana",
            "acct": "ana@social.example",
            "display_name": "Ana",
            "followers_count": 310,
        },
    } | extra


def sid(number: int) -> str:
    return str(110_000_000_000_000_000 + number)


class FakeMastodon:
    """A timeline that honours limit, max_id, since_id and min_id as the API documents them."""

    def __init__(self, *statuses: dict[str, Any]) -> None:
        self.statuses = list(statuses)
        self.headers: dict[str, str] = {}

    def page(self, request: web.Request) -> list[dict[str, Any]]:
        newest = sorted(self.statuses, key=lambda s: int(s["id"]), reverse=True)
        query = request.query
        if "max_id" in query:
            newest = [s for s in newest if int(s["id"]) < int(query["max_id"])]
        if "since_id" in query:
            newest = [s for s in newest if int(s["id"]) > int(query["since_id"])]
        limit = min(int(query.get("limit", "20")), 40)
        if "min_id" in query:
            # The statuses immediately newer than min_id, still newest first.
            newer = [s for s in newest if int(s["id"]) > int(query["min_id"])]
            return newer[-limit:]
        return newest[:limit]

    async def timeline(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.page(request), headers=self.headers)

    async def search(self, request: web.Request) -> web.StreamResponse:
        body = {"accounts": [], "statuses": self.page(request), "hashtags": []}
        return web.json_response(body, headers=self.headers)


def settings(server: LocalHttpServer, **overrides: Any) -> MastodonSourceSettings:
    values: dict[str, Any] = {"kind": "mastodon", "name": "masto-acme", "base_url": server.base_url, "hashtag": "acme"}
    return MastodonSourceSettings(**(values | overrides))


async def test_hashtag_poll_reads_the_public_tag_timeline_without_a_token(http: OutboundClient) -> None:
    mastodon = FakeMastodon(status(1, 5))
    async with serve({("GET", TAG_PATH): mastodon.timeline}) as server:
        await MastodonSource(settings(server, hashtag="#acme")).poll(http, SourceState(), since=SINCE)
    [request] = server.requests
    assert request.query == {"limit": "40"}
    assert "Authorization" not in request.headers


async def test_query_poll_searches_statuses_with_the_bearer_token(http: OutboundClient) -> None:
    mastodon = FakeMastodon(status(1, 5))
    async with serve({("GET", SEARCH_PATH): mastodon.search}) as server:
        source = MastodonSource(settings(server, hashtag="", query="acme refund", access_token="tok-1"))
        poll = await source.poll(http, SourceState(), since=SINCE)
    [request] = server.requests
    assert request.query == {"q": "acme refund", "type": "statuses", "resolve": "false", "limit": "40"}
    assert request.headers["Authorization"] == "Bearer tok-1"
    assert [p.native_id for p in poll.posts] == [sid(1)]


def test_hashtag_that_is_only_a_hash_sign_without_a_query_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="masto-acme"):
        MastodonSource(
            MastodonSourceSettings(kind="mastodon", name="masto-acme", base_url="https://social.example", hashtag="#")
        )


async def test_status_becomes_a_post_with_plain_text_author_and_reply_thread(http: OutboundClient) -> None:
    html = '<p>Two weeks &amp; no refund.</p><p>Ask <span class="h-card"><a href="https://x.example/@help">@help</a></span></p>'
    reply = status(1, 5, content=html, in_reply_to_id="109999", language="und")
    mastodon = FakeMastodon(reply)
    async with serve({("GET", TAG_PATH): mastodon.timeline}) as server:
        poll = await MastodonSource(settings(server)).poll(http, SourceState(), since=SINCE)
    [post] = poll.posts
    assert post.native_id == sid(1)
    assert post.text == "Two weeks & no refund.\nAsk @help"
    assert post.url == f"https://social.example/@ana/{sid(1)}"
    assert (post.author_handle, post.author_name, post.followers) == ("ana@social.example", "Ana", 310)
    assert post.created_at == SINCE + timedelta(minutes=5)
    assert post.language == ""
    assert post.thread_id == "109999"


async def test_plain_http_status_url_is_kept(http: OutboundClient) -> None:
    mastodon = FakeMastodon(status(1, 5, url="http://small.example/@ana/1"))
    async with serve({("GET", TAG_PATH): mastodon.timeline}) as server:
        poll = await MastodonSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert poll.posts[0].url == "http://small.example/@ana/1"


async def test_status_url_that_is_not_http_falls_back_to_its_uri(http: OutboundClient) -> None:
    mastodon = FakeMastodon(status(1, 5, url="javascript:alert(1)"))
    async with serve({("GET", TAG_PATH): mastodon.timeline}) as server:
        poll = await MastodonSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert poll.posts[0].url == f"https://social.example/users/ana/statuses/{sid(1)}"


async def test_first_poll_pages_back_to_since_and_takes_only_newer_posts(http: OutboundClient) -> None:
    mastodon = FakeMastodon(*(status(i, i - 10) for i in range(1, 61)))
    async with serve({("GET", TAG_PATH): mastodon.timeline}) as server:
        poll = await MastodonSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [p.native_id for p in poll.posts] == [sid(i) for i in range(11, 61)]
    assert [r.query.get("max_id") for r in server.requests] == [None, sid(21)]
    assert poll.state.cursor == sid(60)


async def test_second_poll_asks_from_the_cursor_and_returns_only_new_posts(http: OutboundClient) -> None:
    mastodon = FakeMastodon(status(1, 1), status(2, 2))
    async with serve({("GET", TAG_PATH): mastodon.timeline}) as server:
        source = MastodonSource(settings(server))
        first = await source.poll(http, SourceState(), since=SINCE)
        mastodon.statuses += [status(3, 3), status(4, 4)]
        second = await source.poll(http, first.state, since=SINCE)
    assert [p.native_id for p in second.posts] == [sid(3), sid(4)]
    assert server.requests[-1].query == {"limit": "40", "min_id": sid(2)}


async def test_burst_is_followed_forwards_across_pages_within_one_poll(http: OutboundClient) -> None:
    mastodon = FakeMastodon(status(1, 1))
    async with serve({("GET", TAG_PATH): mastodon.timeline}) as server:
        source = MastodonSource(settings(server))
        first = await source.poll(http, SourceState(), since=SINCE)
        mastodon.statuses += [status(i, i) for i in range(2, 92)]
        server.requests.clear()
        second = await source.poll(http, first.state, since=SINCE)
    assert [p.native_id for p in second.posts] == [sid(i) for i in range(2, 92)]
    assert [r.query["min_id"] for r in server.requests] == [sid(1), sid(41), sid(81)]
    assert second.state.cursor == sid(91)


async def test_burst_beyond_the_page_bound_is_left_for_the_next_poll(http: OutboundClient) -> None:
    mastodon = FakeMastodon(status(1, 1))
    async with serve({("GET", TAG_PATH): mastodon.timeline}) as server:
        source = MastodonSource(settings(server))
        state = (await source.poll(http, SourceState(), since=SINCE)).state
        mastodon.statuses += [status(i, i) for i in range(2, 232)]
        second = await source.poll(http, state, since=SINCE)
        third = await source.poll(http, second.state, since=SINCE)
    assert len(second.posts) == 200
    assert [p.native_id for p in third.posts] == [sid(i) for i in range(202, 232)]


async def test_timeline_that_is_not_an_array_is_a_source_format_error(http: OutboundClient) -> None:
    async with serve({("GET", TAG_PATH): answering(b'{"error": "This action is not allowed"}')}) as server:
        with pytest.raises(SourceFormatError, match="array"):
            await MastodonSource(settings(server)).poll(http, SourceState(), since=SINCE)


async def test_search_without_statuses_is_a_source_format_error(http: OutboundClient) -> None:
    async with serve({("GET", SEARCH_PATH): answering(b'{"accounts": [], "hashtags": []}')}) as server:
        source = MastodonSource(settings(server, hashtag="", query="acme"))
        with pytest.raises(SourceFormatError, match="'statuses'"):
            await source.poll(http, SourceState(), since=SINCE)


async def test_malformed_status_is_skipped(http: OutboundClient) -> None:
    statuses = [status(3, 3), {"id": 12345, "content": "id is not a string"}, "nonsense", status(2, 2)]
    async with serve({("GET", TAG_PATH): answering(json.dumps(statuses).encode())}) as server:
        poll = await MastodonSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [p.native_id for p in poll.posts] == [sid(2), sid(3)]


class TestMastodonLikeEveryPagedSource(PagedSourceCases):
    path, what, since = TAG_PATH, "mastodon source masto-acme", SINCE

    def source(self, server: LocalHttpServer) -> MastodonSource:
        return MastodonSource(settings(server))

    def spent_budget(self) -> SpentBudget:
        mastodon = FakeMastodon(*(status(i, i) for i in range(1, 61)))
        mastodon.headers = {
            "X-RateLimit-Limit": "300",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "2099-01-01T00:00:00.000Z",
        }
        return SpentBudget(mastodon.timeline, wait_s=MAX_WAIT_S, first_page=[sid(i) for i in range(21, 61)])
