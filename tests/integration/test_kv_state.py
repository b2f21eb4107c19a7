"""KvState against a real nats-server: codecs, records of earlier versions, unreadable records, key order."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from clamor.v1 import router_state_pb2
from services.shared.jetstream import ensure_bucket
from services.shared.kv_state import KvState, MappedCodec, ProtoCodec, UnreadableRecordError, kv_key

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient

BUCKET = "test_kv_state"


@dataclass(frozen=True)
class Ticket:
    remote_id: str
    synced: int = 0


TICKETS = MappedCodec(
    router_state_pb2.DeliveryTicket,
    to_proto=lambda t: router_state_pb2.DeliveryTicket(remote_id=t.remote_id, synced=t.synced),
    from_proto=lambda m: Ticket(m.remote_id, m.synced),
)


async def test_a_mapped_record_is_stored_as_protobuf_and_read_back(nc: NatsClient) -> None:
    js = nc.jetstream()
    state = await KvState.open(js, BUCKET, codec=TICKETS)
    try:
        await state.change("case-1", lambda found: found or Ticket("ZD-1", 3))
        raw = await (await ensure_bucket(js, BUCKET)).get(kv_key("case-1"))
        assert router_state_pb2.DeliveryTicket.FromString(raw.value or b"").remote_id == "ZD-1"
        assert await state.get("case-1") == (Ticket("ZD-1", 3), raw.revision)
        assert state.peek("case-1") == Ticket("ZD-1", 3)
    finally:
        await state.close()


async def test_a_json_record_of_an_earlier_version_is_read_and_rewritten_as_protobuf_on_change(
    nc: NatsClient,
) -> None:
    js = nc.jetstream()
    bucket = await ensure_bucket(js, BUCKET)
    await bucket.put(kv_key("case-2"), b'{"remote_id": "ZD-2", "url": "", "synced": 4, "claim": "", "claimed_at": 0.0}')
    state = await KvState.open(js, BUCKET, codec=TICKETS)
    try:
        assert state.peek("case-2") == Ticket("ZD-2", 4)
        await state.change("case-2", lambda found: Ticket(found.remote_id, 5) if found else None)
        raw = await bucket.get(kv_key("case-2"))
        assert router_state_pb2.DeliveryTicket.FromString(raw.value or b"") == router_state_pb2.DeliveryTicket(
            remote_id="ZD-2", synced=5
        )
    finally:
        await state.close()


async def test_an_unreadable_record_is_logged_and_left_in_kv(nc: NatsClient, caplog: pytest.LogCaptureFixture) -> None:
    js = nc.jetstream()
    bucket = await ensure_bucket(js, BUCKET)
    await bucket.put(kv_key("case-3"), b"\xff\xff not a message")
    state = await KvState.open(js, BUCKET, codec=ProtoCodec(router_state_pb2.DeliveryTicket))
    try:
        with caplog.at_level(logging.ERROR):
            assert state.records() == []
        assert "unreadable record" in caplog.text
        with pytest.raises(UnreadableRecordError):
            await state.get("case-3")
        assert (await bucket.get(kv_key("case-3"))).value == b"\xff\xff not a message"
    finally:
        await state.close()


async def test_newest_lists_keys_by_last_change_without_reading_values(nc: NatsClient) -> None:
    js = nc.jetstream()
    state = await KvState.open(js, BUCKET, codec=TICKETS, key=lambda name: name, mirror=False)
    for name in ("a", "b", "c"):
        await state.change(name, lambda _: Ticket("new"))
    await state.change("a", lambda found: Ticket("new", 1))
    newest = await state.newest()
    assert [key for key, _ in newest] == ["a", "c", "b"]
    assert [key for key, _ in await state.newest(before=newest[1][1])] == ["b"]


async def test_create_or_get_stores_a_new_record_once_and_returns_the_stored_one_after(nc: NatsClient) -> None:
    state = await KvState.open(nc.jetstream(), BUCKET, codec=TICKETS)
    try:
        assert await state.create_or_get("case-4", Ticket("ZD-4")) == (Ticket("ZD-4"), True)
        assert await state.create_or_get("case-4", Ticket("ZD-other")) == (Ticket("ZD-4"), False)
        await state.delete("case-4")
        assert await state.create_or_get("case-4", Ticket("ZD-5")) == (Ticket("ZD-5"), True)
    finally:
        await state.close()
