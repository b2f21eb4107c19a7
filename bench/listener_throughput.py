"""Listener throughput: mentions normalised and published per second from a local feed server.

Serves an RSS feed of N items on loopback, then (1) parses and normalises it with the RSS
adapter, and (2) runs one full poll through the source runner — watch matching, a root span
per post, and publishing to a real nats-server with JetStream. The last line is the headline.

    python bench/listener_throughput.py --posts 5000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import nats
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider

from services.listener.clients import AlertPublisher, MentionPublisher, StateStore
from services.listener.config import RssSourceSettings
from services.listener.runner import SourceRunner
from services.listener.sources.base import SourceState
from services.listener.sources.rss import RssSource
from services.listener.watch import Query, Watch
from services.shared.jetstream import ensure_streams
from services.shared.nats_server import LocalNatsServer, free_port
from services.shared.outbound import FetchLimits, OutboundClient, OutboundPolicy
from services.shared.status import Counters


def feed(count: int) -> bytes:
    now = datetime.now(UTC)
    items = "".join(
        f"<item><guid>bench-{n}</guid><title>Skylark flight {n} delayed again, no refund</title>"
        f"<description>&lt;p&gt;Post number {n} about a &lt;b&gt;delay&lt;/b&gt; and a refund.&lt;/p&gt;</description>"
        f"<link>https://reviews.example/skylark/{n}</link>"
        f"<pubDate>{format_datetime(now - timedelta(seconds=n))}</pubDate></item>"
        for n in range(count)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>b</title>{items}</channel></rss>'.encode()


async def bench(posts: int) -> None:
    body = feed(posts)

    async def serve_feed(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/rss+xml")

    app = web.Application()
    app.router.add_get("/feed.xml", serve_feed)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    settings = RssSourceSettings(
        kind="rss",
        name="bench",
        url=f"http://127.0.0.1:{port}/feed.xml",
        allow_hosts=["127.0.0.1"],
        max_body_bytes=100 * 1024 * 1024,
        backfill_hours=24 * 30,
    )
    limits = FetchLimits(max_bytes=settings.max_body_bytes)
    http = OutboundClient(OutboundPolicy(("127.0.0.1",)), limits=limits)
    since = datetime.now(UTC) - timedelta(days=30)
    started = time.perf_counter()
    poll = await RssSource(settings).poll(http, SourceState(), since=since)
    normalise_s = time.perf_counter() - started
    print(
        f"fetched and normalised {len(poll.posts)} posts ({len(body) / 1e6:.1f} MB) in {normalise_s:.2f}s: "
        f"{len(poll.posts) / normalise_s:,.0f} posts/s"
    )

    with tempfile.TemporaryDirectory() as tmp:
        server = LocalNatsServer(Path(tmp) / "nats", port=free_port())
        server.start()
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await ensure_streams(js)
            tracer = TracerProvider().get_tracer("bench")
            counters = Counters()
            source_runner = SourceRunner(
                settings,
                RssSource(settings),
                http=http,
                states=await StateStore.open(js, replicas=1),
                publisher=MentionPublisher(js, tracer),
                alerts=AlertPublisher(js, tracer),
                watch=Watch(name="skylark", terms=("skylark",), query=Query.parse("delayed OR refund")),
                tracer=tracer,
                counters=counters,
            )
            started = time.perf_counter()
            outcome = await source_runner.poll_now()
            total_s = time.perf_counter() - started
            await nc.close()
        finally:
            server.stop()
    await http.aclose()
    await runner.cleanup()
    assert outcome.published == posts, outcome
    print(f"published {outcome.published} mentions to JetStream in {total_s:.2f}s (fetch, parse, watch, publish)")
    print(f"listener throughput: {outcome.published / total_s:,.0f} mentions/s from one RSS source")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=5000)
    asyncio.run(bench(parser.parse_args().posts))


if __name__ == "__main__":
    main()
