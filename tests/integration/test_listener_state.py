"""The listener's stores against a real nats-server: source states and added sources, old JSON values included."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import pytest

from clamor.v1 import listener_state_pb2
from services.listener.clients import AddedSourceStore, StateStore
from services.listener.domain import SourceStatus
from services.listener.registry import SourceRegistry, parse_source_settings
from services.listener.sources.base import SourceState
from services.shared import subjects
from services.shared.jetstream import ensure_bucket

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient

OLD_STATE = {"cursor": "t3_abc", "etag": 'W/"42"', "last_modified": "", "seen": ["a", "b"]}


async def test_a_state_stored_as_json_is_read_under_its_old_key_and_rewritten_as_protobuf(nc: NatsClient) -> None:
    js = nc.jetstream()
    bucket = await ensure_bucket(js, subjects.LISTENER_STATE_BUCKET)
    # Earlier versions stored SourceState.to_json under the source's name.
    await bucket.put("reddit-acme", json.dumps(OLD_STATE).encode())
    states = await StateStore.open(js, replicas=1)
    state = await states.load("reddit-acme")
    assert state == SourceState(cursor="t3_abc", etag='W/"42"', seen=["a", "b"])
    assert await states.load("never-polled") == SourceState()

    state.mark_seen(["c"])
    state.cursor = "t3_def"
    await states.save("reddit-acme", state)
    raw = await bucket.get("reddit-acme")
    stored = listener_state_pb2.SourceStateRecord.FromString(raw.value or b"")
    assert (stored.cursor, list(stored.seen)) == ("t3_def", ["a", "b", "c"])
    assert await states.load("reddit-acme") == state

    # Saving what is stored already writes nothing.
    await states.save("reddit-acme", SourceState(cursor="t3_def", etag='W/"42"', seen=["a", "b", "c"]))
    assert (await bucket.get("reddit-acme")).revision == raw.revision


class IdleRunner:
    def __init__(self, settings: Any, dynamic: bool) -> None:
        self.status = SourceStatus(name=settings.name, kind=settings.kind, watch=settings.watch, dynamic=dynamic)

    def pause(self) -> None:
        self.status.paused = True

    def resume(self) -> None:
        self.status.paused = False

    async def run(self, stopping: asyncio.Event) -> None:
        await stopping.wait()


async def test_added_sources_old_and_new_come_back_after_a_restart(
    nc: NatsClient, caplog: pytest.LogCaptureFixture
) -> None:
    js = nc.jetstream()
    bucket = await ensure_bucket(js, subjects.LISTENER_SOURCES_BUCKET)
    # Earlier versions stored settings.model_dump(mode="json") under the source's name.
    old = {
        "kind": "rss",
        "name": "outages",
        "url": "https://status.example/feed.xml",
        "allow_hosts": ["status.example"],
    }
    await bucket.put("outages", json.dumps(old).encode())
    await bucket.put("damaged", b"\xff not a record")
    stopping = asyncio.Event()
    before = SourceRegistry(IdleRunner, await AddedSourceStore.open(js, replicas=1), stopping)
    with caplog.at_level(logging.ERROR):
        await before.restore()
    # A value this version cannot read is logged and left in KV; the others still start.
    assert "cannot restore added source damaged" in caplog.text
    assert [s.name for s in before.statuses()] == ["outages"]
    new = {"kind": "rss", "name": "releases", "url": "https://blog.example/feed.xml", "allow_hosts": ["blog.example"]}
    await before.add(parse_source_settings(new))
    raw = await bucket.get("releases")
    assert listener_state_pb2.AddedSourceRecord.FromString(raw.value or b"").kind == "rss"

    after = SourceRegistry(IdleRunner, await AddedSourceStore.open(js, replicas=1), stopping)
    await after.restore()
    assert sorted((s.name, s.dynamic) for s in after.statuses()) == [("outages", True), ("releases", True)]
    await after.remove("outages")
    stopping.set()
    await asyncio.gather(before.run(), after.run())
    restarted = SourceRegistry(IdleRunner, await AddedSourceStore.open(js, replicas=1), stopping)
    await restarted.restore()
    assert [s.name for s in restarted.statuses()] == ["releases"]
