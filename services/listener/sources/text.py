"""Small helpers the platform adapters share: JSON bodies, HTML to text, times, ids, budgets.

Everything here is lenient about one item and strict about the body: a field of the wrong type
reads as "absent" so the adapter can skip that item, while a body that is not JSON raises.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from html import unescape
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

from services.listener.errors import SourceFormatError
from services.listener.ratelimit import next_wait_seconds

if TYPE_CHECKING:
    from services.listener.sources.base import Post, SourceState
    from services.shared.outbound import HttpResponse

MAX_PAGES = 5
_REMAINING = ("x-ratelimit-remaining", "x-rate-limit-remaining", "ratelimit-remaining")
_BREAKS = frozenset({"br", "p", "div", "li", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6"})
_HIDDEN = frozenset({"script", "style"})


def load_json(response: HttpResponse, what: str) -> Any:
    """The body parsed as JSON, or SourceFormatError naming the source and where parsing stopped."""
    try:
        return json.loads(response.body)
    except UnicodeDecodeError as exc:
        raise SourceFormatError(f"{what}: body is not UTF-8 JSON ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise SourceFormatError(f"{what}: body is not valid JSON ({exc.msg} at byte {exc.pos})") from exc


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(self._hidden - 1, 0)
        elif tag in _BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Readable text of a post's HTML: tags dropped, entities decoded, one line per paragraph."""
    if "<" not in html:
        return " ".join(unescape(html).split())
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def parse_iso(value: object) -> datetime | None:
    """An ISO 8601 instant in UTC (naive ones are taken as UTC), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_epoch(value: object) -> datetime | None:
    """Unix seconds (a number or a numeric string) as a UTC datetime, or None."""
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value) if isinstance(value, int | float | str) else None
    except ValueError:
        return None
    if seconds is None or not 0 <= seconds < 1e11:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def safe_int(value: object, default: int = 0) -> int:
    """A non-negative integer from an int or a digit string, else ``default``."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value if value >= 0 else default
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return default


def string(value: object) -> str:
    """A string field, or '' when absent or another type."""
    return value if isinstance(value, str) else ""


def https_url(value: object) -> str:
    """The URL when it is https, else '' (posts link to nothing rather than to http or javascript:)."""
    return value if isinstance(value, str) and value.lower().startswith("https://") else ""


def language(value: object) -> str:
    """A language tag, with the platforms' "undetermined" as ''."""
    tag = string(value).strip()
    return "" if tag.lower() in ("und", "undefined") else tag


def id_order(native_id: str) -> tuple[int, str]:
    """Sort key for numeric or fixed-width ids (snowflakes, ULIDs) without converting them."""
    return (len(native_id), native_id)


def budget_spent(headers: Mapping[str, str]) -> bool:
    """True when the response says not to ask again yet: no requests left, or a wait requested."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in _REMAINING:
        try:
            if name in lowered and float(lowered[name]) < 1:
                return True
        except ValueError:
            continue
    return next_wait_seconds(lowered) is not None


def fresh_posts(
    items: Iterable[tuple[datetime, Post]], state: SourceState, *, newer_than: datetime | None
) -> list[Post]:
    """Posts not seen before and newer than ``newer_than``, each once, oldest first; marks them seen.

    ``items`` come newest first, as every platform here pages; equal times keep the platform's order.
    """
    unique: dict[str, tuple[datetime, Post]] = {}
    for at, post in items:
        if post.native_id in unique or state.is_seen(post.native_id):
            continue
        if newer_than is not None and at <= newer_than:
            continue
        unique[post.native_id] = (at, post)
    ordered = sorted(reversed(list(unique.values())), key=lambda item: item[0])
    posts = [post for _, post in ordered]
    state.mark_seen([post.native_id for post in posts])
    return posts
