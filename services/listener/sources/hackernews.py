"""Hacker News through Algolia's ``search_by_date``: stories and comments, newest first.

The cursor is the newest ``created_at_i`` taken and goes to Algolia as a ``numericFilters``
bound, reaching back a few minutes because items reach the index some time after they are
posted; the seen ids drop what was already taken. Pages are numbered from 0.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from services.listener.errors import SourceFormatError
from services.listener.sources.base import Poll, Post, Source, SourceState, poll_from
from services.listener.sources.common import (
    MAX_PAGES,
    budget_spent,
    decode_json,
    html_to_text,
    parse_time,
    retry_after_for,
    safe_int,
    string,
    take_new,
)
from services.shared.outbound import raise_for_status

if TYPE_CHECKING:
    from services.listener.config import HackerNewsSourceSettings
    from services.shared.outbound import HttpResponse, OutboundClient

PAGE_SIZE = 100
LATE_INDEXING = timedelta(minutes=5)
ITEM_URL = "https://news.ycombinator.com/item?id="


class HackerNewsSource(Source):
    kind: ClassVar[str] = "hackernews"
    platform = "hackernews"

    def __init__(self, settings: HackerNewsSourceSettings) -> None:
        self.settings = settings
        self._what = f"hackernews source {settings.name}"
        self._url = f"{settings.base_url}/api/v1/search_by_date"

    async def poll(self, http: OutboundClient, state: SourceState, *, since: datetime) -> Poll:
        cursor = parse_time(state.cursor)
        newer_than = cursor - LATE_INDEXING if cursor else since
        items: list[tuple[datetime, Post]] = []
        for number in range(MAX_PAGES):
            response = await self._get(http, int(newer_than.timestamp()), number)
            page, pages = self._parse(decode_json(response.body, what=self._what))
            items.extend(page)
            reached = any(state.is_seen(post.native_id) for _, post in page)
            if reached or not page or number + 1 >= pages or budget_spent(response):
                break
        newest = max([at for at, _ in items] + [cursor or since])
        posts = take_new(items, state, newer_than=newer_than)
        state.cursor = str(int(newest.timestamp()))
        return poll_from(response, posts, state)

    async def _get(self, http: OutboundClient, newer_than: int, page: int) -> HttpResponse:
        params: dict[str, str | int] = {
            "query": self.settings.query,
            "tags": self.settings.tags,
            "numericFilters": f"created_at_i>{newer_than}",
            "hitsPerPage": PAGE_SIZE,
            "page": page,
        }
        response = await http.get(self._url, params=params)
        raise_for_status(response, what=self._what, retry_after_s=retry_after_for(response))
        return response

    def _parse(self, body: Any) -> tuple[list[tuple[datetime, Post]], int]:
        """A page's items, newest first, and how many pages the result has."""
        hits = body.get("hits") if isinstance(body, dict) else None
        if not isinstance(hits, list):
            raise SourceFormatError(f"{self._what}: expected an object with a 'hits' list")
        page = [item for item in map(_post, hits) if item is not None]
        return page, safe_int(body.get("nbPages"), default=1)


def _post(hit: object) -> tuple[datetime, Post] | None:
    """A story or comment hit as a Post, or None when it lacks an id, a time or any text."""
    if not isinstance(hit, dict):
        return None
    object_id = hit.get("objectID")
    created = parse_time(hit.get("created_at_i")) or parse_time(hit.get("created_at"))
    if not isinstance(object_id, str) or not object_id.isdigit() or created is None:
        return None
    comment = string(hit.get("comment_text"))
    if comment:
        text = html_to_text(comment)
    else:
        parts = (string(hit.get("title")).strip(), html_to_text(string(hit.get("story_text"))))
        text = "\n\n".join(part for part in parts if part)
    if not text:
        return None
    story_id = safe_int(hit.get("story_id"))
    post = Post(
        native_id=object_id,
        text=text,
        url=ITEM_URL + object_id,
        author_handle=string(hit.get("author")),
        created_at=created,
        thread_id=str(story_id) if story_id else object_id,
    )
    return created, post
