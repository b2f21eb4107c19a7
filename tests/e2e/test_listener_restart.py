"""Kill the listener mid-poll and mid-publish, restart it: the stream holds each post exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import nats
import pytest
import yaml
from aiohttp import web

from clamor.v1 import mention_pb2
from services.shared import subjects
from services.shared.nats_server import LocalNatsServer, free_port
from tests.http_server import serve
from tests.support.eventually import eventually

pytestmark = pytest.mark.e2e

POSTS = 1000


def feed_xml(count: int) -> bytes:
    now = datetime.now(UTC)
    items = "".join(
        f"<item><guid>post-{n}</guid><title>Parcelo parcel {n} never arrived</title>"
        f"<link>https://reviews.example/parcelo/{n}</link>"
        f"<pubDate>{format_datetime(now - timedelta(minutes=count - n))}</pubDate></item>"
        for n in range(count)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>reviews</title>{items}</channel></rss>'.encode()


def start_listener(folder: Path, config: Path) -> subprocess.Popen[bytes]:
    log = (folder / "listener.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.listener", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )
    log.close()
    return process


async def stored_mention_ids(url: str) -> list[str]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(subjects.MENTIONS.name)
        except nats.js.errors.NotFoundError:
            return []
        ids = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else []:
            raw = await js.get_msg(subjects.MENTIONS.name, seq)
            mention = mention_pb2.Mention()
            mention.ParseFromString(raw.data or b"")
            ids.append(mention.id)
        return ids
    finally:
        await nc.close()


async def stored_count(url: str) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(subjects.MENTIONS.name)
        return int(info.state.messages)
    except nats.js.errors.NotFoundError:
        return 0
    finally:
        await nc.close()


async def test_killing_the_listener_mid_poll_and_mid_publish_loses_and_repeats_nothing(
    tmp_path: Path, nats_server: LocalNatsServer
) -> None:
    body = feed_xml(POSTS)
    release = asyncio.Event()
    asked = asyncio.Event()

    async def feed(_: web.Request) -> web.Response:
        asked.set()
        await release.wait()
        return web.Response(body=body, content_type="application/rss+xml")

    async with serve({("GET", "/feed.xml"): feed}) as server:
        config = tmp_path / "clamor.yaml"
        source = {
            "kind": "rss",
            "name": "reviews",
            "url": server.url("/feed.xml"),
            "allow_hosts": ["127.0.0.1"],
            "interval_s": 5,
            "jitter": 0,
            "backfill_hours": 48,
        }
        config.write_text(
            yaml.safe_dump(
                {
                    "nats": {"url": nats_server.url},
                    "telemetry": {"log_format": "json"},
                    # A killed listener's lease lapses after this; only then does its successor poll.
                    "listener": {"grpc": {"port": free_port()}, "sources": [source], "lease_ttl_s": 3},
                }
            )
        )
        listener = start_listener(tmp_path, config)
        try:
            # 1. Mid-poll: the feed request is in flight when the listener dies.
            await asyncio.wait_for(asked.wait(), timeout=60)
            listener.send_signal(signal.SIGKILL)
            listener.wait()
            assert await stored_count(nats_server.url) == 0
            # 2. Mid-publish: some posts are in the stream, the state was never saved.
            release.set()
            listener = start_listener(tmp_path, config)

            async def some_published() -> bool:
                return await stored_count(nats_server.url) >= 50

            await eventually(some_published, within_s=60, what="the first posts")
            listener.send_signal(signal.SIGKILL)
            listener.wait()
            partial = await stored_count(nats_server.url)
            # 3. Restart: the rest arrives, nothing twice, and later polls add nothing.
            listener = start_listener(tmp_path, config)

            async def all_published() -> bool:
                return await stored_count(nats_server.url) >= POSTS

            await eventually(all_published, within_s=90, what="every post")
            polls_before = len(server.requests)

            async def polled_again() -> bool:
                return len(server.requests) > polls_before + 1

            await eventually(polled_again, within_s=30, what="two more polls")
        finally:
            listener.send_signal(signal.SIGTERM)
            listener.wait(timeout=20)
    ids = await stored_mention_ids(nats_server.url)
    assert 0 < partial < POSTS, "the second kill must land mid-publish"
    assert len(ids) == POSTS
    assert sorted(set(ids)) == sorted(f"rss:post-{n}" for n in range(POSTS))
