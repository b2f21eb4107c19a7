"""The listener as its own process: sources steered over gRPC, webhook pushes, source-health alerts."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
import nats
import pytest
import yaml
from aiohttp import web

from clamor.v1 import alert_pb2, listener_service_pb2, listener_service_pb2_grpc, mention_pb2
from services.shared import subjects
from services.shared.nats_server import LocalNatsServer, free_port, port_open
from tests.http_server import LocalHttpServer, serve

pytestmark = pytest.mark.e2e

SECRET = "push-secret"


def feed(count: int) -> bytes:
    now = format_datetime(datetime.now(UTC))
    items = "".join(
        f"<item><guid>g-{n}</guid><title>Lumo outage again, day {n}</title><pubDate>{now}</pubDate></item>"
        for n in range(count)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()


@dataclass
class Listener:
    folder: Path
    config: Path
    grpc_port: int
    webhook_port: int
    nats_url: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.folder / "listener.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.listener", "--config", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
        log.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)

    async def ready(self) -> None:
        for _ in range(600):
            if port_open("127.0.0.1", self.grpc_port) and port_open("127.0.0.1", self.webhook_port):
                try:
                    await self.call("ListSources", listener_service_pb2.ListSourcesRequest())
                    return
                except grpc.aio.AioRpcError:
                    pass
            await asyncio.sleep(0.1)
        raise AssertionError((self.folder / "listener.log").read_text()[-3000:])

    async def call(self, method: str, request: Any) -> Any:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            stub = listener_service_pb2_grpc.ListenerServiceStub(channel)
            return await getattr(stub, method)(request, timeout=30)

    async def sources(self) -> dict[str, listener_service_pb2.SourceStatus]:
        response = await self.call("ListSources", listener_service_pb2.ListSourcesRequest())
        return {s.name: s for s in response.sources}


@pytest.fixture
async def feed_server() -> AsyncIterator[LocalHttpServer]:
    body = feed(5)

    async def rss(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/rss+xml")

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500, text="down for maintenance")

    async with serve({("GET", "/feed.xml"): rss, ("GET", "/broken.xml"): broken}) as server:
        yield server


@pytest.fixture
async def listener(
    tmp_path: Path, nats_server: LocalNatsServer, feed_server: LocalHttpServer
) -> AsyncIterator[Listener]:
    grpc_port, webhook_port = free_port(), free_port()
    config = tmp_path / "clamor.yaml"
    broken = {
        "kind": "rss",
        "name": "broken",
        "url": feed_server.url("/broken.xml"),
        "allow_hosts": ["127.0.0.1"],
        "failing_after": 1,
        "interval_s": 5,
    }
    config.write_text(
        yaml.safe_dump(
            {
                "nats": {"url": nats_server.url},
                "listener": {
                    "grpc": {"port": grpc_port},
                    "webhook_server": {"port": webhook_port},
                    "watches": [{"name": "lumo", "terms": ["Lumo"]}],
                    "sources": [
                        {"kind": "webhook", "name": "crm", "secrets": ["old", SECRET], "watch": "lumo"},
                        broken,
                    ],
                },
            }
        )
    )
    service = Listener(tmp_path, config, grpc_port, webhook_port, nats_server.url)
    service.start()
    await service.ready()
    yield service
    service.stop()


async def stream_messages(url: str, stream: str) -> list[bytes]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        return [
            (await js.get_msg(stream, seq)).data or b""
            for seq in range(info.state.first_seq, info.state.last_seq + 1)
            if info.state.messages
        ]
    finally:
        await nc.close()


async def test_a_source_added_over_grpc_is_polled_paused_restored_and_removed(
    listener: Listener, feed_server: LocalHttpServer
) -> None:
    source = {"kind": "rss", "name": "outages", "url": feed_server.url("/feed.xml"), "allow_hosts": ["127.0.0.1"]}
    added = await listener.call(
        "AddSource", listener_service_pb2.AddSourceRequest(request_id="r1", source_config=json.dumps(source))
    )
    assert added.source.dynamic
    polled = await listener.call("PollNow", listener_service_pb2.PollNowRequest(name="outages"))
    assert (polled.fetched, polled.published, polled.error) == (5, 5, "")
    paused = await listener.call("PauseSource", listener_service_pb2.PauseSourceRequest(name="outages"))
    assert paused.source.paused
    listener.stop()
    listener.start()
    await listener.ready()
    assert (await listener.sources())["outages"].dynamic
    await listener.call("RemoveSource", listener_service_pb2.RemoveSourceRequest(name="outages"))
    assert "outages" not in await listener.sources()
    mentions = [mention_pb2.Mention.FromString(m) for m in await stream_messages(listener.nats_url, "MENTIONS")]
    assert sorted(m.id for m in mentions if m.source == "outages") == [f"rss:g-{n}" for n in range(5)]


async def test_adding_an_invalid_source_names_the_field(listener: Listener) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await listener.call(
            "AddSource", listener_service_pb2.AddSourceRequest(source_config="{kind: rss, name: x, url: ftp://a}")
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "url" in (info.value.details() or "")


async def test_a_config_file_source_cannot_be_removed_over_grpc(listener: Listener) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await listener.call("RemoveSource", listener_service_pb2.RemoveSourceRequest(name="crm"))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_signed_push_becomes_a_mention_and_an_unsigned_one_is_refused(listener: Listener) -> None:
    body = json.dumps({"posts": [{"id": "t-1", "text": "Lumo billed me twice"}, {"id": "t-2", "text": "nice day"}]})
    signature = "sha256=" + hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
    url = f"http://127.0.0.1:{listener.webhook_port}/hooks/crm"
    async with httpx.AsyncClient() as client:
        refused = await client.post(url, content=body, headers={"Content-Type": "application/json"})
        accepted = await client.post(
            url, content=body, headers={"Content-Type": "application/json", "X-Clamor-Signature": signature}
        )
    assert refused.status_code == 401
    assert accepted.status_code == 202
    mentions = [mention_pb2.Mention.FromString(m) for m in await stream_messages(listener.nats_url, "MENTIONS")]
    # t-2 does not match the watch "lumo", so only t-1 is published.
    assert [(m.id, m.watch) for m in mentions] == [("webhook:t-1", "lumo")]


async def test_a_failing_source_raises_a_source_health_alert(listener: Listener) -> None:
    for _ in range(300):
        try:
            alerts = await stream_messages(listener.nats_url, subjects.ALERTS.name)
        except nats.js.errors.NotFoundError:
            alerts = []
        if alerts:
            break
        await asyncio.sleep(0.1)
    alert = alert_pb2.Alert.FromString(alerts[0])
    assert alert.kind == alert_pb2.ALERT_KIND_SOURCE_HEALTH
    assert alert.topic == "broken"
    assert "HTTP 500" in alert.summary
    status = (await listener.sources())["broken"]
    assert status.consecutive_failures >= 1
    assert "HTTP 500" in status.last_error


async def test_sources_are_listed_by_name_one_page_at_a_time(listener: Listener) -> None:
    first = await listener.call("ListSources", listener_service_pb2.ListSourcesRequest(page_size=1))
    assert [s.name for s in first.sources] == ["broken"]
    assert first.next_page_token
    second = await listener.call(
        "ListSources", listener_service_pb2.ListSourcesRequest(page_size=1, page_token=first.next_page_token)
    )
    assert [s.name for s in second.sources] == ["crm"]
    assert second.next_page_token == ""


async def test_a_page_token_the_listener_did_not_hand_out_is_refused(listener: Listener) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await listener.call("ListSources", listener_service_pb2.ListSourcesRequest(page_token="%%%"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
