"""The 5ch board formats: ``subject.txt`` (the thread list) and ``dat`` files (a thread's posts).

Both are lines of fields joined by ``<>``, in Shift_JIS (cp932), ``\\n`` line ends:

- ``subject.txt``: ``<key>.dat<>title (posts)``, threads in bump order, the most recent first.
  The key is the thread's creation time in epoch seconds.
- ``dat/<key>.dat``: ``name<>mail<>date and ID<>body<>title``, one line per post, the title only
  on the first. Name, date and body are HTML-escaped; the body writes line breaks as ``<br>``.
  A name may carry a trip (``名無し </b>◆AbCdEfGh12 <b>``) and the date an ID
  (``2026/11/20(金) 12:34:56.78 ID:Ab1Cd2Ef0``), in Japan time. A deleted post keeps its line
  with every field replaced by the same marker (``あぼーん``), so post numbers never shift.

Parsing is lenient per line: a line that does not fit is reported, not fatal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from services.listener.sources.common import html_to_text

JST = timezone(timedelta(hours=9), "JST")
_SUBJECT_LINE = re.compile(r"(?P<key>\d{1,20})\.dat<>(?P<title>.*?)\s*\((?P<posts>\d{1,7})\)\s*")
_DATE = re.compile(
    r"(?P<year>\d{2}|\d{4})/(?P<month>\d{1,2})/(?P<day>\d{1,2})(?:\s*\([^)]*\))?\s+"
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,6}))?)?"
)
_ID = re.compile(r"\bID:(?P<id>[^\s]+)")
# What the server adds to a name: the trip, or a host name, between "</b>" and "<b>".
_ADDED_TO_NAME = re.compile(r"</b>(?P<added>.*?)<b>", re.IGNORECASE | re.DOTALL)
_TRIP = re.compile(r"◆(?P<trip>[^\s<]{8,12})")


@dataclass(frozen=True)
class Thread:
    key: str
    title: str
    posts: int


@dataclass(frozen=True)
class DatPost:
    """One post of a thread; ``number`` counts from 1, as 5ch numbers them."""

    number: int
    text: str
    name: str
    handle: str
    created_at: datetime | None


def parse_subject(text: str) -> tuple[list[Thread], list[int]]:
    """The threads listed, in their order, and the 1-based numbers of the lines that are not thread lines."""
    threads: list[Thread] = []
    bad: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _SUBJECT_LINE.fullmatch(line)
        if match is None:
            bad.append(number)
            continue
        title = html_to_text(match["title"])
        threads.append(Thread(match["key"], title, int(match["posts"])))
    return threads, bad


def parse_dat_line(line: str, number: int) -> DatPost | None:
    """Post ``number`` from its dat line; None for a deleted post. Raises ValueError for a line that is
    not a dat line."""
    fields = line.split("<>")
    if len(fields) < 4:
        raise ValueError(f"{len(fields)} fields, a post has at least 4")
    raw_name, _mail, stamp, raw_body = fields[:4]
    title = fields[4].strip() if len(fields) > 4 else ""
    if raw_name == stamp == raw_body.strip():
        return None
    body = html_to_text(raw_body)
    heading = html_to_text(title) if number == 1 else ""
    text = f"{heading}\n\n{body}" if heading and body else heading or body
    if not text:
        return None
    name, trip = _name_and_trip(raw_name)
    poster_id = _ID.search(stamp)
    return DatPost(
        number=number,
        text=text,
        name=name,
        handle=trip or (poster_id["id"] if poster_id else ""),
        created_at=parse_date(stamp),
    )


def _name_and_trip(raw: str) -> tuple[str, str]:
    trip = _TRIP.search(raw)
    name = " ".join(html_to_text(_ADDED_TO_NAME.sub(" ", raw)).split())
    return name, f"◆{trip['trip']}" if trip else ""


def parse_date(stamp: str) -> datetime | None:
    """The instant of a dat date field (``2026/11/20(金) 12:34:56.78``, Japan time); None if it has none."""
    match = _DATE.search(stamp)
    if match is None:
        return None
    year = int(match["year"])
    fraction = (match["fraction"] or "0").ljust(6, "0")
    try:
        return datetime(
            year + 2000 if year < 100 else year,
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"] or 0),
            int(fraction),
            tzinfo=JST,
        )
    except ValueError:
        return None
