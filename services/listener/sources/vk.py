"""VK (VKontakte): ``newsfeed.search``, the search of posts on open walls, with a service token.

The cursor is the newest post time taken (unix seconds). Each poll searches from a few minutes
before it with ``start_time``, since a post may be indexed a little after it was published, and
the seen ids drop what was already taken; a first poll searches from ``since``. Results come
newest first and page with ``next_from`` → ``start_from`` (at most ``MAX_PAGES`` a poll: with 200
a page that is the first 1000 results, all VK gives of one search anyway).

Parameters go in a POST form, so the token is never part of a URL that a proxy or an error could
log. VK reports errors with HTTP 200 and an ``error`` object; :func:`vk_error` maps its codes onto
the error tree. Every request draws from the token's budget of three a second (VK's limit per
token), shared by all sources with that token.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeGuard

from services.listener.errors import ApiRefusedError, ApiThrottledError, SourceFormatError
from services.listener.sources.base import Poll, Post, Source, SourceState, poll_from
from services.listener.sources.common import (
    MAX_PAGES,
    decode_json,
    parse_time,
    retry_after_for,
    safe_int,
    string,
    take_new,
)
from services.listener.sources.throttle import credential_budget
from services.shared.outbound import raise_for_status

if TYPE_CHECKING:
    from services.listener.config import VkSourceSettings
    from services.shared.errors import ClamorError
    from services.shared.outbound import HttpResponse, OutboundClient

# VK's limit for a token: three requests a second.
REQUESTS_PER_S = 3.0
# How far before the cursor each poll searches again: posts reach the search index a little late.
LATE_INDEXING = timedelta(minutes=5)
# Author fields for the extended answer: followers of a person, members of a community (reach).
AUTHOR_FIELDS = "screen_name,followers_count,members_count"
# Error 6: more than three requests in a second. The window is a second, so a second is enough.
TOO_MANY_REQUESTS = 6
TOO_MANY_REQUESTS_WAIT_S = 1.0
# Error 9: flood control, VK's answer to the same request repeated too often. It does not say for
# how long; asking again within minutes only extends it, so wait ten.
FLOOD_CONTROL_WAIT_S = 600.0
# Error 29: the method's quota for the token (per day) is spent. VK does not say when it renews;
# an hour between tries costs a handful of requests a day instead of one every poll.
RATE_LIMIT_REACHED_WAIT_S = 3600.0
_THROTTLED = {
    TOO_MANY_REQUESTS: ("too many requests per second", TOO_MANY_REQUESTS_WAIT_S),
    9: ("flood control", FLOOD_CONTROL_WAIT_S),
    29: ("rate limit of the method reached", RATE_LIMIT_REACHED_WAIT_S),
}
# 1: unknown error, 10: internal server error: VK's own trouble, worth another poll.
_VK_FAILED = frozenset({1, 10})
# 5: user authorization failed (a bad or expired token), 28: application authorization failed.
_BAD_TOKEN = frozenset({5, 28})
# Mentions in post text: "[id1|Ann]", "[club2|Acme]" read as the name alone.
_MENTION = re.compile(r"\[(?:id|club|public|event)\d+\|([^\[\]|]*)\]")
_MAX_ERROR_MESSAGE = 200


class VkSource(Source):
    kind: ClassVar[str] = "vk"
    platform = "vk"

    def __init__(self, settings: VkSourceSettings) -> None:
        self.settings = settings
        self._what = f"vk source {settings.name}"
        self._url = f"{settings.base_url}/method/newsfeed.search"

    async def poll(self, http: OutboundClient, state: SourceState, *, since: datetime) -> Poll:
        start = _start(state.cursor, since)
        items: list[tuple[datetime, Post]] = []
        start_from = ""
        for _ in range(MAX_PAGES):
            response, page = await self._search(http, start, start_from)
            found, start_from = self._parse(page)
            items.extend(found)
            # A page of posts without text (photos alone) yields nothing, yet the next page may.
            if not page["items"] or not start_from:
                break
        posts = take_new(items, state, newer_than=None if state.cursor else since)
        newest = max([int(at.timestamp()) for at, _ in items] + [safe_int(state.cursor)])
        state.cursor = str(newest) if newest else ""
        return poll_from(response, posts, state)

    async def _search(self, http: OutboundClient, start: int, start_from: str) -> tuple[HttpResponse, Any]:
        """One page: the response and the ``response`` object of its body, or the error VK answered."""
        form = {
            "q": self.settings.query,
            "count": str(self.settings.count),
            "start_time": str(start),
            "extended": "1",
            "fields": AUTHOR_FIELDS,
            "v": self.settings.api_version,
            "access_token": self.settings.access_token,
        }
        if start_from:
            form["start_from"] = start_from
        budget = credential_budget("vk", self.settings.access_token, rate_per_s=REQUESTS_PER_S)
        await budget.acquire()
        try:
            response = await http.request("POST", self._url, data=form)
        finally:
            budget.answered()
        raise_for_status(response, what=self._what, retry_after_s=retry_after_for(response))
        body = decode_json(response.body, what=self._what)
        if isinstance(body, dict) and "error" in body:
            error = body["error"]
            if isinstance(error, dict) and error.get("error_code") == TOO_MANY_REQUESTS:
                # The other sources with this token hold off too.
                budget.pause(TOO_MANY_REQUESTS_WAIT_S)
            raise vk_error(error, what=self._what)
        page = body.get("response") if isinstance(body, dict) else None
        if not isinstance(page, dict):
            raise SourceFormatError(f"{self._what}: expected an object with a 'response' or an 'error' object")
        return response, page

    def _parse(self, page: dict[str, Any]) -> tuple[list[tuple[datetime, Post]], str]:
        """A page's posts, newest first, and the ``next_from`` of the page after it ('' on the last)."""
        items = page.get("items")
        if not isinstance(items, list):
            raise SourceFormatError(f"{self._what}: expected an 'items' list in the response")
        authors = _authors(page.get("profiles"), page.get("groups"))
        posts = [post for post in (_post(item, authors) for item in items) if post is not None]
        return posts, string(page.get("next_from"))


def vk_error(error: object, *, what: str) -> ClamorError:
    """The error VK's ``error`` object stands for: throttled (with a wait), failed for now, or refused."""
    if not isinstance(error, dict):
        return SourceFormatError(f"{what}: expected the 'error' object to be an object")
    code = error.get("error_code")
    message = string(error.get("error_msg"))[:_MAX_ERROR_MESSAGE]
    if not isinstance(code, int) or isinstance(code, bool):
        return SourceFormatError(f"{what}: VK error without a numeric error_code: {message}")
    if code in _THROTTLED:
        meaning, wait_s = _THROTTLED[code]
        return ApiThrottledError(f"{what}: VK error {code} ({meaning}): {message}", retry_after_s=wait_s)
    if code in _VK_FAILED:
        return ApiThrottledError(f"{what}: VK error {code} (VK failed for now): {message}")
    if code in _BAD_TOKEN:
        return ApiRefusedError(
            f"{what}: VK error {code} (authorization failed): check access_token, which must be a valid "
            f"service token of a VK app: {message}"
        )
    return ApiRefusedError(f"{what}: VK error {code}: {message}")


def _start(cursor: str, since: datetime) -> int:
    newest = parse_time(cursor) if cursor.isdigit() else None
    start = newest - LATE_INDEXING if newest is not None else since.astimezone(UTC)
    return int(start.timestamp())


def _authors(profiles: object, groups: object) -> dict[int, tuple[str, str, int]]:
    """Owner id → (handle, name, reach): people by their id, communities by minus theirs, as VK writes owners."""
    authors: dict[int, tuple[str, str, int]] = {}
    for profile in profiles if isinstance(profiles, list) else []:
        if isinstance(profile, dict) and _integer(profile.get("id")):
            person = profile["id"]
            name = " ".join(n for n in (string(profile.get("first_name")), string(profile.get("last_name"))) if n)
            handle = string(profile.get("screen_name")) or f"id{person}"
            authors[person] = (handle, name, safe_int(profile.get("followers_count")))
    for group in groups if isinstance(groups, list) else []:
        if isinstance(group, dict) and _integer(group.get("id")):
            community = group["id"]
            handle = string(group.get("screen_name")) or f"club{community}"
            authors[-community] = (handle, string(group.get("name")), safe_int(group.get("members_count")))
    return authors


def _post(item: object, authors: dict[int, tuple[str, str, int]]) -> tuple[datetime, Post] | None:
    """A wall post as a Post, or None when it lacks an id, an owner, a time or any text."""
    if not isinstance(item, dict):
        return None
    post_id, owner_id = item.get("id"), item.get("owner_id")
    created = parse_time(item.get("date"))
    text = _MENTION.sub(r"\1", string(item.get("text"))).strip()
    if not _integer(post_id) or not _integer(owner_id) or created is None or not text:
        return None
    native_id = f"{owner_id}_{post_id}"
    from_id = item.get("from_id")
    handle, name, reach = authors.get(from_id if _integer(from_id) else owner_id, ("", "", 0))
    post = Post(
        native_id=native_id,
        text=text,
        url=f"https://vk.com/wall{native_id}",
        author_handle=handle,
        author_name=name,
        followers=reach,
        created_at=created,
        # VK gives no language of a post: triage detects it.
        language="",
        thread_id=native_id,
    )
    return created, post


def _integer(value: object) -> TypeGuard[int]:
    """A VK id: an integer, not a boolean, not zero."""
    return isinstance(value, int) and not isinstance(value, bool) and value != 0
