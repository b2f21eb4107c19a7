"""The rules every source shares: JSON bodies, HTML to text, times, URLs, language tags, which posts are new.

Everything here is lenient about one item and strict about the body: a field of the wrong type
reads as "absent" so the adapter can skip that item, while a body that is not JSON raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

from services.listener.domain import MAX_TEXT_CHARS
from services.listener.errors import SourceFormatError
from services.shared.ratelimit import next_wait_seconds

if TYPE_CHECKING:
    from services.listener.sources.base import Post, SourceState
    from services.shared.outbound import HttpResponse

# Pages one poll reads at most; a longer burst is left for the next poll.
MAX_PAGES = 5
# Longer native ids (some feeds use whole URLs with tracking parameters) are hashed or refused.
MAX_NATIVE_ID_CHARS = 512
# HTML beyond this is not worth stripping: the text is capped at MAX_TEXT_CHARS anyway.
MAX_HTML_CHARS = 20 * MAX_TEXT_CHARS
# Epoch seconds from here on are milliseconds or nonsense rather than a time (this is the year 5138).
_EPOCH_LIMIT = 1e11
_UNDATED = datetime.max.replace(tzinfo=UTC)
_REMAINING = ("x-ratelimit-remaining", "x-rate-limit-remaining", "ratelimit-remaining")
_HTTP_URL = re.compile(r"https?://[^\s/]", re.IGNORECASE)
_SUBTAG_SEPARATOR = re.compile(r"[-_]")
_PRIMARY_LANGUAGE = re.compile(r"[a-z]{2,3}")
_HIDDEN_TAGS = frozenset({"script", "style"})
_BLOCK_TAGS = frozenset(
    {"p", "br", "div", "li", "ul", "ol", "tr", "table", "blockquote", "pre", "hr", "section", "article"}
    | {f"h{level}" for level in range(1, 7)}
)


def decode_json(body: bytes | str, *, what: str) -> Any:
    """The parsed body, or SourceFormatError naming ``what`` and saying where it stops being JSON.

    Bytes are read as UTF-8 (or UTF-16/32), as RFC 8259 says; a source that meets other charsets
    passes the text from :func:`services.listener.sources.charset.decode_body` instead."""
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise SourceFormatError(
            f"{what}: invalid JSON at line {exc.lineno}, column {exc.colno} (character {exc.pos}): {exc.msg}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise SourceFormatError(f"{what}: body is not UTF-8 text (byte {exc.start})") from exc
    except RecursionError as exc:
        raise SourceFormatError(f"{what}: JSON nested too deeply to read") from exc


def retry_after_for(response: HttpResponse) -> float | None:
    """The wait a 429 or 5xx asks for (``Retry-After`` or a spent rate-limit budget), the longest if several."""
    if response.status == 429 or response.status >= 500:
        return next_wait_seconds(dict(response.headers), response.received_at)
    return None


def budget_spent(response: HttpResponse) -> bool:
    """True when the response says not to ask again yet: no requests left, or a wait requested."""
    lowered = {k.lower(): v for k, v in response.headers.items()}
    for name in _REMAINING:
        try:
            if name in lowered and float(lowered[name]) < 1:
                return True
        except ValueError:
            continue
    return next_wait_seconds(lowered, response.received_at) is not None


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS:
            self._hidden = max(self._hidden - 1, 0)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment: tags and scripts dropped, entities decoded, one line per block."""
    extractor = _TextExtractor()
    extractor.feed(markup[:MAX_HTML_CHARS])
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).splitlines())
    return "\n".join(line for line in lines if line)


def parse_time(value: object) -> datetime | None:
    """An instant in UTC from ISO 8601 (without an offset it is UTC) or epoch seconds, as a number or a
    numeric string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _from_epoch(value)
    raw = value.strip() if isinstance(value, str) else ""
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return _from_epoch(raw)
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _from_epoch(value: float | str) -> datetime | None:
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        return None
    # Also false for NaN.
    if not 0 <= seconds < _EPOCH_LIMIT:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def string(value: object) -> str:
    """A string field, or '' when absent or another type."""
    return value if isinstance(value, str) else ""


def safe_int(value: object, default: int = 0) -> int:
    """A non-negative integer from an int or a digit string, else ``default``."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value if value >= 0 else default
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return default


def http_url(value: object) -> str:
    """The URL when it is an absolute http or https one, else '': a post links to nothing rather than to
    javascript: or data:. Plain http stays, since reviews and blogs are often served that way."""
    url = string(value).strip()
    return url if _HTTP_URL.match(url) else ""


def language(tag: object) -> str:
    """The primary subtag of a BCP 47 tag in lower case ("zh-CN" → "zh"); '' for "und" (undetermined)
    and for anything that is not a tag."""
    primary = _SUBTAG_SEPARATOR.split(string(tag).strip(), maxsplit=1)[0].lower()
    return primary if _PRIMARY_LANGUAGE.fullmatch(primary) and primary != "und" else ""


def id_order(native_id: str) -> tuple[int, str]:
    """Sort key for numeric or fixed-width ids (snowflakes, ULIDs) without converting them."""
    return (len(native_id), native_id)


def take_new(
    items: Iterable[tuple[datetime | None, Post]], state: SourceState, *, newer_than: datetime | None
) -> list[Post]:
    """The posts not seen before and dated after ``newer_than``, each once, oldest first.

    ``items`` pair each post with the time the platform orders it by, newest first as every source
    here lists them, so posts with equal times, and undated ones (which come last), are returned in
    the reverse of that order. Every id looked at is remembered as seen, those too old to take
    included: an id is never returned again, even when its post is edited or re-dated.
    """
    unique: dict[str, tuple[datetime | None, Post]] = {}
    for at, post in items:
        if post.native_id not in unique and not state.is_seen(post.native_id):
            unique[post.native_id] = (at, post)
    oldest_first = sorted(reversed(unique.values()), key=lambda item: item[0] or _UNDATED)
    state.mark_seen([post.native_id for _, post in oldest_first])
    return [post for at, post in oldest_first if at is None or newer_than is None or at > newer_than]


def take_new_with_time_cursor(posts: list[Post], state: SourceState, *, since: datetime) -> list[Post]:
    """:func:`take_new` for sources with no cursor of their own (feeds, JSON APIs), keeping one: the newest
    post time seen, as ISO 8601.

    Only a first poll (no cursor yet) skips posts by date, those from ``since`` back; later ones take
    every post not seen before, since such sources add entries with dates in the past.
    """
    cursor = parse_time(state.cursor)
    fresh = take_new(((post.created_at, post) for post in posts), state, newer_than=None if cursor else since)
    newest = max((post.created_at for post in posts if post.created_at is not None), default=None)
    if newest is not None and (cursor is None or newest > cursor):
        state.cursor = newest.isoformat()
    return fresh
