"""Source adapters, one module per platform, all behind :class:`services.listener.sources.base.Source`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.listener.config import HttpSourceSettings
    from services.listener.sources.base import Source

# kind → "module:Class"; imported on first use so one adapter's dependencies never load for another.
ADAPTERS: dict[str, str] = {
    "rss": "services.listener.sources.rss:RssSource",
    "rsshub": "services.listener.sources.rsshub:RsshubSource",
    "json": "services.listener.sources.json_api:JsonApiSource",
    "reddit": "services.listener.sources.reddit:RedditSource",
    "mastodon": "services.listener.sources.mastodon:MastodonSource",
    "bluesky": "services.listener.sources.bluesky:BlueskySource",
    "hackernews": "services.listener.sources.hackernews:HackerNewsSource",
    "x": "services.listener.sources.x:XSource",
    "vk": "services.listener.sources.vk:VkSource",
    "dvach": "services.listener.sources.dvach:DvachSource",
    "fivech": "services.listener.sources.fivech:FivechSource",
}


def build_source(settings: HttpSourceSettings) -> Source:
    kind = str(getattr(settings, "kind", ""))
    target = ADAPTERS.get(kind)
    if target is None:
        raise ValueError(f"no adapter for source kind {kind!r}; known kinds: {', '.join(sorted(ADAPTERS))}")
    module_name, class_name = target.split(":")
    adapter: type[Source] = getattr(importlib.import_module(module_name), class_name)
    return adapter(settings)  # type: ignore[call-arg]
