"""The one interface every source adapter implements, and what it hands back.

An adapter turns one poll of a platform into normalised :class:`Post` objects and an updated
:class:`SourceState` (cursor, HTTP validators, recently seen ids). It does no publishing, no
scheduling and no watch matching: the poller does those the same way for every source.
"""

from __future__ import annotations

import abc
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from services.shared.ratelimit import next_wait_seconds

if TYPE_CHECKING:
    from services.shared.outbound import HttpResponse, OutboundClient

SEEN_IDS_KEPT = 5000


@dataclass(frozen=True)
class Post:
    """A post as the platform gave it, normalised; the poller turns it into a Mention."""

    native_id: str
    text: str
    url: str = ""
    author_handle: str = ""
    author_name: str = ""
    followers: int = 0
    created_at: datetime | None = None
    language: str = ""
    thread_id: str = ""


@dataclass
class SourceState:
    """What a source remembers between polls, kept in JetStream KV (``services.listener.records``)."""

    cursor: str = ""
    etag: str = ""
    last_modified: str = ""
    seen: list[str] = field(default_factory=list)

    def conditional_headers(self) -> dict[str, str]:
        """``If-None-Match`` / ``If-Modified-Since`` from the last 200 response."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers

    def remember_validators(self, response: HttpResponse) -> None:
        if response.status == 200:
            self.etag = response.headers.get("etag", "")
            self.last_modified = response.headers.get("last-modified", "")

    def is_seen(self, native_id: str) -> bool:
        return native_id in self.seen

    def mark_seen(self, native_ids: list[str]) -> None:
        kept: deque[str] = deque(self.seen, maxlen=SEEN_IDS_KEPT)
        kept.extend(i for i in native_ids if i not in self.seen)
        self.seen = list(kept)


@dataclass
class Poll:
    """One poll's outcome. ``wait_s`` is the least the platform asked us to wait before the next."""

    posts: list[Post]
    state: SourceState
    wait_s: float | None = None
    not_modified: bool = False


def poll_from(response: HttpResponse, posts: list[Post], state: SourceState) -> Poll:
    """A Poll that carries the response's rate-limit wait and conditional-GET outcome."""
    state.remember_validators(response)
    return Poll(
        posts=posts,
        state=state,
        wait_s=next_wait_seconds(dict(response.headers), response.received_at),
        not_modified=response.not_modified,
    )


class Source(abc.ABC):
    """A platform adapter. Subclasses set ``kind`` (config key) and ``platform`` (mention id prefix).

    ``platform`` is a class-level default that an instance may replace, as the generic sources do
    with the one their settings name ("appstore", "weibo").
    """

    kind: ClassVar[str]
    platform: str

    @abc.abstractmethod
    async def poll(self, http: OutboundClient, state: SourceState, *, since: datetime) -> Poll:
        """Fetch what is new since ``state`` (or, on a first poll, since the timezone-aware ``since``)."""
