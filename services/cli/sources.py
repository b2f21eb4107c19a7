"""``clamor sources``: fetch a source once and print what it would publish, without publishing."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.markup import escape

from services.listener.config import HttpSourceSettings
from services.listener.domain import mention_from_post
from services.listener.registry import InvalidSourceError, parse_source_settings
from services.listener.sources import ADAPTERS, build_source
from services.listener.sources.base import SourceState
from services.shared.errors import ClamorError
from services.shared.outbound import FetchLimits, OutboundClient, OutboundPolicy

app = typer.Typer(help="Work with listener sources.", no_args_is_help=True)
errors = Console(stderr=True, soft_wrap=True)

# Where --url goes, per kind: the feed itself, or the API's base URL.
URL_FIELD = {"rss": "url", "json": "url"}
FIELDS = ("id", "source", "platform", "native_id", "url", "author", "text", "created_at", "language", "thread_id")


def source_settings(kind: str, *, url: str, query: str, allow_hosts: list[str], options: list[str]) -> Any:
    """A one-off source definition from command-line flags, validated like the config file's."""
    data: dict[str, Any] = {"kind": kind, "name": "cli", "allow_hosts": allow_hosts}
    if url:
        data[URL_FIELD.get(kind, "base_url")] = url
    if query:
        data["query"] = query
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            raise typer.BadParameter(f"--option takes key=value, got {option!r}")
        data[key.strip()] = value
    return parse_source_settings(data, where=f"{kind} source")


async def fetch_once(settings: HttpSourceSettings, *, hours: float) -> list[dict[str, Any]]:
    source = build_source(settings)
    platform = str(getattr(source, "platform", source.kind))
    limits = FetchLimits(max_bytes=settings.max_body_bytes, timeout_s=settings.timeout_s)
    async with OutboundClient(OutboundPolicy(tuple(settings.allow_hosts)), limits=limits) as http:
        now = datetime.now(UTC)
        poll = await source.poll(http, SourceState(), since=now - timedelta(hours=hours))
    lines = []
    for post in poll.posts:
        mention = mention_from_post(post, source=settings.name, platform=platform, watch="", discovered_at=now)
        record = MessageToDict(mention, preserving_proto_field_name=True)
        lines.append({key: record.get(key, "") for key in FIELDS})
    return lines


@app.command("fetch")
def fetch(
    kind: Annotated[str, typer.Argument(help=f"Source kind: {', '.join(sorted(ADAPTERS))}.")],
    url: Annotated[str, typer.Option(help="The feed URL (rss, json), or the API base URL (a Mastodon instance).")] = "",
    query: Annotated[str, typer.Option(help="Search query, for sources that search.")] = "",
    allow_host: Annotated[
        list[str] | None, typer.Option("--allow-host", help="Host, IP or CIDR the SSRF guard lets through.")
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="Any other source setting, as key=value.")
    ] = None,
    hours: Annotated[float, typer.Option(help="How far back to take posts.")] = 24.0,
) -> None:
    """Fetch a source once and print the mentions it would publish, as JSON lines; publishes nothing."""
    if kind not in ADAPTERS:
        errors.print(f"[red]unknown source kind {escape(kind)!r}[/red]; choose one of {', '.join(sorted(ADAPTERS))}")
        raise typer.Exit(2)
    try:
        settings = source_settings(kind, url=url, query=query, allow_hosts=allow_host or [], options=option or [])
        lines = asyncio.run(fetch_once(settings, hours=hours))
    except InvalidSourceError as exc:
        errors.print(f"[red]invalid source[/red]\n{escape(str(exc))}")
        raise typer.Exit(2) from exc
    except ClamorError as exc:
        errors.print(f"[red]fetch failed[/red]: {escape(str(exc))}")
        raise typer.Exit(1) from exc
    for line in lines:
        print(json.dumps(line, ensure_ascii=False))
    errors.print(f"{len(lines)} mention(s)")
