"""Hourly volume records: what one hour of one watch's complaints (or noise) looked like.

A record counts posts in total and by category, severity, language and source, in six 10-minute
slots (for the spike detector's sliding window), per category and per configured keyword, and
keeps the hour's top terms, most-reached authors and a few sample posts for alerts. Each record
also holds the stream sequence of the last post it counted (``through_seq``): posts are counted in
stream order, so a post at or below it was counted before, and a replay of the stream after a
crash or by a second replica counts nothing twice.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from clamor.v1 import triage_pb2

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

SLOT_S = 600
SLOTS_PER_HOUR = 6
MAX_TERMS = 40
MAX_AUTHORS = 5
MAX_SAMPLES = 5
SAMPLE_CHARS = 280

# Words too common to say what a surge is about (English and Russian; CJK is cut into pairs).
# fmt: off
STOPWORDS = frozenset({
    "the", "and", "for", "are", "but", "not", "you", "your", "with", "this", "that", "have", "has", "had", "was",
    "were", "they", "them", "their", "what", "when", "where", "who", "why", "how", "all", "any", "can", "our",
    "out", "get", "got", "just", "from", "will", "would", "could", "should", "been", "being", "into", "than",
    "then", "there", "here", "about", "after", "again", "also", "only", "very", "more", "most", "some", "such",
    "its", "it's", "i'm", "don't", "can't", "im", "dont", "cant", "did", "does", "doing", "one", "two", "now",
    "still", "even", "ever", "via", "amp", "http", "https", "www", "com", "это", "как", "что", "так", "все", "уже",
    "еще", "они", "она", "оно", "мне", "меня", "мой", "моя", "вас", "вам", "ваш", "для", "или", "при", "без",
    "над", "под",
})
# fmt: on
_WORD = re.compile(r"[a-z\u00c0-\u024f\u0400-\u04ff][a-z0-9\u00c0-\u024f\u0400-\u04ff'-]{2,}")
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]+")


def terms_of(text: str) -> list[str]:
    """The post's distinct terms: words of three letters or more without stopwords, and CJK character pairs."""
    lowered = text.lower()
    found = [w.strip("'-") for w in _WORD.findall(lowered)]
    found = [w for w in found if len(w) >= 3 and w not in STOPWORDS and not w.startswith("http")]
    for run in _CJK_RUN.findall(lowered):
        found += [run[i : i + 2] for i in range(len(run) - 1)]
    return list(dict.fromkeys(found))


def slot_of(at: datetime) -> int:
    return int(at.timestamp()) // SLOT_S


def hour_start(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_label(at: datetime) -> str:
    return hour_start(at).strftime("%Y%m%d%H")


def verdict_label(verdict: triage_pb2.Verdict.ValueType) -> str:
    return "complaint" if verdict == triage_pb2.VERDICT_COMPLAINT else "noise"


def posted_at(triaged: triage_pb2.TriagedMention, *, now: datetime) -> datetime:
    """When the post was written (when it was found, if the platform gave no time), never in the future."""
    mention = triaged.mention
    stamp = mention.created_at if mention.HasField("created_at") else mention.discovered_at
    at = stamp.ToDatetime(tzinfo=UTC) if stamp.seconds else now
    return min(at, now)


@dataclass
class HourCounts:
    through_seq: int = 0
    total: int = 0
    slots: list[int] = field(default_factory=lambda: [0] * SLOTS_PER_HOUR)
    categories: dict[str, int] = field(default_factory=dict)
    severities: dict[str, int] = field(default_factory=dict)
    languages: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    terms: dict[str, int] = field(default_factory=dict)
    category_slots: dict[str, list[int]] = field(default_factory=dict)
    keyword_slots: dict[str, list[int]] = field(default_factory=dict)
    # [handle, platform, followers], most-reached first.
    authors: list[list[Any]] = field(default_factory=list)
    # [mention_id, text, url, author, followers], most-reached first.
    samples: list[list[Any]] = field(default_factory=list)

    def add(self, seq: int, triaged: triage_pb2.TriagedMention, *, at: datetime, keywords: Sequence[str]) -> bool:
        """Count the post at stream sequence ``seq``; False when it was counted before."""
        if seq <= self.through_seq:
            return False
        self.through_seq = seq
        mention, result = triaged.mention, triaged.result
        slot = (at.minute * 60 + at.second) // SLOT_S
        self.total += 1
        self.slots[slot] += 1
        category = result.category or "uncategorised"
        _bump(self.categories, category)
        self.category_slots.setdefault(category, [0] * SLOTS_PER_HOUR)[slot] += 1
        _bump(self.severities, triage_pb2.Severity.Name(result.severity).removeprefix("SEVERITY_"))
        _bump(self.languages, result.language or mention.language or "unknown")
        _bump(self.sources, mention.platform or "unknown")
        terms = terms_of(mention.text)
        for term in terms:
            _bump(self.terms, term)
        if len(self.terms) > 4 * MAX_TERMS:
            # Bounded: the long tail of one-off words is dropped, the hour's real top terms stay.
            self.terms = dict(Counter(self.terms).most_common(MAX_TERMS))
        for keyword in keywords:
            if keyword.lower() in mention.text.lower():
                self.keyword_slots.setdefault(keyword, [0] * SLOTS_PER_HOUR)[slot] += 1
        followers = int(mention.author.followers)
        handle = mention.author.handle or "unknown"
        self.authors = _top([*self.authors, [handle, mention.platform, followers]], MAX_AUTHORS, key=2, unique=0)
        sample = [mention.id, mention.text[:SAMPLE_CHARS], mention.url, handle, followers]
        self.samples = _top([*self.samples, sample], MAX_SAMPLES, key=4, unique=0)
        return True


def _bump(counts: dict[str, int], name: str) -> None:
    counts[name] = counts.get(name, 0) + 1


def _top(rows: Iterable[list[Any]], limit: int, *, key: int, unique: int) -> list[list[Any]]:
    """The ``limit`` rows with the largest ``row[key]``, one per ``row[unique]``, largest first."""
    best: dict[Any, list[Any]] = {}
    for row in rows:
        seen = best.get(row[unique])
        if seen is None or row[key] > seen[key]:
            best[row[unique]] = row
    return sorted(best.values(), key=lambda row: -int(row[key]))[:limit]


def merged(records: Iterable[HourCounts]) -> HourCounts:
    """Several hours' records as one (counts added, tops recomputed); ``through_seq`` is meaningless."""
    out = HourCounts()
    for record in records:
        out.total += record.total
        for mine, theirs in (
            (out.categories, record.categories),
            (out.severities, record.severities),
            (out.languages, record.languages),
            (out.sources, record.sources),
            (out.terms, record.terms),
        ):
            for name, count in theirs.items():
                mine[name] = mine.get(name, 0) + count
        out.authors = _top([*out.authors, *record.authors], MAX_AUTHORS, key=2, unique=0)
        out.samples = _top([*out.samples, *record.samples], MAX_SAMPLES, key=4, unique=0)
    return out
