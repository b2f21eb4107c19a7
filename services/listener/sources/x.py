"""X (Twitter) API v2 recent search with an app bearer token.

The cursor is the newest tweet id taken, sent as ``since_id``; within one poll the result pages
backwards with ``next_token``. A first poll asks from ``since`` with ``start_time``, which recent
search accepts only within the last seven days.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import unescape
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from services.listener.errors import SourceFormatError
from services.listener.sources.base import Poll, Post, Source, SourceState, poll_from
from services.listener.sources.common import (
    MAX_PAGES,
    budget_spent,
    decode_json,
    id_order,
    language,
    parse_time,
    retry_after_for,
    safe_int,
    string,
    take_new,
)
from services.shared.outbound import raise_for_status

if TYPE_CHECKING:
    from services.listener.config import XSourceSettings
    from services.shared.outbound import HttpResponse, OutboundClient

PAGE_SIZE = 100
# Recent search refuses a start_time older than seven days; keep a minute clear of the edge.
OLDEST_START = timedelta(days=7) - timedelta(minutes=1)
TWEET_FIELDS = "created_at,lang,author_id,conversation_id,public_metrics"
USER_FIELDS = "username,name,public_metrics"


class XSource(Source):
    kind: ClassVar[str] = "x"
    platform = "x"

    def __init__(self, settings: XSourceSettings) -> None:
        self.settings = settings
        self._what = f"x source {settings.name}"
        self._url = f"{settings.base_url}/2/tweets/search/recent"
        self._headers = {"Authorization": f"Bearer {settings.bearer_token}"} if settings.bearer_token else {}

    async def poll(self, http: OutboundClient, state: SourceState, *, since: datetime) -> Poll:
        bound: dict[str, str | int] = (
            {"since_id": state.cursor} if state.cursor else {"start_time": _start(since, http.clock())}
        )
        items: list[tuple[datetime, Post]] = []
        newest_ids = [state.cursor] if state.cursor else []
        next_token = ""
        for _ in range(MAX_PAGES):
            response = await self._get(http, {**bound, "next_token": next_token} if next_token else bound)
            page, meta = self._parse(decode_json(response.body, what=self._what))
            items.extend(page)
            newest_ids += [string(meta.get("newest_id"))] + [post.native_id for _, post in page]
            next_token = string(meta.get("next_token"))
            reached = any(state.is_seen(post.native_id) for _, post in page)
            if reached or not next_token or budget_spent(response):
                break
        posts = take_new(items, state, newer_than=None if state.cursor else since)
        state.cursor = max((i for i in newest_ids if i.isdigit()), key=id_order, default="")
        return poll_from(response, posts, state)

    async def _get(self, http: OutboundClient, bound: dict[str, str | int]) -> HttpResponse:
        params: dict[str, str | int] = {
            "query": self.settings.query,
            "max_results": PAGE_SIZE,
            "tweet.fields": TWEET_FIELDS,
            "expansions": "author_id",
            "user.fields": USER_FIELDS,
            **bound,
        }
        response = await http.get(self._url, headers=self._headers, params=params)
        raise_for_status(response, what=self._what, retry_after_s=retry_after_for(response))
        return response

    def _parse(self, body: Any) -> tuple[list[tuple[datetime, Post]], dict[str, Any]]:
        """A page's tweets, newest first, and its ``meta`` object."""
        meta = body.get("meta") if isinstance(body, dict) else None
        if not isinstance(meta, dict):
            raise SourceFormatError(f"{self._what}: expected an object with a 'meta' object")
        # X leaves out "data" (and "includes") when nothing matched.
        data = body.get("data", [] if safe_int(meta.get("result_count")) == 0 else None)
        if not isinstance(data, list):
            raise SourceFormatError(f"{self._what}: expected a 'data' list of tweets")
        includes = body.get("includes")
        users = includes.get("users") if isinstance(includes, dict) else None
        by_id = {
            user["id"]: user
            for user in (users if isinstance(users, list) else [])
            if isinstance(user, dict) and isinstance(user.get("id"), str)
        }
        page = [item for item in (_post(tweet, by_id) for tweet in data) if item is not None]
        return page, meta


def _start(since: datetime, now: datetime) -> str:
    start = max(since.astimezone(UTC), now - OLDEST_START)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ")


def _post(tweet: object, users: dict[str, dict[str, Any]]) -> tuple[datetime, Post] | None:
    """A tweet and its expanded author as a Post, or None when it lacks an id, a time or text."""
    if not isinstance(tweet, dict):
        return None
    tweet_id = tweet.get("id")
    created = parse_time(tweet.get("created_at"))
    # The v2 API escapes &, < and > in tweet text as HTML entities.
    text = unescape(string(tweet.get("text"))).strip()
    if not isinstance(tweet_id, str) or not tweet_id.isdigit() or created is None or not text:
        return None
    user = users.get(string(tweet.get("author_id")), {})
    username = string(user.get("username"))
    metrics = user.get("public_metrics")
    path = f"{quote(username, safe='')}/status/{tweet_id}" if username else f"i/web/status/{tweet_id}"
    post = Post(
        native_id=tweet_id,
        text=text,
        url=f"https://x.com/{path}",
        author_handle=username,
        author_name=string(user.get("name")),
        followers=safe_int(metrics.get("followers_count")) if isinstance(metrics, dict) else 0,
        created_at=created,
        language=language(tweet.get("lang")),
        thread_id=string(tweet.get("conversation_id")) or tweet_id,
    )
    return created, post
