"""How the listener's records are stored in KV: as their protobuf contracts (listener_state.proto).

A source's ``SourceState`` stays a plain dataclass the adapters change as they poll, and a source
added at run time stays its settings as a JSON object (what ``AddSource`` validated); this module is
the one place that maps them onto the stored messages, so no adapter knows the wire format. A lease
(``services.listener.lease``) is stored the same way, under a key that says what it is a lease on. Records
an earlier version wrote as JSON are still read: a source state's keys are its message's field
names, and an added source was its bare settings object, which ``_legacy_added_source`` wraps. The
next change of such a record writes it in binary.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from clamor.v1 import listener_state_pb2 as state_pb2
from services.listener.lease import Lease
from services.listener.sources.base import SourceState
from services.shared.kv_state import MappedCodec

_SOURCE_STATE_TEXTS = ("cursor", "etag", "last_modified")


def stored_key(name: str) -> str:
    """A source's name is its KV key, as it always was: names are valid keys (``SOURCE_NAME_PATTERN``)."""
    return name


# --- source states --------------------------------------------------------------------------------


def source_state_to_proto(state: SourceState) -> state_pb2.SourceStateRecord:
    return state_pb2.SourceStateRecord(
        cursor=state.cursor, etag=state.etag, last_modified=state.last_modified, seen=state.seen
    )


def source_state_from_proto(stored: state_pb2.SourceStateRecord) -> SourceState:
    return SourceState(
        cursor=stored.cursor, etag=stored.etag, last_modified=stored.last_modified, seen=list(stored.seen)
    )


def _legacy_source_state(old: dict[str, Any]) -> dict[str, Any]:
    """A state as earlier versions' ``SourceState.to_json`` wrote it; non-text values are read as text, as then."""
    texts = {name: str(old[name]) for name in _SOURCE_STATE_TEXTS if old.get(name) is not None}
    return texts | {"seen": [str(native_id) for native_id in old.get("seen") or []]}


SOURCE_STATE_CODEC = MappedCodec(
    state_pb2.SourceStateRecord,
    to_proto=source_state_to_proto,
    from_proto=source_state_from_proto,
    legacy=_legacy_source_state,
)

# --- sources added at run time --------------------------------------------------------------------


def added_source_to_proto(settings: dict[str, Any]) -> state_pb2.AddedSourceRecord:
    return state_pb2.AddedSourceRecord(
        name=str(settings.get("name", "")),
        kind=str(settings.get("kind", "")),
        settings_json=json.dumps(settings, ensure_ascii=False),
    )


def added_source_from_proto(stored: state_pb2.AddedSourceRecord) -> dict[str, Any]:
    settings = json.loads(stored.settings_json or "{}")
    if not isinstance(settings, dict):
        raise TypeError(f"the settings of added source {stored.name!r} are not a JSON object")
    return settings


def _legacy_added_source(old: dict[str, Any]) -> dict[str, Any]:
    """Earlier versions stored the settings object itself."""
    record = added_source_to_proto(old)
    return {"name": record.name, "kind": record.kind, "settings_json": record.settings_json}


ADDED_SOURCE_CODEC: MappedCodec[dict[str, Any], state_pb2.AddedSourceRecord] = MappedCodec(
    state_pb2.AddedSourceRecord,
    to_proto=added_source_to_proto,
    from_proto=added_source_from_proto,
    legacy=_legacy_added_source,
)

# --- leases ---------------------------------------------------------------------------------------


def source_lease_key(name: str) -> str:
    """The key of the lease on polling source ``name`` (names are valid key tokens)."""
    return f"source.{name}"


def replica_key(holder: str) -> str:
    """The key of replica ``holder``'s presence lease (holder ids are valid key tokens)."""
    return f"replica.{holder}"


def _stamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def lease_to_proto(lease: Lease) -> state_pb2.SourceLeaseRecord:
    return state_pb2.SourceLeaseRecord(
        holder=lease.holder, renewed_at=_stamp(lease.renewed_at), expires_at=_stamp(lease.expires_at)
    )


def lease_from_proto(stored: state_pb2.SourceLeaseRecord) -> Lease:
    return Lease(
        holder=stored.holder,
        renewed_at=stored.renewed_at.ToDatetime(tzinfo=UTC),
        expires_at=stored.expires_at.ToDatetime(tzinfo=UTC),
    )


LEASE_CODEC: MappedCodec[Lease, state_pb2.SourceLeaseRecord] = MappedCodec(
    state_pb2.SourceLeaseRecord, to_proto=lease_to_proto, from_proto=lease_from_proto
)
