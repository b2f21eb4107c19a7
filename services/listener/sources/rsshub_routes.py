"""Which platform an RSSHub route reads, from the route's leading segments.

RSSHub names each route by its namespace (``/weibo/…``, ``/zhihu/…``); a few platforms live inside
another's namespace (Baidu Tieba under ``/baidu/tieba``, 黑猫投诉 under ``/sina/tousu``). The label
becomes the mention's platform, so a post read through RSSHub gets the same mention id as one read
from the platform directly. Routes not listed here are labelled ``rsshub``. docs/sources.md has the
same table for operators.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote


@dataclass(frozen=True)
class RoutePlatform:
    # Leading route segments, e.g. ("sina", "tousu").
    prefix: tuple[str, ...]
    platform: str
    # The language nearly every post there is in; RSSHub's RSS output says "en" unless a route sets one.
    language: str


UNKNOWN = RoutePlatform(prefix=(), platform="rsshub", language="")

# Longer prefixes first, so /sina/tousu wins over a /sina entry should one be added.
ROUTE_PLATFORMS: tuple[RoutePlatform, ...] = (
    RoutePlatform(("sina", "tousu"), "heimao", "zh"),
    RoutePlatform(("baidu", "tieba"), "tieba", "zh"),
    RoutePlatform(("tieba",), "tieba", "zh"),
    RoutePlatform(("weibo",), "weibo", "zh"),
    RoutePlatform(("zhihu",), "zhihu", "zh"),
    RoutePlatform(("bilibili",), "bilibili", "zh"),
    RoutePlatform(("xiaohongshu",), "xiaohongshu", "zh"),
    RoutePlatform(("douyin",), "douyin", "zh"),
    RoutePlatform(("douban",), "douban", "zh"),
    RoutePlatform(("v2ex",), "v2ex", "zh"),
    RoutePlatform(("pikabu",), "pikabu", "ru"),
)


def route_platform(route: str) -> RoutePlatform:
    """The platform a route reads (``UNKNOWN`` when the table does not know it)."""
    path = route.split("?", 1)[0]
    segments = tuple(unquote(segment).lower() for segment in path.split("/") if segment)
    for entry in ROUTE_PLATFORMS:
        if segments[: len(entry.prefix)] == entry.prefix:
            return entry
    return UNKNOWN
