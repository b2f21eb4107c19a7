"""One route of a self-hosted RSSHub instance, read as RSS (rss.py's parser) or as JSON Feed.

RSSHub answers with ``Cache-Control: public, max-age=<CACHE_EXPIRE>``, an ``ETag`` and
``Last-Modified``; the poll sends them back as a conditional GET (304: nothing new) and, where the
cache outlives the configured interval, waits until it expires, since polling sooner only returns
the same cached answer. The access key travels as the ``key`` query parameter and never appears in
errors, which name the source and show URLs as scheme and host only.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

from services.listener.sources.base import Poll, Post, Source, SourceState, poll_from
from services.listener.sources.common import retry_after_for, take_new_with_time_cursor
from services.listener.sources.jsonfeed import parse_json_feed
from services.listener.sources.rss import parse_feed
from services.listener.sources.rsshub_routes import route_platform
from services.shared.outbound import raise_for_status
from services.shared.ratelimit import MAX_WAIT_S

if TYPE_CHECKING:
    from datetime import datetime

    from services.listener.config import RsshubSourceSettings
    from services.shared.outbound import HttpResponse, OutboundClient

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


def cache_max_age(response: HttpResponse) -> float | None:
    """``Cache-Control: max-age`` in seconds, None when absent or when the answer must not be cached."""
    header = response.headers.get("cache-control", "")
    if re.search(r"no-(?:store|cache)", header, re.IGNORECASE):
        return None
    found = _MAX_AGE.search(header)
    return min(float(found.group(1)), MAX_WAIT_S) if found else None


class RsshubSource(Source):
    """Polls ``base_url + route``; the route's first segments name the platform (rsshub_routes.py)."""

    kind: ClassVar[str] = "rsshub"
    platform = "rsshub"

    def __init__(self, settings: RsshubSourceSettings) -> None:
        self.settings = settings
        inferred = route_platform(settings.route)
        self.platform = settings.platform or inferred.platform
        # A route's own language tags win; then the setting; then the platform's usual language.
        self._default_language = settings.language or inferred.language
        self.url = settings.base_url.rstrip("/") + settings.route

    @property
    def what(self) -> str:
        return f"rsshub source {self.settings.name}"

    def _params(self) -> dict[str, str | int]:
        params: dict[str, str | int] = {}
        if self.settings.format == "json":
            params["format"] = "json"
        if self.settings.access_key:
            params["key"] = self.settings.access_key
        return params

    async def poll(self, http: OutboundClient, state: SourceState, *, since: datetime) -> Poll:
        response = await http.get(self.url, headers=state.conditional_headers(), params=self._params())
        raise_for_status(response, what=self.what, retry_after_s=retry_after_for(response))
        state = replace(state, seen=list(state.seen))
        if response.not_modified:
            return self._with_cache_wait(poll_from(response, [], state), response)
        posts = await asyncio.to_thread(self._parse, response)
        fresh = take_new_with_time_cursor(posts, state, since=since)
        return self._with_cache_wait(poll_from(response, fresh, state), response)

    def _parse(self, response: HttpResponse) -> list[Post]:
        content_type = response.headers.get("content-type", "")
        if self.settings.format == "json":
            posts, feed_language = parse_json_feed(response.body, content_type=content_type, what=self.what)
            fallback = self._default_language or feed_language
            return [post if post.language else replace(post, language=fallback) for post in posts]
        # The link base without the query: a relative link must never carry the access key into a mention.
        base_url = response.url.split("?", 1)[0]
        posts = parse_feed(
            response.body, content_type=content_type or "application/xml", base_url=base_url, what=self.what
        )
        # RSS has no per-item language: what feedparser reports is the channel's, which RSSHub fills
        # with "en" for any route that does not set one, Chinese ones included.
        if self._default_language:
            return [replace(post, language=self._default_language) for post in posts]
        return posts

    def _with_cache_wait(self, poll: Poll, response: HttpResponse) -> Poll:
        """The poll, asked to wait out the instance's cache when it outlives the configured interval."""
        max_age = cache_max_age(response)
        if max_age is None or max_age <= self.settings.interval_s:
            return poll
        poll.wait_s = max(poll.wait_s or 0.0, max_age)
        return poll
