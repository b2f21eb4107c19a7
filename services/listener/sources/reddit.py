"""Reddit: a subreddit's newest posts or a search, from the public JSON or with an app-only token.

Listings come newest first and page backwards with ``after``. The cursor is the newest
``created_utc`` taken; each poll reads back to a few minutes before it, because Reddit lists
some posts late (spam filter, search indexing), and the seen ids drop what was already taken.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from services.listener.errors import SourceFormatError
from services.listener.sources.base import Poll, Post, Source, SourceState, poll_from
from services.listener.sources.common import (
    MAX_PAGES,
    budget_spent,
    decode_json,
    http_url,
    parse_time,
    retry_after_for,
    string,
    take_new,
)
from services.shared.errors import ConfigError
from services.shared.outbound import raise_for_status

if TYPE_CHECKING:
    from services.listener.config import RedditSourceSettings
    from services.shared.outbound import HttpResponse, OutboundClient

PAGE_SIZE = 100
LATE_LISTING = timedelta(minutes=5)
PERMALINK_BASE = "https://www.reddit.com"
# Refresh the token this long before Reddit says it expires (or at half its life if that is shorter).
TOKEN_MARGIN_S = 60.0


class RedditSource(Source):
    kind: ClassVar[str] = "reddit"
    platform = "reddit"

    def __init__(self, settings: RedditSourceSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not settings.subreddit.strip() and not settings.query.strip():
            raise ConfigError(f"reddit source {settings.name}: set subreddit, query or both")
        self.settings = settings
        self._what = f"reddit source {settings.name}"
        self._clock = clock
        self._token = ""
        self._token_refresh_at = 0.0

    @property
    def uses_oauth(self) -> bool:
        return bool(self.settings.client_id and self.settings.client_secret)

    async def poll(self, http: OutboundClient, state: SourceState, *, since: datetime) -> Poll:
        cursor = parse_time(state.cursor)
        newer_than = cursor - LATE_LISTING if cursor else since
        items: list[tuple[datetime, Post]] = []
        after = ""
        for _ in range(MAX_PAGES):
            response = await self._get(http, after)
            page, after = self._parse(decode_json(response.body, what=self._what))
            items.extend(page)
            reached = any(at <= newer_than or state.is_seen(post.native_id) for at, post in page)
            if reached or not after or not page or budget_spent(response):
                break
        newest = max([at for at, _ in items] + [cursor or since])
        posts = take_new(items, state, newer_than=newer_than)
        state.cursor = str(int(newest.timestamp()))
        return poll_from(response, posts, state)

    def _url(self) -> str:
        subreddit = self.settings.subreddit.strip().strip("/").removeprefix("r/")
        if self.settings.query:
            path = f"/r/{quote(subreddit, safe='')}/search" if subreddit else "/search"
        else:
            path = f"/r/{quote(subreddit, safe='')}/new"
        # oauth.reddit.com always answers JSON; the public site needs the .json suffix.
        if self.uses_oauth:
            return self.settings.oauth_base_url + path
        return self.settings.base_url + path + ".json"

    def _params(self, after: str) -> dict[str, str | int]:
        params: dict[str, str | int] = {"limit": PAGE_SIZE, "raw_json": 1}
        if self.settings.query:
            params.update(q=self.settings.query, sort="new")
            if self.settings.subreddit.strip():
                params["restrict_sr"] = 1
        if after:
            params["after"] = after
        return params

    async def _get(self, http: OutboundClient, after: str) -> HttpResponse:
        headers = {"User-Agent": self.settings.user_agent}
        if self.uses_oauth:
            headers["Authorization"] = f"bearer {await self._bearer(http)}"
        response = await http.get(self._url(), headers=headers, params=self._params(after))
        if response.status == 401 and self.uses_oauth:
            # Revoked or expired early: one fresh token, then the status stands.
            self._token = ""
            headers["Authorization"] = f"bearer {await self._bearer(http)}"
            response = await http.get(self._url(), headers=headers, params=self._params(after))
        raise_for_status(response, what=self._what, retry_after_s=retry_after_for(response))
        return response

    async def _bearer(self, http: OutboundClient) -> str:
        now = self._clock()
        if self._token and now < self._token_refresh_at:
            return self._token
        credentials = f"{self.settings.client_id}:{self.settings.client_secret}".encode()
        response = await http.request(
            "POST",
            self.settings.token_url,
            headers={
                "Authorization": "Basic " + base64.b64encode(credentials).decode("ascii"),
                "User-Agent": self.settings.user_agent,
            },
            data={"grant_type": "client_credentials"},
        )
        what = f"{self._what} token"
        raise_for_status(response, what=what, retry_after_s=retry_after_for(response))
        body = decode_json(response.body, what=what)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceFormatError(f"{what}: the answer has no access_token")
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 3600.0
        self._token = token
        self._token_refresh_at = now + max(lifetime - TOKEN_MARGIN_S, lifetime / 2)
        return token

    def _parse(self, body: Any) -> tuple[list[tuple[datetime, Post]], str]:
        """A Listing's posts, newest first, and its ``after`` fullname ('' on the last page)."""
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise SourceFormatError(f"{self._what}: expected a Listing object with a 'data' object")
        children = data.get("children")
        if not isinstance(children, list):
            raise SourceFormatError(f"{self._what}: the Listing's data has no 'children' list")
        page = [item for item in map(_post, children) if item is not None]
        return page, string(data.get("after"))


def _post(child: object) -> tuple[datetime, Post] | None:
    """A t3 (link) or t1 (comment) thing as a Post, or None when it lacks what a post needs."""
    if not isinstance(child, dict) or child.get("kind") not in ("t3", "t1"):
        return None
    data = child.get("data")
    if not isinstance(data, dict):
        return None
    name = string(data.get("name")) or (f"{child['kind']}_{data['id']}" if isinstance(data.get("id"), str) else "")
    created = parse_time(data.get("created_utc"))
    if not name or created is None:
        return None
    if child["kind"] == "t3":
        parts = (string(data.get("title")).strip(), string(data.get("selftext")).strip())
        text = "\n\n".join(part for part in parts if part)
        thread_id = name
    else:
        text = string(data.get("body")).strip()
        thread_id = string(data.get("link_id")) or name
    if not text:
        return None
    permalink = string(data.get("permalink"))
    url = PERMALINK_BASE + permalink if permalink.startswith("/") else http_url(data.get("url"))
    post = Post(
        native_id=name,
        text=text,
        url=url,
        author_handle=string(data.get("author")),
        created_at=created.astimezone(UTC),
        thread_id=thread_id,
    )
    return created, post
