"""5ch-style boards: the thread list from ``subject.txt``, new posts from each thread's ``dat`` file.

A poll reads ``subject.txt`` (a conditional GET), picks the threads whose post count grew since it
last read them, at most ``max_threads_per_poll`` of them (the politeness bound: a board of a
thousand threads is read over many polls, never in one burst), and fetches only what each gained.
For a thread it has read before that is a byte range from the last byte it holds: the range must
begin with that byte, a newline; if it does not, or the server cannot serve it, the file was
rewritten (a post deleted) and is read whole, its known posts skipped by count, since deleted posts
keep their line. What the cursor keeps per thread: posts read, bytes read, and the poll that last
read it (threads that waited longest are read first). Threads that leave ``subject.txt`` are forgotten.

A refusal (429, 5xx) of ``subject.txt`` fails the poll with the wait asked for; of a dat file,
it ends the poll there with the posts read so far and that wait, so progress is kept.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import quote

from services.listener.errors import SourceFormatError
from services.listener.sources.base import Poll, Post, Source, SourceState, poll_from
from services.listener.sources.charset import decode_body
from services.listener.sources.common import retry_after_for
from services.listener.sources.fivech_format import DatPost, Thread, parse_dat_line, parse_subject
from services.shared.outbound import HttpStatusError, OutboundError, ResponseTooLargeError, raise_for_status
from services.shared.ratelimit import next_wait_seconds

if TYPE_CHECKING:
    from datetime import datetime

    from services.listener.config import FivechSourceSettings
    from services.shared.outbound import HttpResponse, OutboundClient

log = logging.getLogger(__name__)

CURSOR_VERSION = 1


@dataclass
class _Known:
    """What the cursor keeps of one thread."""

    posts: int
    size: int
    read_at_poll: int


@dataclass
class _Cursor:
    polls: int
    threads: dict[str, _Known]
    # Threads with posts left unread when the poll ended: the next poll reads subject.txt unconditionally.
    pending: bool

    @classmethod
    def load(cls, raw: str) -> _Cursor:
        try:
            data = json.loads(raw) if raw else {}
            threads = {
                str(key): _Known(int(posts), int(size), int(at)) for key, (posts, size, at) in data["threads"].items()
            }
            return cls(int(data["polls"]), threads, bool(data["pending"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            # No cursor yet, or one from another version: start over, as a first poll does.
            return cls(0, {}, False)

    def dump(self) -> str:
        threads = {key: [known.posts, known.size, known.read_at_poll] for key, known in self.threads.items()}
        return json.dumps({"v": CURSOR_VERSION, "polls": self.polls, "threads": threads, "pending": self.pending})


@dataclass(frozen=True)
class _Read:
    """A dat file's new complete lines, where their numbering starts, and the thread's size after them."""

    lines: list[str]
    first_number: int
    size: int


class FivechSource(Source):
    """One board of a 5ch-style server; each post of its threads becomes a Post."""

    kind: ClassVar[str] = "fivech"
    platform = "5ch"

    def __init__(self, settings: FivechSourceSettings) -> None:
        self.settings = settings
        self.platform = settings.platform
        self.what = f"fivech source {settings.name} (board {settings.board})"
        # Lines that are not dat lines, and threads whose file is not a dat file, since start.
        self.skipped_lines = 0
        self.skipped_threads = 0

    @property
    def board_url(self) -> str:
        return f"{self.settings.base_url}/{quote(self.settings.board, safe='')}"

    async def poll(self, http: OutboundClient, state: SourceState, *, since: datetime) -> Poll:
        state = replace(state, seen=list(state.seen))
        cursor = _Cursor.load(state.cursor)
        cursor.polls += 1
        conditional = {} if cursor.pending else state.conditional_headers()
        response = await http.get(f"{self.board_url}/subject.txt", headers=self._headers(conditional))
        raise_for_status(response, what=f"{self.what}: subject.txt", retry_after_s=retry_after_for(response))
        if response.not_modified:
            state.cursor = cursor.dump()
            return poll_from(response, [], state)
        threads = self._threads(response)
        state.remember_validators(response)
        cursor.threads = {t.key: cursor.threads[t.key] for t in threads if t.key in cursor.threads}
        grown = [t for t in threads if t.key not in cursor.threads or t.posts > cursor.threads[t.key].posts]
        order = {t.key: index for index, t in enumerate(threads)}
        # Never read first, then those that waited longest; bump order breaks ties.
        grown.sort(key=lambda t: (cursor.threads[t.key].read_at_poll if t.key in cursor.threads else -1, order[t.key]))
        chosen = grown[: self.settings.max_threads_per_poll]
        posts: list[Post] = []
        wait_s = next_wait_seconds(dict(response.headers), response.received_at)
        for index, thread in enumerate(chosen):
            try:
                posts.extend(await self._read_thread(http, thread, cursor, since=since))
            except OutboundError as exc:
                if index == 0:
                    raise
                # The board refuses more for now: keep what this poll read, come back when it says.
                log.warning("%s: stopped at thread %s: %s", self.what, thread.key, exc)
                wait_s = exc.retry_after_s if exc.retry_after_s is not None else wait_s
                break
        cursor.pending = any(t.key not in cursor.threads or t.posts > cursor.threads[t.key].posts for t in grown)
        state.cursor = cursor.dump()
        return Poll(posts, state, wait_s=wait_s)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"User-Agent": self.settings.user_agent, **(extra or {})}

    def _threads(self, response: HttpResponse) -> list[Thread]:
        text = decode_body(
            response.body, content_type=response.headers.get("content-type", ""), default=self.settings.encoding
        ).text
        threads, bad = parse_subject(text)
        if bad and not threads:
            raise SourceFormatError(f"{self.what}: subject.txt has no thread lines (line {bad[0]} is not one)")
        if bad:
            log.warning(
                "%s: subject.txt: skipped %d line(s) that are not thread lines; first %d", self.what, len(bad), bad[0]
            )
        return threads

    async def _read_thread(
        self, http: OutboundClient, thread: Thread, cursor: _Cursor, *, since: datetime
    ) -> list[Post]:
        known = cursor.threads.get(thread.key)
        try:
            read = await self._fetch(http, thread.key, known)
        except (HttpStatusError, ResponseTooLargeError) as exc:
            # Gone (moved to the archive, deleted) or past the size cap: nothing more will come from it here.
            log.warning("%s: thread %s: %s", self.what, thread.key, exc)
            cursor.threads[thread.key] = _Known(thread.posts, 0, cursor.polls)
            return []
        posts: list[Post] = []
        bad: list[int] = []
        for offset, line in enumerate(read.lines):
            number = read.first_number + offset
            try:
                parsed = parse_dat_line(line, number)
            except ValueError:
                bad.append(number)
                continue
            # A thread first met now may be years old: only its recent posts are news.
            if parsed is None or (known is None and parsed.created_at is not None and parsed.created_at <= since):
                continue
            posts.append(self._post(thread.key, parsed))
        count = read.first_number - 1 + len(read.lines)
        if read.lines and len(bad) == len(read.lines):
            self.skipped_threads += 1
            log.warning("%s: thread %s: not a dat file (line %d does not parse)", self.what, thread.key, bad[0])
            # Counted as read, so a broken file is not fetched again until the thread grows.
            cursor.threads[thread.key] = _Known(max(thread.posts, known.posts if known else 0), 0, cursor.polls)
            return []
        if bad:
            self.skipped_lines += len(bad)
            log.warning(
                "%s: thread %s: skipped %d malformed line(s); first %d", self.what, thread.key, len(bad), bad[0]
            )
        cursor.threads[thread.key] = _Known(count, read.size, cursor.polls)
        return posts

    async def _fetch(self, http: OutboundClient, key: str, known: _Known | None) -> _Read:
        url = f"{self.board_url}/dat/{quote(key, safe='')}.dat"
        what = f"{self.what}: thread {key}"
        if known is not None and known.size > 0:
            # Byte offsets count the file as stored, so the range must not be compressed.
            headers = self._headers({"Range": f"bytes={known.size - 1}-", "Accept-Encoding": "identity"})
            response = await http.get(url, headers=headers)
            if response.status == 206 and response.body.startswith(b"\n"):
                return self._lines(response, response.body[1:], first_number=known.posts + 1, size_before=known.size)
            if response.status not in (206, 416):
                raise_for_status(response, what=what, retry_after_s=retry_after_for(response))
                if response.status == 200:
                    return self._skip_known(self._lines(response, response.body, first_number=1, size_before=0), known)
            # Rewritten since (a deletion changed its length): read it whole.
        response = await http.get(url, headers=self._headers())
        raise_for_status(response, what=what, retry_after_s=retry_after_for(response))
        read = self._lines(response, response.body, first_number=1, size_before=0)
        return self._skip_known(read, known) if known is not None else read

    @staticmethod
    def _skip_known(read: _Read, known: _Known) -> _Read:
        return _Read(read.lines[known.posts :], known.posts + 1, read.size)

    def _lines(self, response: HttpResponse, body: bytes, *, first_number: int, size_before: int) -> _Read:
        # A line still being written has no newline yet: it is read next time, whole.
        complete = body[: body.rfind(b"\n") + 1]
        text = decode_body(
            complete, content_type=response.headers.get("content-type", ""), default=self.settings.encoding
        ).text
        return _Read(text.split("\n")[:-1], first_number, size_before + len(complete))

    def _post(self, key: str, parsed: DatPost) -> Post:
        board = self.settings.board
        return Post(
            native_id=f"{board}/{key}/{parsed.number}",
            text=parsed.text,
            url=f"{self.settings.base_url}/test/read.cgi/{quote(board, safe='')}/{key}/{parsed.number}",
            author_handle=parsed.handle,
            author_name=parsed.name,
            created_at=parsed.created_at,
            language=self.settings.language,
            thread_id=f"{board}/{key}",
        )
