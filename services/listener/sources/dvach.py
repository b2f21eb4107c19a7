"""2ch.hk boards: the threads a board's ``catalog.json`` lists, or the threads named, read as JSON.

A poll reads the catalog (with a conditional GET), picks the threads with posts it has not read,
and reads at most ``max_threads_per_poll`` of them from ``/<board>/res/<num>.json``: the ones read
longest ago first, so every active thread gets its turn however many there are. With ``threads``
set, those threads are read instead of the catalog's.

The cursor remembers, per thread, the newest post number taken, the thread's last-post time when
it was read, and when it was read (a small JSON object). Post numbers grow along a board, so a
post is new when its number is above its thread's mark; a thread never read before gives its posts
from ``since`` on. Threads that leave the catalog (or the ``threads`` list) are forgotten.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from services.listener.errors import ApiRefusedError, SourceFormatError
from services.listener.sources.base import Poll, Post, Source, SourceState
from services.listener.sources.common import (
    decode_json,
    html_to_text,
    parse_time,
    retry_after_for,
    safe_int,
    string,
)
from services.shared.outbound import raise_for_status
from services.shared.ratelimit import next_wait_seconds

if TYPE_CHECKING:
    from services.listener.config import DvachSourceSettings
    from services.shared.outbound import HttpResponse, OutboundClient

# Links point at the board's own site whatever mirror the posts were read from.
SITE = "https://2ch.hk"


@dataclass(frozen=True)
class ThreadMark:
    """What the cursor keeps of one thread: newest post number taken, last-post time and read time."""

    newest: int = 0
    last_hit: int = 0
    read_at: int = 0


class DvachSource(Source):
    kind: ClassVar[str] = "dvach"
    platform = "dvach"

    def __init__(self, settings: DvachSourceSettings) -> None:
        self.settings = settings
        self._what = f"dvach source {settings.name}"
        self._board_url = f"{settings.base_url}/{settings.board}"

    async def poll(self, http: OutboundClient, state: SourceState, *, since: datetime) -> Poll:
        marks = _read_marks(state.cursor)
        waits: list[float] = []
        if self.settings.threads:
            active = {num: 0 for num in dict.fromkeys(self.settings.threads)}
        else:
            catalog = await self._catalog(http, state)
            _wait(catalog, waits)
            if catalog.not_modified:
                return Poll(posts=[], state=state, wait_s=max(waits, default=None), not_modified=True)
            active = self._catalog_threads(catalog)
        since_s = int(since.timestamp())
        # Catalog threads whose last post is no newer than what was read (or than since) have nothing new;
        # named threads (no catalog time) are always read.
        changed = [
            num
            for num, last_hit in active.items()
            if not last_hit or last_hit > (marks[num].last_hit if num in marks else since_s)
        ]
        changed.sort(key=lambda num: (marks[num].read_at if num in marks else 0, -active[num]))
        chosen = changed[: self.settings.max_threads_per_poll]
        now = int(http.clock().timestamp())
        posts: list[Post] = []
        gone: list[int] = []
        for num in chosen:
            response = await self._get(http, f"{self._board_url}/res/{num}.json", allow_missing=True)
            if response.status == 404:
                gone.append(num)
                continue
            _wait(response, waits)
            new, marks[num] = self._new_posts(response, num, marks.get(num), last_hit=active[num], since=since, now=now)
            posts += new
        if self.settings.threads and len(gone) == len(self.settings.threads):
            listed = ", ".join(str(num) for num in gone)
            raise ApiRefusedError(f"{self._what}: threads {listed} of /{self.settings.board}/ are gone (404)")
        if len(changed) > len(chosen):
            # Threads wait for the next poll: it must read the catalog again even if it did not change.
            state.etag = state.last_modified = ""
        state.cursor = _write_marks({num: mark for num, mark in marks.items() if num in active and num not in gone})
        # Numbers grow along the whole board: oldest first across threads too.
        posts.sort(key=_number)
        return Poll(posts=posts, state=state, wait_s=max(waits, default=None))

    def _new_posts(
        self, response: HttpResponse, num: int, mark: ThreadMark | None, *, last_hit: int, since: datetime, now: int
    ) -> tuple[list[Post], ThreadMark]:
        """The thread's posts after its mark (after ``since`` for a thread not read before), and its new mark."""
        thread_posts = self._thread_posts(response, num)
        newest = max((safe_int(p.get("num")) for p in thread_posts), default=0)
        # Named threads have no catalog entry: their last post tells when they last changed.
        last_hit = last_hit or max((safe_int(p.get("timestamp")) for p in thread_posts), default=0)
        posts = [
            post
            for post in (self._post(p, num) for p in thread_posts)
            if post is not None and (_number(post) > mark.newest if mark else _after(post, since))
        ]
        return posts, ThreadMark(newest=max(newest, mark.newest if mark else 0), last_hit=last_hit, read_at=now)

    async def _catalog(self, http: OutboundClient, state: SourceState) -> HttpResponse:
        response = await http.get(f"{self._board_url}/catalog.json", headers=state.conditional_headers())
        raise_for_status(response, what=self._what, retry_after_s=retry_after_for(response))
        state.remember_validators(response)
        return response

    async def _get(self, http: OutboundClient, url: str, *, allow_missing: bool) -> HttpResponse:
        response = await http.get(url)
        if not (allow_missing and response.status == 404):
            raise_for_status(response, what=self._what, retry_after_s=retry_after_for(response))
        return response

    def _catalog_threads(self, response: HttpResponse) -> dict[int, int]:
        """Thread number → time of its last post, as the catalog lists them."""
        body = decode_json(response.body, what=self._what)
        threads = body.get("threads") if isinstance(body, dict) else None
        if not isinstance(threads, list):
            raise SourceFormatError(f"{self._what}: expected a catalog object with a 'threads' list")
        active: dict[int, int] = {}
        for thread in threads:
            num = safe_int(thread.get("num")) if isinstance(thread, dict) else 0
            if num:
                active[num] = safe_int(thread.get("lasthit")) or safe_int(thread.get("timestamp"))
        return active

    def _thread_posts(self, response: HttpResponse, num: int) -> list[dict[str, Any]]:
        body = decode_json(response.body, what=f"{self._what} (thread {num})")
        threads = body.get("threads") if isinstance(body, dict) else None
        first = threads[0] if isinstance(threads, list) and threads else None
        posts = first.get("posts") if isinstance(first, dict) else None
        if not isinstance(posts, list):
            raise SourceFormatError(
                f"{self._what}: thread {num}: expected an object with a 'threads' list holding a 'posts' list"
            )
        return [post for post in posts if isinstance(post, dict)]

    def _post(self, post: dict[str, Any], thread: int) -> Post | None:
        """A board post as a Post, or None when it lacks a number, a time or any text (a picture alone)."""
        num = safe_int(post.get("num"))
        created = parse_time(post.get("timestamp"))
        comment = html_to_text(string(post.get("comment")))
        subject = html_to_text(string(post.get("subject"))) if num == thread else ""
        # An opening post's subject is often the start of its text, which it need not repeat.
        text = f"{subject}\n\n{comment}" if subject and comment and not comment.startswith(subject) else comment
        if not num or created is None or not text:
            return None
        board = self.settings.board
        return Post(
            native_id=f"{board}/{num}",
            text=text,
            url=f"{SITE}/{board}/res/{thread}.html#{num}",
            # A tripcode is the one stable identity on an anonymous board; names are free text.
            author_handle=html_to_text(string(post.get("trip"))),
            author_name=html_to_text(string(post.get("name"))),
            created_at=created,
            thread_id=f"{board}/{thread}",
        )


def _number(post: Post) -> int:
    return int(post.native_id.rpartition("/")[2])


def _after(post: Post, since: datetime) -> bool:
    return post.created_at is not None and post.created_at > since


def _wait(response: HttpResponse, waits: list[float]) -> None:
    wait = next_wait_seconds(dict(response.headers), response.received_at)
    if wait is not None:
        waits.append(wait)


def _read_marks(cursor: str) -> dict[int, ThreadMark]:
    """The marks a cursor holds; an unreadable cursor reads as none, so threads start again from ``since``."""
    try:
        stored = json.loads(cursor) if cursor else {}
    except json.JSONDecodeError:
        return {}
    marks: dict[int, ThreadMark] = {}
    for num, mark in stored.items() if isinstance(stored, dict) else ():
        if str(num).isdigit() and isinstance(mark, list) and len(mark) == 3:
            marks[int(num)] = ThreadMark(*(safe_int(value) for value in mark))
    return marks


def _write_marks(marks: dict[int, ThreadMark]) -> str:
    if not marks:
        return ""
    stored = {str(num): [mark.newest, mark.last_hit, mark.read_at] for num, mark in sorted(marks.items())}
    return json.dumps(stored, separators=(",", ":"))
