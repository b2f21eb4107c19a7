"""Any JSON HTTP API, mapped to posts by dotted paths from the config.

``items_path`` leads from the body to the list of items ("" when the body is the list) and
``fields`` maps each Post field to a dotted path inside an item. A path segment that is a
number indexes a list (``data.0.reviews``). Items without an id or text are skipped and
counted; a body where no item is usable is a format error, since the mapping no longer fits.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from services.listener.domain import MAX_TEXT_CHARS
from services.listener.errors import SourceFormatError
from services.listener.sources.base import Poll, Post, Source, SourceState, poll_from
from services.listener.sources.charset import decode_body
from services.listener.sources.common import (
    decode_json,
    http_url,
    language,
    parse_time,
    retry_after_for,
    take_new_with_time_cursor,
)
from services.shared.errors import ConfigError
from services.shared.outbound import raise_for_status

if TYPE_CHECKING:
    from datetime import datetime

    from services.listener.config import JsonApiSourceSettings
    from services.shared.outbound import HttpResponse, OutboundClient

log = logging.getLogger(__name__)

POST_FIELDS = frozenset(
    {"id", "text", "url", "author_handle", "author_name", "followers", "created_at", "language", "thread_id"}
)
REQUIRED_FIELDS = ("id", "text")


class _Missing:
    """Marks a dotted path that leads nowhere (distinct from a JSON null)."""


MISSING = _Missing()


def lookup(value: Any, path: str) -> Any:
    """The value at dotted ``path`` inside ``value`` ("" is ``value`` itself), or MISSING."""
    if not path:
        return value
    for segment in path.split("."):
        if isinstance(value, dict) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return MISSING
    return value


def text_value(value: Any) -> str:
    """A JSON string or integer as text; anything else (objects, booleans, null) is ''."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    return str(value).strip()


@dataclass(frozen=True)
class _Rejected:
    index: int
    reason: str


class JsonApiSource(Source):
    """Polls one JSON URL; the config says where the items are and which fields they carry."""

    kind: ClassVar[str] = "json"
    platform = "json"

    def __init__(self, settings: JsonApiSourceSettings) -> None:
        unknown = sorted(set(settings.fields) - POST_FIELDS)
        if unknown:
            raise ConfigError(
                f"listener.sources[{settings.name}].fields: unknown post field(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(POST_FIELDS))}"
            )
        missing = [name for name in REQUIRED_FIELDS if not settings.fields.get(name)]
        if missing:
            raise ConfigError(f"listener.sources[{settings.name}].fields: {', '.join(missing)} must be mapped")
        self.settings = settings
        self.platform = settings.platform
        # Items skipped since start for lacking an id or text; the poll result has no place for it.
        self.skipped_items = 0

    @property
    def what(self) -> str:
        return f"json source {self.settings.name}"

    async def poll(self, http: OutboundClient, state: SourceState, *, since: datetime) -> Poll:
        headers = {**self.settings.headers, **state.conditional_headers()}
        response = await http.get(self.settings.url, headers=headers)
        raise_for_status(response, what=self.what, retry_after_s=retry_after_for(response))
        state = replace(state, seen=list(state.seen))
        if response.not_modified:
            return poll_from(response, [], state)
        posts, rejected = await asyncio.to_thread(self._parse, response)
        if rejected:
            self.skipped_items += len(rejected)
            log.warning(
                "%s: skipped %d of %d items; first: item %d %s",
                self.what,
                len(rejected),
                len(rejected) + len(posts),
                rejected[0].index,
                rejected[0].reason,
            )
        return poll_from(response, take_new_with_time_cursor(posts, state, since=since), state)

    def _parse(self, response: HttpResponse) -> tuple[list[Post], list[_Rejected]]:
        # Review and complaint sites in China and Japan serve JSON in GBK or Shift_JIS, RFC 8259 notwithstanding.
        text = decode_body(response.body, content_type=response.headers.get("content-type", "")).text
        body = decode_json(text, what=self.what)
        items = lookup(body, self.settings.items_path)
        where = f"items_path {self.settings.items_path!r}" if self.settings.items_path else "the body"
        if items is MISSING:
            raise SourceFormatError(f"{self.what}: {where} is not in the response")
        if not isinstance(items, list):
            raise SourceFormatError(f"{self.what}: {where} is a {type(items).__name__}, not a list")
        posts: list[Post] = []
        rejected: list[_Rejected] = []
        for index, item in enumerate(items):
            post = self._post(item)
            if isinstance(post, str):
                rejected.append(_Rejected(index, post))
            else:
                posts.append(post)
        if items and not posts:
            first = rejected[0]
            raise SourceFormatError(
                f"{self.what}: none of the {len(items)} items is usable (item {first.index}: {first.reason}); "
                "check items_path and fields"
            )
        return posts, rejected

    def _post(self, item: Any) -> Post | str:
        """The item as a Post, or why it cannot be one."""
        if not isinstance(item, dict):
            return f"is a {type(item).__name__}, not an object"
        fields = self.settings.fields

        def field(name: str) -> Any:
            path = fields.get(name)
            return None if not path else lookup(item, path)

        native_id = text_value(field("id"))
        if not native_id:
            return f"has no id at {fields['id']!r}"
        raw_text = field("text")
        text = raw_text.strip() if isinstance(raw_text, str) else ""
        if not text:
            return f"has no text at {fields['text']!r}"
        followers = field("followers")
        if isinstance(followers, bool) or not isinstance(followers, int) or followers < 0:
            followers = 0
        return Post(
            native_id=native_id,
            text=text[:MAX_TEXT_CHARS],
            url=http_url(text_value(field("url"))),
            author_handle=text_value(field("author_handle")),
            author_name=text_value(field("author_name")),
            followers=followers,
            created_at=parse_time(field("created_at")),
            language=language(text_value(field("language"))),
            thread_id=text_value(field("thread_id")),
        )
