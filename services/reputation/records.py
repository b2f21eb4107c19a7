"""How the reputation service's records are stored in KV: as protobuf (alert.proto, reputation_state.proto).

Alerts are stored as the ``Alert`` message itself. The spike detector's ``SpikeState`` and the trend
counters' ``HourCounts``, cursor and watch list keep their domain forms; this module is the one
place that maps them onto the stored messages, so neither ``spikes`` nor ``domain`` knows the wire
format. Records an earlier version wrote as JSON are still read: their keys are the messages' field
names, and the ``_legacy_*`` functions reshape the values whose JSON form differs (a spike status
as lower-case text, empty slots as null, slot lists, author and sample rows as arrays, the watch
list as a bare object). The next change of such a record writes it in binary.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from clamor.v1 import alert_pb2
from clamor.v1 import reputation_state_pb2 as state_pb2
from services.reputation.domain import MAX_TERMS, SLOTS_PER_HOUR, HourCounts
from services.reputation.spikes import SpikeState, Status
from services.shared.kv_state import MappedCodec, ProtoCodec

_STATUSES: dict[Status, state_pb2.SpikeStatus.ValueType] = {
    "quiet": state_pb2.SPIKE_STATUS_QUIET,
    "firing": state_pb2.SPIKE_STATUS_FIRING,
    "cooling": state_pb2.SPIKE_STATUS_COOLING,
}
_STATUS_OF: dict[state_pb2.SpikeStatus.ValueType, Status] = {value: name for name, value in _STATUSES.items()}
_SPIKE_INTS = ("revision", "started_slot", "last_emitted_count", "last_emitted_slot", "peak")
_SPIKE_OPTIONAL_INTS = ("below_since_slot", "resolved_slot")

# --- spike states ---------------------------------------------------------------------------------


def spike_state_to_proto(state: SpikeState) -> state_pb2.SpikeStateRecord:
    return state_pb2.SpikeStateRecord(
        status=_STATUSES[state.status],
        alert_id=state.alert_id,
        revision=state.revision,
        started_slot=state.started_slot,
        last_emitted_count=state.last_emitted_count,
        last_emitted_slot=state.last_emitted_slot,
        peak=state.peak,
        below_since_slot=state.below_since_slot,
        resolved_slot=state.resolved_slot,
    )


def spike_state_from_proto(stored: state_pb2.SpikeStateRecord) -> SpikeState:
    if stored.status != state_pb2.SPIKE_STATUS_UNSPECIFIED and stored.status not in _STATUS_OF:
        raise ValueError(f"spike status {stored.status} is not one this version knows")
    return SpikeState(
        status=_STATUS_OF.get(stored.status, "quiet"),
        alert_id=stored.alert_id,
        revision=stored.revision,
        started_slot=stored.started_slot,
        last_emitted_count=stored.last_emitted_count,
        last_emitted_slot=stored.last_emitted_slot,
        peak=stored.peak,
        below_since_slot=stored.below_since_slot if stored.HasField("below_since_slot") else None,
        resolved_slot=stored.resolved_slot if stored.HasField("resolved_slot") else None,
    )


def _legacy_spike_state(old: dict[str, Any]) -> dict[str, Any]:
    """A state as ``SpikeState.to_json`` wrote it; a ValueError names the first field that is wrong."""
    status = old.get("status", "quiet")
    if status not in _STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(_STATUSES)}")
    for name in (*_SPIKE_INTS, *_SPIKE_OPTIONAL_INTS):
        value = old.get(name)
        # bool is an int to isinstance, but true is no slot number.
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"{name} is {value!r}, not an int")
    if not isinstance(old.get("alert_id", ""), str):
        raise ValueError(f"alert_id is {old['alert_id']!r}, not a string")
    reshaped = {name: value for name, value in old.items() if value is not None}
    reshaped["status"] = state_pb2.SpikeStatus.Name(_STATUSES[status])
    return reshaped


SPIKE_STATE_CODEC = MappedCodec(
    state_pb2.SpikeStateRecord,
    to_proto=spike_state_to_proto,
    from_proto=spike_state_from_proto,
    legacy=_legacy_spike_state,
)

# --- alerts ---------------------------------------------------------------------------------------

# Earlier versions stored MessageToDict(alert, preserving_proto_field_name=True): read as it is.
ALERT_CODEC = ProtoCodec(alert_pb2.Alert)

# --- trend counters -------------------------------------------------------------------------------


def hour_counts_to_proto(record: HourCounts) -> state_pb2.HourCountsRecord:
    return state_pb2.HourCountsRecord(
        through_seq=record.through_seq,
        total=record.total,
        slots=record.slots,
        categories=record.categories,
        severities=record.severities,
        languages=record.languages,
        sources=record.sources,
        terms=dict(Counter(record.terms).most_common(MAX_TERMS)),
        category_slots={name: state_pb2.SlotCounts(counts=counts) for name, counts in record.category_slots.items()},
        keyword_slots={name: state_pb2.SlotCounts(counts=counts) for name, counts in record.keyword_slots.items()},
        authors=[
            state_pb2.HourAuthor(handle=str(handle), platform=str(platform), followers=int(followers))
            for handle, platform, followers in record.authors
        ],
        samples=[
            state_pb2.HourSample(
                mention_id=str(mention_id), text=str(text), url=str(url), author=str(author), followers=int(followers)
            )
            for mention_id, text, url, author, followers in record.samples
        ],
    )


def hour_counts_from_proto(stored: state_pb2.HourCountsRecord) -> HourCounts:
    return HourCounts(
        through_seq=stored.through_seq,
        total=stored.total,
        slots=list(stored.slots) or [0] * SLOTS_PER_HOUR,
        categories=dict(stored.categories),
        severities=dict(stored.severities),
        languages=dict(stored.languages),
        sources=dict(stored.sources),
        terms=dict(stored.terms),
        category_slots={name: list(slots.counts) for name, slots in stored.category_slots.items()},
        keyword_slots={name: list(slots.counts) for name, slots in stored.keyword_slots.items()},
        authors=[[a.handle, a.platform, a.followers] for a in stored.authors],
        samples=[[s.mention_id, s.text, s.url, s.author, s.followers] for s in stored.samples],
    )


def _legacy_hour_counts(old: dict[str, Any]) -> dict[str, Any]:
    """An hour as ``HourCounts.to_json`` wrote it: slot lists and author and sample rows were arrays."""
    reshaped = dict(old)
    for name in ("category_slots", "keyword_slots"):
        reshaped[name] = {key: {"counts": counts} for key, counts in (old.get(name) or {}).items()}
    reshaped["authors"] = [
        {"handle": handle, "platform": platform, "followers": followers}
        for handle, platform, followers in old.get("authors") or []
    ]
    reshaped["samples"] = [
        {"mention_id": str(mention_id), "text": text, "url": url, "author": author, "followers": followers}
        for mention_id, text, url, author, followers in old.get("samples") or []
    ]
    return reshaped


def _legacy_watch_list(old: dict[str, Any]) -> dict[str, Any]:
    """The watch list was a bare object, watch name → first slot."""
    return {"first_slots": old}


HOUR_COUNTS_CODEC = MappedCodec(
    state_pb2.HourCountsRecord,
    to_proto=hour_counts_to_proto,
    from_proto=hour_counts_from_proto,
    legacy=_legacy_hour_counts,
)
# The cursor's JSON form ({"seq": n}) is its message's.
CURSOR_CODEC: MappedCodec[int, state_pb2.CounterCursor] = MappedCodec(
    state_pb2.CounterCursor,
    to_proto=lambda seq: state_pb2.CounterCursor(seq=seq),
    from_proto=lambda stored: stored.seq,
)
WATCH_LIST_CODEC: MappedCodec[dict[str, int], state_pb2.WatchList] = MappedCodec(
    state_pb2.WatchList,
    to_proto=lambda watches: state_pb2.WatchList(first_slots=watches),
    from_proto=lambda stored: dict(stored.first_slots),
    legacy=_legacy_watch_list,
)
