"""Bluesky: ``app.bsky.feed.searchPosts`` on the AppView, newest first.

The search's own ``cursor`` only pages backwards, so it serves within one poll. Between polls
the cursor is the newest sort time taken (the earlier of ``indexedAt`` and ``createdAt``, as the
search orders by); each poll reads back to a few minutes before it, since indexing can lag,
and the seen ids drop what was already taken.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from services.listener.errors import SourceFormatError
from services.listener.sources.base import Poll, Post, Source, SourceState, poll_from
from services.listener.sources.common import (
    MAX_PAGES,
    budget_spent,
    decode_json,
    language,
    parse_time,
    retry_after_for,
    string,
    take_new,
)
from services.shared.outbound import raise_for_status

if TYPE_CHECKING:
    from services.listener.config import BlueskySourceSettings
    from services.shared.outbound import HttpResponse, OutboundClient

PAGE_SIZE = 100
LATE_INDEXING = timedelta(minutes=5)
POST_COLLECTION = "app.bsky.feed.post"


class BlueskySource(Source):
    kind: ClassVar[str] = "bluesky"
    platform = "bluesky"

    def __init__(self, settings: BlueskySourceSettings) -> None:
        self.settings = settings
        self._what = f"bluesky source {settings.name}"
        self._url = f"{settings.base_url}/xrpc/app.bsky.feed.searchPosts"

    async def poll(self, http: OutboundClient, state: SourceState, *, since: datetime) -> Poll:
        cursor = parse_time(state.cursor)
        newer_than = cursor - LATE_INDEXING if cursor else since
        items: list[tuple[datetime, Post]] = []
        page_cursor = ""
        for _ in range(MAX_PAGES):
            response = await self._get(http, page_cursor)
            page, page_cursor = self._parse(decode_json(response.body, what=self._what))
            items.extend(page)
            reached = any(at <= newer_than or state.is_seen(post.native_id) for at, post in page)
            if reached or not page or not page_cursor or budget_spent(response):
                break
        newest = max([at for at, _ in items] + [cursor or since])
        posts = take_new(items, state, newer_than=newer_than)
        state.cursor = newest.isoformat()
        return poll_from(response, posts, state)

    async def _get(self, http: OutboundClient, page_cursor: str) -> HttpResponse:
        params: dict[str, str | int] = {"q": self.settings.query, "sort": "latest", "limit": PAGE_SIZE}
        if page_cursor:
            params["cursor"] = page_cursor
        response = await http.get(self._url, params=params)
        raise_for_status(response, what=self._what, retry_after_s=retry_after_for(response))
        return response

    def _parse(self, body: Any) -> tuple[list[tuple[datetime, Post]], str]:
        posts = body.get("posts") if isinstance(body, dict) else None
        if not isinstance(posts, list):
            raise SourceFormatError(f"{self._what}: expected an object with a 'posts' list")
        page = [item for item in map(_post, posts) if item is not None]
        return page, string(body.get("cursor"))


def _post(view: object) -> tuple[datetime, Post] | None:
    """A postView as a Post and its sort time, or None when it is not a readable post record."""
    if not isinstance(view, dict):
        return None
    uri, author, record = view.get("uri"), view.get("author"), view.get("record")
    if not isinstance(uri, str) or not isinstance(author, dict) or not isinstance(record, dict):
        return None
    # at://<did>/app.bsky.feed.post/<rkey>
    parts = uri.removeprefix("at://").split("/")
    if not uri.startswith("at://") or len(parts) != 3 or parts[1] != POST_COLLECTION or not parts[2]:
        return None
    created, indexed = parse_time(record.get("createdAt")), parse_time(view.get("indexedAt"))
    times = [t for t in (created, indexed) if t is not None]
    text = string(record.get("text")).strip()
    if not times or not text:
        return None
    handle = string(author.get("handle"))
    profile = handle if handle and handle != "handle.invalid" else parts[0]
    reply = record.get("reply")
    root = reply.get("root") if isinstance(reply, dict) else None
    langs = record.get("langs")
    post = Post(
        native_id=uri,
        text=text,
        url=f"https://bsky.app/profile/{quote(profile, safe=':')}/post/{quote(parts[2], safe='')}",
        author_handle=handle,
        author_name=string(author.get("displayName")),
        # Search results carry no follower counts; fetching profiles per post would cost the budget.
        followers=0,
        created_at=created or indexed,
        language=language(langs[0]) if isinstance(langs, list) and langs else "",
        thread_id=(string(root.get("uri")) if isinstance(root, dict) else "") or uri,
    )
    return min(times), post
