"""What every channel shows of a digest's items, and how many of them fit a platform's limit.

A digest is a :class:`Message` whose ``items`` are complete escalations or alerts. Each channel
lists them as :class:`Entry` values: every untrusted field already on one line, free of control
characters and clipped, and every link either plain https or empty. Entries are *not* escaped
for any platform; each channel still applies its own escaping (Slack's ``&<>``, HTML autoescape).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from services.notifier.render import clip, https, oneline

if TYPE_CHECKING:
    from collections.abc import Callable

    from services.notifier.message import Message

T = TypeVar("T")

# A digest is read at a glance: each post is a short one-line quote, the whole post is one click away.
QUOTE_CHARS = 160
TITLE_CHARS = 150
HANDLE_CHARS = 60
CASE_ID_CHARS = 80
SEVERITY_CHARS = 20
# Longer links are dropped rather than cut: a cut link leads nowhere, and ours are far shorter.
LINK_CHARS = 400
SEVERITY_RANK = {"CRITICAL": 3, "HIGH": 2, "MEDIUM": 1, "LOW": 0}


@dataclass(frozen=True)
class Entry:
    """One item of a digest, ready for any channel's own escaping."""

    id: str
    kind: str
    severity: str
    title: str
    case_id: str
    # The post, quoted on one line; empty for an alert.
    quote: str
    # The reason, shown only for an item without a post (an alert's summary).
    note: str
    handle: str
    followers: int
    post_url: str
    ack_url: str

    @property
    def byline(self) -> str:
        """The author without the "@", for chats that would read it as a mention."""
        return f"{self.handle} ({self.followers:,} followers)" if self.handle else ""

    @property
    def author(self) -> str:
        return f"@{self.byline}" if self.handle else ""

    def line(self) -> str:
        """The entry on one line, for plain-text channels (console, file)."""
        parts = [f"{self.severity}: {self.title}"]
        if self.quote:
            parts.append(f"\u201c{self.quote}\u201d")
        elif self.note:
            parts.append(self.note)
        if self.author:
            parts.append(self.author)
        if self.post_url:
            parts.append(self.post_url)
        if self.ack_url:
            parts.append(f"ack: {self.ack_url}")
        return " | ".join(parts)


def link(url: str) -> str:
    """``url`` when it is plain https and short enough to keep whole, else empty."""
    safe = https(url)
    return safe if len(safe) <= LINK_CHARS else ""


def entry(item: Message, *, quote_chars: int = QUOTE_CHARS) -> Entry:
    quote = clip(oneline(item.post_text), min(quote_chars, QUOTE_CHARS))
    return Entry(
        id=oneline(item.id),
        kind=clip(oneline(item.kind), 20),
        severity=clip(oneline(item.severity), SEVERITY_CHARS),
        title=clip(oneline(item.title), TITLE_CHARS) or "notification",
        case_id=clip(oneline(item.case_id), CASE_ID_CHARS),
        quote=quote,
        note="" if quote else clip(oneline(item.reason), QUOTE_CHARS),
        handle=clip(oneline(item.author_handle).lstrip("@"), HANDLE_CHARS),
        followers=max(item.author_followers, 0),
        post_url=link(item.post_url),
        ack_url=link(item.ack_url),
    )


def entries(message: Message, *, quote_chars: int = QUOTE_CHARS) -> list[Entry]:
    return [entry(item, quote_chars=quote_chars) for item in message.items]


def top_item(message: Message) -> Message:
    """The most severe item, the earliest of equals: the one to read first."""
    return max(message.items, key=lambda item: SEVERITY_RANK.get(item.severity.upper(), -1))


def fit(render: Callable[[int], T], count: int, fits: Callable[[T], bool]) -> T:
    """``render(k)`` for the largest ``k <= count`` whose result ``fits``; ``render(0)`` when none does.

    Rendering more items never makes the result smaller, so a binary search needs only a
    handful of renders even for the largest digest.
    """
    low, high = 0, count
    best = render(count)
    if fits(best):
        return best
    best = render(0)
    while high - low > 1:
        middle = (low + high) // 2
        candidate = render(middle)
        if fits(candidate):
            low, best = middle, candidate
        else:
            high = middle
    return best
