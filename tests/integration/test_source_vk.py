"""The VK adapter against a local server that answers newsfeed.search as VK documents it."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web

from services.listener.config import VkSourceSettings
from services.listener.errors import ApiRefusedError, ApiThrottledError, SourceFormatError
from services.listener.sources.base import SourceState
from services.listener.sources.vk import VkSource
from services.shared.outbound import OutboundClient
from tests.http_server import LocalHttpServer, RecordedRequest, serve
from tests.integration.source_cases import JsonSourceCases, answering

SEARCH_PATH = "/method/newsfeed.search"
SINCE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
TOKEN = "vk1.a.service-token-for-tests"
PROFILE = {
    "id": 5150,
    "first_name": "Ольга",
    "last_name": "Смирнова",
    "screen_name": "olga_smr",
    "followers_count": 312,
    "can_access_closed": True,
    "is_closed": False,
}
GROUP = {"id": 7001, "name": "Отзывы о ЛунаМаркет", "screen_name": "lunamarket_otzyvy", "members_count": 18_400}


def at(minutes: float) -> int:
    return int((SINCE + timedelta(minutes=minutes)).timestamp())


COMPLAINT = "ЛунаМаркет снова задержал заказ"


def wall_post(number: int, minutes: float, text: str = COMPLAINT, **extra: Any) -> dict[str, Any]:
    """A wall post on Olga's own wall; ``number`` orders posts by time, as their dates do."""
    return {
        "id": number,
        "owner_id": PROFILE["id"],
        "from_id": PROFILE["id"],
        "date": at(minutes),
        "post_type": "post",
        "text": text,
        "comments": {"count": 0},
        "likes": {"count": 2},
        "reposts": {"count": 0},
        "views": {"count": 40},
    } | extra


def form(request: RecordedRequest) -> dict[str, str]:
    return dict(parse_qsl(request.body.decode()))


class FakeVk:
    """newsfeed.search: newest first from start_time, pages linked by next_from, errors as VK sends them."""

    def __init__(self, *posts: dict[str, Any], page_size: int | None = None) -> None:
        self.posts = list(posts)
        self.page_size = page_size
        # Error objects answered, one a request, before any results.
        self.errors: list[dict[str, Any]] = []
        # Errors answered once this many requests were served.
        self.errors_after = 0
        self.served = 0
        self.arrivals: list[float] = []

    async def search(self, request: web.Request) -> web.StreamResponse:
        self.arrivals.append(asyncio.get_running_loop().time())
        params = dict(parse_qsl((await request.read()).decode()))
        if self.errors and self.served >= self.errors_after:
            return web.json_response({"error": self.errors.pop(0) | {"request_params": []}})
        self.served += 1
        if params.get("access_token") != TOKEN:
            return web.json_response({"error": {"error_code": 5, "error_msg": "User authorization failed"}})
        newest = sorted(self.posts, key=lambda p: (p["date"], p["id"]), reverse=True)
        newest = [p for p in newest if p["date"] >= int(params["start_time"])]
        offset = int(params.get("start_from", "0").partition("/")[0])
        size = self.page_size or int(params["count"])
        chunk = newest[offset : offset + size]
        result: dict[str, Any] = {"items": chunk, "count": len(newest), "total_count": len(newest)}
        if offset + size < len(newest):
            result["next_from"] = f"{offset + size}/{chunk[-1]['owner_id']}_{chunk[-1]['id']}"
        if params.get("extended") == "1":
            result |= {"profiles": [PROFILE], "groups": [GROUP]}
        return web.json_response({"response": result})


def settings(server: LocalHttpServer, **overrides: Any) -> VkSourceSettings:
    values: dict[str, Any] = {
        "kind": "vk",
        "name": "vk-luna",
        "base_url": server.base_url,
        "access_token": TOKEN,
        "query": "ЛунаМаркет",
    }
    return VkSourceSettings(**(values | overrides))


async def poll_once(vk: FakeVk, http: OutboundClient, **overrides: Any) -> tuple[Any, LocalHttpServer]:
    async with serve({("POST", SEARCH_PATH): vk.search}) as server:
        poll = await VkSource(settings(server, **overrides)).poll(http, SourceState(), since=SINCE)
    return poll, server


async def test_first_poll_posts_the_search_form_from_since_with_the_token_outside_the_url(
    http: OutboundClient,
) -> None:
    _, server = await poll_once(FakeVk(wall_post(1, 5)), http)
    [request] = server.requests
    assert (request.method, request.path, request.query) == ("POST", SEARCH_PATH, {})
    assert form(request) == {
        "q": "ЛунаМаркет",
        "count": "200",
        "start_time": str(int(SINCE.timestamp())),
        "extended": "1",
        "fields": "screen_name,followers_count,members_count",
        "v": "5.199",
        "access_token": TOKEN,
    }


async def test_wall_post_becomes_a_post_with_its_author_from_the_profiles(http: OutboundClient) -> None:
    text = "[club7001|ЛунаМаркет], где мой возврат? Жду третью неделю."
    poll, _ = await poll_once(FakeVk(wall_post(17, 5, text=text)), http)
    [post] = poll.posts
    assert post.native_id == "5150_17"
    assert post.url == "https://vk.com/wall5150_17"
    assert post.text == "ЛунаМаркет, где мой возврат? Жду третью неделю."
    assert (post.author_handle, post.author_name, post.followers) == ("olga_smr", "Ольга Смирнова", 312)
    assert post.created_at == SINCE + timedelta(minutes=5)
    assert post.thread_id == "5150_17"
    assert post.language == ""


async def test_community_post_is_attributed_to_the_community_with_its_members_as_reach(http: OutboundClient) -> None:
    community = wall_post(3, 5, owner_id=-7001, from_id=-7001, text="Курьер ЛунаМаркет не приехал, пишите сюда")
    poll, _ = await poll_once(FakeVk(community), http)
    [post] = poll.posts
    assert post.native_id == "-7001_3"
    assert post.url == "https://vk.com/wall-7001_3"
    assert (post.author_handle, post.author_name, post.followers) == (
        "lunamarket_otzyvy",
        "Отзывы о ЛунаМаркет",
        18_400,
    )


async def test_results_are_followed_over_two_pages_with_start_from(http: OutboundClient) -> None:
    poll, server = await poll_once(FakeVk(*(wall_post(i, i) for i in range(1, 4)), page_size=2), http)
    assert [p.native_id for p in poll.posts] == ["5150_1", "5150_2", "5150_3"]
    assert [form(r).get("start_from") for r in server.requests] == [None, "2/5150_2"]
    assert poll.state.cursor == str(at(3))


async def test_a_page_of_posts_without_text_does_not_end_the_paging(http: OutboundClient) -> None:
    photos = [wall_post(i, i, text="", attachments=[{"type": "photo"}]) for i in (3, 4)]
    poll, server = await poll_once(FakeVk(wall_post(1, 1), wall_post(2, 2), *photos, page_size=2), http)
    assert len(server.requests) == 2
    assert [p.native_id for p in poll.posts] == ["5150_1", "5150_2"]


async def test_second_poll_searches_from_a_little_before_the_cursor_and_takes_only_new_posts(
    http: OutboundClient,
) -> None:
    vk = FakeVk(wall_post(1, 1), wall_post(2, 2))
    async with serve({("POST", SEARCH_PATH): vk.search}) as server:
        source = VkSource(settings(server))
        first = await source.poll(http, SourceState(), since=SINCE)
        # Indexed late: dated before the newest post of the first poll, found only now.
        vk.posts += [wall_post(3, 1.5), wall_post(4, 4)]
        second = await source.poll(http, first.state, since=SINCE)
    assert [p.native_id for p in second.posts] == ["5150_3", "5150_4"]
    assert form(server.requests[-1])["start_time"] == str(at(2) - 300)
    assert second.state.cursor == str(at(4))


async def test_item_without_an_id_a_time_or_text_is_skipped(http: OutboundClient) -> None:
    broken = [
        {"owner_id": 5150, "date": at(3), "text": "без id"},
        wall_post(2, 2, date="вчера"),
        wall_post(3, 3, text="   "),
        wall_post(4, 4, owner_id=True),
    ]
    body = {"response": {"items": [*broken, wall_post(1, 1)], "count": 5, "profiles": [PROFILE], "groups": []}}
    async with serve({("POST", SEARCH_PATH): answering(json.dumps(body).encode())}) as server:
        poll = await VkSource(settings(server)).poll(http, SourceState(), since=SINCE)
    assert [p.native_id for p in poll.posts] == ["5150_1"]


async def test_error_5_is_a_permanent_error_naming_access_token_and_never_the_token(http: OutboundClient) -> None:
    async with serve({("POST", SEARCH_PATH): FakeVk(wall_post(1, 1)).search}) as server:
        with pytest.raises(ApiRefusedError) as refused:
            await VkSource(settings(server, access_token="vk1.a.revoked")).poll(http, SourceState(), since=SINCE)
    message = str(refused.value)
    assert message.startswith("vk source vk-luna: VK error 5 (authorization failed): check access_token")
    assert "vk1.a.revoked" not in message


@pytest.mark.parametrize(
    ("code", "message", "wait_s"),
    [(6, "Too many requests per second", 1.0), (9, "Flood control", 600.0), (29, "Rate limit reached", 3600.0)],
)
async def test_throttling_errors_are_transient_with_the_wait_their_code_calls_for(
    http: OutboundClient, code: int, message: str, wait_s: float
) -> None:
    vk = FakeVk(wall_post(1, 1))
    vk.errors = [{"error_code": code, "error_msg": message}]
    with pytest.raises(ApiThrottledError) as throttled:
        await poll_once(vk, http)
    assert throttled.value.retry_after_s == wait_s
    assert str(throttled.value).startswith(f"vk source vk-luna: VK error {code} (")
    assert str(throttled.value).endswith(message)


async def test_error_on_the_second_page_fails_the_poll_so_the_next_repeats_it(http: OutboundClient) -> None:
    vk = FakeVk(*(wall_post(i, i) for i in range(1, 4)), page_size=2)
    vk.errors, vk.errors_after = [{"error_code": 6, "error_msg": "Too many requests per second"}], 1
    state = SourceState()
    async with serve({("POST", SEARCH_PATH): vk.search}) as server:
        source = VkSource(settings(server))
        with pytest.raises(ApiThrottledError):
            await source.poll(http, state, since=SINCE)
        assert (state.cursor, state.seen) == ("", [])
        retried = await source.poll(http, state, since=SINCE)
    assert [p.native_id for p in retried.posts] == ["5150_1", "5150_2", "5150_3"]


async def test_other_error_is_permanent_and_says_its_code_and_message(http: OutboundClient) -> None:
    vk = FakeVk(wall_post(1, 1))
    vk.errors = [{"error_code": 100, "error_msg": "One of the parameters specified was missing or invalid: q"}]
    with pytest.raises(ApiRefusedError, match=r"^vk source vk-luna: VK error 100: One of the parameters"):
        await poll_once(vk, http)


async def test_vk_internal_error_is_transient(http: OutboundClient) -> None:
    vk = FakeVk(wall_post(1, 1))
    vk.errors = [{"error_code": 10, "error_msg": "Internal server error"}]
    with pytest.raises(ApiThrottledError, match="VK error 10"):
        await poll_once(vk, http)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"response": {"count": 0}}, "'items' list"),
        ({"response": [1, 2]}, "'response' or an 'error' object"),
        ({"error": "denied"}, "'error' object to be an object"),
        ({"error": {"error_msg": "no code"}}, "without a numeric error_code"),
    ],
)
async def test_answer_that_is_not_a_documented_shape_is_a_source_format_error(
    http: OutboundClient, body: object, says: str
) -> None:
    async with serve({("POST", SEARCH_PATH): answering(json.dumps(body).encode())}) as server:
        with pytest.raises(SourceFormatError, match=says):
            await VkSource(settings(server)).poll(http, SourceState(), since=SINCE)


async def test_sources_with_one_token_share_its_three_requests_a_second(http: OutboundClient) -> None:
    vk = FakeVk(*(wall_post(i, i) for i in range(1, 6)), page_size=2)
    async with serve({("POST", SEARCH_PATH): vk.search}) as server:
        first, second = VkSource(settings(server)), VkSource(settings(server, name="vk-luna-2", query="Луна"))
        await asyncio.gather(
            first.poll(http, SourceState(), since=SINCE), second.poll(http, SourceState(), since=SINCE)
        )
    gaps = [later - earlier for earlier, later in zip(vk.arrivals, vk.arrivals[1:], strict=False)]
    assert len(vk.arrivals) == 6
    # Each request leaves a third of a second after the answer to the one before, so arrives at least that late.
    assert min(gaps) >= 1 / 3 - 0.01


class TestVkLikeEveryJsonSource(JsonSourceCases):
    path, method, what, since = SEARCH_PATH, "POST", "vk source vk-luna", SINCE

    def source(self, server: LocalHttpServer) -> VkSource:
        return VkSource(settings(server))
