"""RSS and Atom feeds: fetched with a conditional GET, refused if they declare entities, parsed by feedparser.

The helpers at the bottom (which posts are new, language tags, safe URLs, plain text from HTML)
hold the cursor and normalisation rules that every polled source shares.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pyexpat import errors as expat_errors
from typing import TYPE_CHECKING, Any, ClassVar, Protocol
from urllib.parse import urljoin
from xml.etree.ElementTree import ParseError
from xml.sax import SAXParseException

import feedparser
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeElementTree

from services.listener.domain import MAX_TEXT_CHARS
from services.listener.errors import SourceFormatError
from services.listener.ratelimit import retry_after_seconds
from services.listener.sources.base import Poll, Post, Source, SourceState, poll_from
from services.shared.outbound import raise_for_status

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from services.listener.config import RssSourceSettings
    from services.shared.outbound import HttpResponse, OutboundClient

# Longer native ids (some feeds use whole URLs with tracking parameters) are replaced by their hash.
MAX_NATIVE_ID_CHARS = 512
# HTML beyond this is not worth stripping: the text is capped at MAX_TEXT_CHARS anyway.
MAX_HTML_CHARS = 20 * MAX_TEXT_CHARS
# Expat errors that only occur when the document ends early: the feed was cut off in transit or at its origin.
_TRUNCATION_ERRORS = frozenset(
    expat_errors.codes[message]
    for message in (
        expat_errors.XML_ERROR_NO_ELEMENTS,
        expat_errors.XML_ERROR_UNCLOSED_TOKEN,
        expat_errors.XML_ERROR_PARTIAL_CHAR,
        expat_errors.XML_ERROR_UNCLOSED_CDATA_SECTION,
    )
)
_UNDATED = datetime.max.replace(tzinfo=UTC)
_ENTITY_DECLARATION = re.compile(rb"<!\s*ENTITY", re.IGNORECASE)
_EMAIL_AND_NAME = re.compile(r"[^\s()<>]+@[^\s()<>]+ \((?P<name>[^()]+)\)")
_BARE_EMAIL = re.compile(r"<?[^\s()<>]+@[^\s()<>]+>?")
_BLOCK_TAGS = frozenset(
    {"p", "br", "div", "li", "ul", "ol", "tr", "table", "blockquote", "pre", "hr", "section", "article"}
    | {f"h{level}" for level in range(1, 7)}
)


class _HasPlatformSettings(Protocol):
    @property
    def settings(self) -> _PlatformSettings: ...


class _PlatformSettings(Protocol):
    @property
    def platform(self) -> str: ...


class PlatformLabel:
    """``platform`` read from the instance's settings, with a class-level default for the registry."""

    def __init__(self, default: str) -> None:
        self.default = default

    def __get__(self, source: _HasPlatformSettings | None, owner: type[Any] | None = None) -> str:
        return self.default if source is None else source.settings.platform


class RssSource(Source):
    """One RSS 0.9x/1.0/2.0 or Atom feed; each entry becomes a Post."""

    kind: ClassVar[str] = "rss"
    platform = PlatformLabel("rss")

    def __init__(self, settings: RssSourceSettings) -> None:
        self.settings = settings

    @property
    def what(self) -> str:
        return f"feed {self.settings.name}"

    async def poll(self, http: OutboundClient, state: SourceState, *, since: datetime) -> Poll:
        response = await http.get(self.settings.url, headers=state.conditional_headers())
        raise_for_status(response, what=self.what, retry_after_s=retry_after_for(response))
        state = replace(state, seen=list(state.seen))
        if response.not_modified:
            return poll_from(response, [], state)
        posts = await asyncio.to_thread(self._parse, response)
        return poll_from(response, take_new(posts, state, since=since), state)

    def _parse(self, response: HttpResponse) -> list[Post]:
        refuse_entity_declarations(response.body, what=self.what)
        # Bytes in a stream: feedparser treats a str or bytes argument as a URL or a file name to open.
        # No content-location either: feedparser would resolve relative guids against it, and an id
        # must not change when the feed moves.
        parsed = feedparser.parse(
            io.BytesIO(response.body),
            response_headers={"content-type": response.headers.get("content-type", "application/xml")},
        )
        entries: list[Any] = list(parsed.entries)
        problem = parsed.get("bozo_exception") if parsed.bozo else None
        if isinstance(problem, SAXParseException) and _expat_code(problem) in _TRUNCATION_ERRORS:
            raise SourceFormatError(f"{self.what}: the document is truncated ({problem})")
        if not entries:
            if isinstance(problem, SAXParseException):
                raise SourceFormatError(f"{self.what}: not well-formed XML ({problem})")
            if not parsed.version:
                raise SourceFormatError(f"{self.what}: not an RSS or Atom feed")
        feed_language = str(parsed.feed.get("language") or "")
        posts = (post_from_entry(entry, feed_language=feed_language, base_url=response.url) for entry in entries)
        return [post for post in posts if post is not None]


def _expat_code(error: SAXParseException) -> int | None:
    code = getattr(error.getException(), "code", None)
    return code if isinstance(code, int) else None


def retry_after_for(response: HttpResponse) -> float | None:
    """The ``Retry-After`` wait of a 429 or 503, which is all it means there."""
    return retry_after_seconds(response.headers) if response.status in (429, 503) else None


def refuse_entity_declarations(body: bytes, *, what: str) -> None:
    """Raise SourceFormatError if the XML declares entities or refers to external ones.

    Internal entities are how billion-laughs expansion works and external ones how files and
    internal URLs leak; no real feed needs either. When expat cannot read the document at all
    (malformed, or a multi-byte legacy encoding it does not speak) a plain scan for a declaration
    stands in, so such a document cannot smuggle one past to feedparser's more forgiving parser.
    """
    refused = SourceFormatError(f"{what}: entity declarations are refused (possible entity-expansion attack)")
    try:
        SafeElementTree.fromstring(body, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise refused from exc
    except (ParseError, ValueError) as exc:
        if any(_ENTITY_DECLARATION.search(candidate) for candidate in _ascii_views(body)):
            raise refused from exc


def _ascii_views(body: bytes) -> Iterable[bytes]:
    yield body
    if b"\x00" in body[:512]:
        for encoding in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
            yield body.decode(encoding, errors="ignore").encode("utf-8", errors="ignore")


def post_from_entry(entry: Mapping[str, Any], *, feed_language: str, base_url: str) -> Post | None:
    """A feed entry as a Post, or None when it has no text at all; relative links resolve against ``base_url``."""
    title = _entry_text(entry.get("title_detail"), entry.get("title"))
    contents = entry.get("content") or []
    body = _entry_text(contents[0] if contents else entry.get("summary_detail"), entry.get("summary"))
    if body.startswith(title):
        text = body
    elif body:
        text = f"{title}\n\n{body}" if title else body
    else:
        text = title
    if not text:
        return None
    raw_link = str(entry.get("link") or "").strip()
    link = http_url(urljoin(base_url, raw_link)) if raw_link else ""
    created_at = _entry_time(entry)
    # The link as written, not as resolved: an id must not change when the feed moves.
    native_id = str(entry.get("id") or "").strip() or raw_link
    if not native_id:
        stamp = str(entry.get("published") or entry.get("updated") or "")
        native_id = "sha256:" + hashlib.sha256(f"{title}\n{stamp}".encode()).hexdigest()
    elif len(native_id) > MAX_NATIVE_ID_CHARS:
        native_id = "sha256:" + hashlib.sha256(native_id.encode()).hexdigest()
    author_name = _author_name(entry)
    language = next(
        (
            str(detail["language"])
            for detail in (entry.get("summary_detail"), entry.get("title_detail"), *contents)
            if detail and detail.get("language")
        ),
        feed_language,
    )
    return Post(
        native_id=native_id,
        text=text[:MAX_TEXT_CHARS],
        url=link,
        author_handle=author_name,
        author_name=author_name,
        created_at=created_at,
        language=primary_language(language),
    )


def _author_name(entry: Mapping[str, Any]) -> str:
    """The author's name. RSS writes ``email (Name)``, which feedparser splits wrongly for long TLDs;
    a bare email address is left out rather than published as a name."""
    raw = " ".join(str(entry.get("author") or "").split())
    email_and_name = _EMAIL_AND_NAME.fullmatch(raw)
    if email_and_name:
        return email_and_name.group("name").strip()
    if _BARE_EMAIL.fullmatch(raw):
        return ""
    detail = entry.get("author_detail") or {}
    return " ".join(str(detail.get("name") or raw).split())


def _entry_text(detail: Mapping[str, Any] | None, fallback: object) -> str:
    value = str((detail or {}).get("value") or fallback or "")
    kind = str((detail or {}).get("type") or "text/html")
    return html_to_text(value) if "html" in kind else value.strip()


def _entry_time(entry: Mapping[str, Any]) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            try:
                year, month, day, hour, minute, second = parsed[:6]
                return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
            except (TypeError, ValueError):
                continue
    return None


# Rules every polled source shares.


def take_new(posts: list[Post], state: SourceState, *, since: datetime) -> list[Post]:
    """The posts not seen before, oldest first; ``state`` gets their ids and the newest time.

    An id already in ``state.seen`` is never returned again, even if its timestamp moved on
    (an edit). On the first poll (no cursor yet) posts dated before ``since`` are skipped, but
    remembered as seen, so they do not come back once a cursor exists. Undated posts are
    judged by their id alone and come last. The cursor is the newest timestamp seen, as ISO 8601.
    """
    since = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
    cursor = parse_cursor(state.cursor)
    newest = cursor
    seen_now: dict[str, None] = {}
    fresh: list[Post] = []
    for post in posts:
        if post.native_id in seen_now:
            continue
        seen_now[post.native_id] = None
        created = post.created_at
        if created is not None and (newest is None or created > newest):
            newest = created
        if state.is_seen(post.native_id):
            continue
        if cursor is None and created is not None and created < since:
            continue
        fresh.append(post)
    state.mark_seen(list(seen_now))
    if newest is not None:
        state.cursor = newest.isoformat()
    # Stable: posts with equal times keep the source's order.
    return sorted(fresh, key=lambda post: post.created_at or _UNDATED)


def parse_cursor(cursor: str) -> datetime | None:
    if not cursor:
        return None
    try:
        parsed = datetime.fromisoformat(cursor)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def primary_language(tag: object) -> str:
    """The primary subtag of a BCP-47 tag, lower case ("zh-CN" → "zh"); '' when it is not one."""
    primary = re.split(r"[-_]", str(tag or "").strip(), maxsplit=1)[0].lower()
    return primary if re.fullmatch(r"[a-z]{2,3}", primary) else ""


def http_url(value: object) -> str:
    """``value`` if it is an absolute http(s) URL, else ''; feeds can carry javascript: and data: links."""
    url = str(value or "").strip()
    return url if re.match(r"https?://[^\s/]", url, re.IGNORECASE) else ""


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skipping = max(self._skipping - 1, 0)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment: tags and scripts dropped, entities decoded, one line per block."""
    extractor = _TextExtractor()
    extractor.feed(markup[:MAX_HTML_CHARS])
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).splitlines())
    return "\n".join(line for line in lines if line)
