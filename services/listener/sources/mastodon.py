"""Mastodon: a hashtag timeline or a status search on one instance.

The cursor is the newest status id taken. Later polls page forwards from it with ``min_id``
(each page is the statuses immediately newer than the last), so a burst larger than one poll's
pages is picked up by the next poll instead of being skipped. A first poll pages backwards
with ``max_id`` from the newest status until it reaches ``since``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from services.listener.errors import SourceFormatError
from services.listener.sources.base import Poll, Post, Source, SourceState, poll_from
from services.listener.sources.common import (
    MAX_PAGES,
    budget_spent,
    decode_json,
    html_to_text,
    http_url,
    id_order,
    language,
    parse_time,
    retry_after_for,
    safe_int,
    string,
    take_new,
)
from services.shared.errors import ConfigError
from services.shared.outbound import raise_for_status

if TYPE_CHECKING:
    from services.listener.config import MastodonSourceSettings
    from services.shared.outbound import HttpResponse, OutboundClient

PAGE_SIZE = 40


class MastodonSource(Source):
    kind: ClassVar[str] = "mastodon"
    platform = "mastodon"

    def __init__(self, settings: MastodonSourceSettings) -> None:
        hashtag, query = settings.hashtag.strip().lstrip("#"), settings.query.strip()
        if bool(hashtag) == bool(query):
            raise ConfigError(f"mastodon source {settings.name}: set exactly one of hashtag or query")
        self.settings = settings
        self._what = f"mastodon source {settings.name}"
        self._search = bool(query)
        if hashtag:
            self._url = f"{settings.base_url}/api/v1/timelines/tag/{quote(hashtag, safe='')}"
            self._params: dict[str, str | int] = {"limit": PAGE_SIZE}
        else:
            self._url = f"{settings.base_url}/api/v2/search"
            self._params = {"q": query, "type": "statuses", "resolve": "false", "limit": PAGE_SIZE}
        self._headers = {"Authorization": f"Bearer {settings.access_token}"} if settings.access_token else {}

    async def poll(self, http: OutboundClient, state: SourceState, *, since: datetime) -> Poll:
        forwards = bool(state.cursor)
        items: list[tuple[datetime, Post]] = []
        bound = state.cursor
        for _ in range(MAX_PAGES):
            response = await self._get(http, ("min_id" if forwards else "max_id", bound))
            statuses = self._statuses(decode_json(response.body, what=self._what))
            page = [item for item in map(_post, statuses) if item is not None]
            items.extend(page)
            ids = sorted((post.native_id for _, post in page), key=id_order)
            if len(statuses) < PAGE_SIZE or not ids or budget_spent(response):
                break
            if forwards:
                if id_order(ids[-1]) <= id_order(bound):
                    break  # the instance ignored min_id; asking again would return the same page
                bound = ids[-1]
            else:
                if any(at <= since for at, _ in page):
                    break
                bound = ids[0]
        ids = [post.native_id for _, post in items] + ([state.cursor] if state.cursor else [])
        # Newest first, as fresh_posts expects; Mastodon orders by id, which follows time.
        items.sort(key=lambda item: id_order(item[1].native_id), reverse=True)
        posts = take_new(items, state, newer_than=None if forwards else since)
        state.cursor = max(ids, key=id_order, default="")
        return poll_from(response, posts, state)

    async def _get(self, http: OutboundClient, bound: tuple[str, str]) -> HttpResponse:
        name, value = bound
        params = {**self._params, name: value} if value else self._params
        response = await http.get(self._url, headers=self._headers, params=params)
        raise_for_status(response, what=self._what, retry_after_s=retry_after_for(response))
        return response

    def _statuses(self, body: Any) -> list[Any]:
        if self._search:
            statuses = body.get("statuses") if isinstance(body, dict) else None
            if not isinstance(statuses, list):
                raise SourceFormatError(f"{self._what}: expected a search result object with a 'statuses' list")
            return statuses
        if not isinstance(body, list):
            raise SourceFormatError(f"{self._what}: expected a JSON array of statuses")
        return body


def _post(status: object) -> tuple[datetime, Post] | None:
    """A Status entity as a Post, or None when it lacks an id, a time or any text."""
    if not isinstance(status, dict):
        return None
    native_id = status.get("id")
    created = parse_time(status.get("created_at"))
    if not isinstance(native_id, str) or not native_id or created is None:
        return None
    content = html_to_text(string(status.get("content")))
    warning = string(status.get("spoiler_text")).strip()
    text = f"{warning}\n\n{content}" if warning and content else warning or content
    if not text:
        return None
    account = status.get("account")
    account = account if isinstance(account, dict) else {}
    post = Post(
        native_id=native_id,
        text=text,
        url=http_url(status.get("url")) or http_url(status.get("uri")),
        author_handle=string(account.get("acct")) or string(account.get("username")),
        author_name=string(account.get("display_name")) or string(account.get("username")),
        followers=safe_int(account.get("followers_count")),
        created_at=created,
        language=language(status.get("language")),
        thread_id=string(status.get("in_reply_to_id")) or native_id,
    )
    return created, post
