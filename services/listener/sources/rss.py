"""RSS and Atom feeds: fetched with a conditional GET, refused if they declare entities, parsed by feedparser."""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
from dataclasses import replace
from datetime import UTC, datetime
from pyexpat import errors as expat_errors
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urljoin
from xml.etree.ElementTree import ParseError
from xml.sax import SAXParseException

import feedparser
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeElementTree

from services.listener.domain import MAX_TEXT_CHARS
from services.listener.errors import SourceFormatError
from services.listener.sources.base import Poll, Post, Source, SourceState, poll_from
from services.listener.sources.charset import as_utf8_xml, decode_body
from services.listener.sources.common import (
    MAX_NATIVE_ID_CHARS,
    html_to_text,
    http_url,
    language,
    retry_after_for,
    take_new_with_time_cursor,
)
from services.shared.outbound import raise_for_status

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from services.listener.config import RssSourceSettings
    from services.shared.outbound import HttpResponse, OutboundClient

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
_ENTITY_DECLARATION = re.compile(rb"<!\s*ENTITY", re.IGNORECASE)
_EMAIL_AND_NAME = re.compile(r"[^\s()<>]+@[^\s()<>]+ \((?P<name>[^()]+)\)")
_BARE_EMAIL = re.compile(r"<?[^\s()<>]+@[^\s()<>]+>?")


class RssSource(Source):
    """One RSS 0.9x/1.0/2.0 or Atom feed; each entry becomes a Post."""

    kind: ClassVar[str] = "rss"
    platform = "rss"

    def __init__(self, settings: RssSourceSettings) -> None:
        self.settings = settings
        self.platform = settings.platform

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
        return poll_from(response, take_new_with_time_cursor(posts, state, since=since), state)

    def _parse(self, response: HttpResponse) -> list[Post]:
        return parse_feed(
            response.body,
            content_type=response.headers.get("content-type", "application/xml"),
            base_url=response.url,
            what=self.what,
        )


def parse_feed(body: bytes, *, content_type: str, base_url: str, what: str) -> list[Post]:
    """The entries of an RSS or Atom document as Posts; the charset comes from a byte-order mark,
    ``content_type``, the XML declaration or detection (:mod:`services.listener.sources.charset`).
    Raises SourceFormatError (naming ``what``) for a body that is no feed."""
    # Decoded here and handed on as UTF-8 that says so: feedparser and expat know fewer charsets and
    # guess none (an undeclared Windows-1251 feed would come out as Latin-1), and the entity check
    # then reads what feedparser will.
    utf8 = as_utf8_xml(decode_body(body, content_type=content_type, document=True).text)
    refuse_entity_declarations(utf8, what=what)
    # Bytes in a stream: feedparser treats a str or bytes argument as a URL or a file name to open.
    # No content-location either: feedparser would resolve relative guids against it, and an id
    # must not change when the feed moves.
    media_type = content_type.split(";", 1)[0].strip() or "application/xml"
    parsed = feedparser.parse(io.BytesIO(utf8), response_headers={"content-type": f"{media_type}; charset=utf-8"})
    entries: list[Any] = list(parsed.entries)
    problem = parsed.get("bozo_exception") if parsed.bozo else None
    if isinstance(problem, SAXParseException) and _expat_code(problem) in _TRUNCATION_ERRORS:
        raise SourceFormatError(f"{what}: the document is truncated ({problem})")
    if not entries:
        if isinstance(problem, SAXParseException):
            raise SourceFormatError(f"{what}: not well-formed XML ({problem})")
        if not parsed.version:
            raise SourceFormatError(f"{what}: not an RSS or Atom feed")
    feed_language = str(parsed.feed.get("language") or "")
    posts = (post_from_entry(entry, feed_language=feed_language, base_url=base_url) for entry in entries)
    return [post for post in posts if post is not None]


def _expat_code(error: SAXParseException) -> int | None:
    code = getattr(error.getException(), "code", None)
    return code if isinstance(code, int) else None


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
    tag = next(
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
        language=language(tag),
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
