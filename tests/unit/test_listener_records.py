"""The listener's records in KV: protobuf records, and the JSON records of earlier versions."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from clamor.v1 import listener_state_pb2
from services.listener.lease import Lease
from services.listener.records import (
    ADDED_SOURCE_CODEC,
    LEASE_CODEC,
    SOURCE_STATE_CODEC,
    replica_key,
    source_lease_key,
)
from services.listener.registry import parse_source_settings
from services.listener.sources.base import SourceState
from tests.support.clock import ManualClock


def a_state() -> SourceState:
    return SourceState(
        cursor="t3_abc", etag='W/"42"', last_modified="Mon, 07 Dec 2026 12:00:00 GMT", seen=["a", "b", "ü-3"]
    )


def test_a_source_state_is_stored_as_protobuf_and_read_back() -> None:
    data = SOURCE_STATE_CODEC.encode(a_state())
    stored = listener_state_pb2.SourceStateRecord.FromString(data)
    assert (stored.cursor, list(stored.seen)) == ("t3_abc", ["a", "b", "ü-3"])
    assert SOURCE_STATE_CODEC.decode(data) == a_state()
    assert SOURCE_STATE_CODEC.decode(SOURCE_STATE_CODEC.encode(SourceState())) == SourceState()


def test_a_source_state_as_earlier_versions_stored_it_is_read() -> None:
    # SourceState.to_json of earlier versions, dumped with ensure_ascii=False.
    old = {
        "cursor": "t3_abc",
        "etag": 'W/"42"',
        "last_modified": "Mon, 07 Dec 2026 12:00:00 GMT",
        "seen": ["a", "b", "ü-3"],
    }
    assert SOURCE_STATE_CODEC.decode(json.dumps(old, ensure_ascii=False).encode()) == a_state()
    # Their reader took missing fields as empty and anything else as text; so does this one.
    assert SOURCE_STATE_CODEC.decode(b'{"cursor": 120, "seen": [7, "x"]}') == SourceState(cursor="120", seen=["7", "x"])
    assert SOURCE_STATE_CODEC.decode(b"{}") == SourceState()


def added_settings() -> dict[str, object]:
    source = {
        "kind": "rss",
        "name": "outages",
        "url": "https://status.example/feed.xml",
        "allow_hosts": ["status.example"],
    }
    dumped: dict[str, object] = parse_source_settings(source).model_dump(mode="json")
    return dumped


def test_an_added_source_is_stored_as_protobuf_and_validates_again() -> None:
    data = ADDED_SOURCE_CODEC.encode(added_settings())
    stored = listener_state_pb2.AddedSourceRecord.FromString(data)
    assert (stored.name, stored.kind) == ("outages", "rss")
    assert ADDED_SOURCE_CODEC.decode(data) == added_settings()
    assert parse_source_settings(ADDED_SOURCE_CODEC.decode(data)) == parse_source_settings(added_settings())


def test_an_added_source_as_earlier_versions_stored_it_is_read() -> None:
    # Earlier versions stored settings.model_dump(mode="json") itself.
    old = json.dumps(added_settings(), ensure_ascii=False).encode()
    assert ADDED_SOURCE_CODEC.decode(old) == added_settings()
    stored = listener_state_pb2.AddedSourceRecord.FromString(ADDED_SOURCE_CODEC.encode(ADDED_SOURCE_CODEC.decode(old)))
    assert (stored.name, stored.kind) == ("outages", "rss")


def test_added_settings_that_are_not_an_object_are_refused() -> None:
    data = listener_state_pb2.AddedSourceRecord(name="x", settings_json="[1]").SerializeToString()
    with pytest.raises(TypeError, match="not a JSON object"):
        ADDED_SOURCE_CODEC.decode(data)


def test_a_lease_is_stored_as_protobuf_to_the_microsecond() -> None:
    clock = ManualClock()
    clock.advance(0.123456)
    lease = Lease(holder="listener-7c9f-1a2b3c4d", renewed_at=clock(), expires_at=clock() + timedelta(seconds=15))
    data = LEASE_CODEC.encode(lease)
    assert listener_state_pb2.SourceLeaseRecord.FromString(data).holder == "listener-7c9f-1a2b3c4d"
    assert LEASE_CODEC.decode(data) == lease
    assert (source_lease_key("reviews"), replica_key("listener-7c9f-1a2b3c4d")) == (
        "source.reviews",
        "replica.listener-7c9f-1a2b3c4d",
    )
