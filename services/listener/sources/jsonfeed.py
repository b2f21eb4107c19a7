"""JSON Feed (https://www.jsonfeed.org/version/1.1/, and 1.0) items as Posts.

The spec says UTF-8, but a server that declares another charset (GB18030 from some Chinese
instances) is taken at its word, and one that declares none is read as UTF-8 or, failing that, in
the charset detected (:mod:`services.listener.sources.charset`). Items without an id or text are
skipped; a body that is not a JSON Feed at all is a SourceFormatError.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from services.listener.domain import MAX_TEXT_CHARS
from services.listener.errors import SourceFormatError
from services.listener.sources.base import Post
from services.listener.sources.charset import decode_body
from services.listener.sources.common import (
    MAX_NATIVE_ID_CHARS,
    decode_json,
    html_to_text,
    http_url,
    language,
    parse_time,
    string,
)

if TYPE_CHECKING:
    from datetime import datetime

VERSION_PREFIX = "https://jsonfeed.org/version/"


def parse_json_feed(body: bytes, *, content_type: str, what: str) -> tuple[list[Post], str]:
    """The feed's items as Posts, and the feed-level language tag ('' when none)."""
    document = decode_json(decode_body(body, content_type=content_type).text, what=what)
    if not isinstance(document, dict) or not string(document.get("version")).startswith(VERSION_PREFIX):
        raise SourceFormatError(f"{what}: not a JSON Feed (no version {VERSION_PREFIX}…)")
    items = document.get("items")
    if not isinstance(items, list):
        raise SourceFormatError(f"{what}: JSON Feed without an items list")
    posts = (post_from_item(item) for item in items)
    return [post for post in posts if post is not None], language(document.get("language"))


def post_from_item(item: object) -> Post | None:
    """A JSON Feed item as a Post (language: the item's own tag only), or None without id or text."""
    if not isinstance(item, dict):
        return None
    title = html_to_text(string(item.get("title")))
    html = string(item.get("content_html"))
    body = html_to_text(html) if html else string(item.get("content_text")).strip()
    body = body or string(item.get("summary")).strip()
    if body.startswith(title):
        text = body
    elif body:
        text = f"{title}\n\n{body}" if title else body
    else:
        text = title
    url = http_url(item.get("url")) or http_url(item.get("external_url"))
    raw_id = item.get("id")
    # 1.0 feeds sometimes give numbers; 1.1 requires a string.
    native_id = (str(raw_id) if isinstance(raw_id, int) and not isinstance(raw_id, bool) else string(raw_id)).strip()
    native_id = native_id or string(item.get("url")).strip()
    if not text or not native_id:
        return None
    if len(native_id) > MAX_NATIVE_ID_CHARS:
        native_id = "sha256:" + hashlib.sha256(native_id.encode()).hexdigest()
    author = _author_name(item)
    created_at: datetime | None = parse_time(item.get("date_published")) or parse_time(item.get("date_modified"))
    return Post(
        native_id=native_id,
        text=text[:MAX_TEXT_CHARS],
        url=url,
        author_handle=author,
        author_name=author,
        created_at=created_at,
        language=language(item.get("language")),
    )


def _author_name(item: dict[str, Any]) -> str:
    """1.1's first ``authors`` entry with a name, else 1.0's ``author``."""
    authors = item.get("authors")
    candidates = authors if isinstance(authors, list) else []
    for candidate in [*candidates, item.get("author")]:
        if isinstance(candidate, dict):
            name = " ".join(string(candidate.get("name")).split())
            if name:
                return name
    return ""
