"""How the notifier's groups and pages are stored in KV: as their protobuf contracts (notifier_state.proto).

The domain keeps its frozen dataclasses (``Message``, ``Item``, ``Group``, ``Page``) and its pure
functions over them; this module is the one place that maps them onto the stored messages, so no
domain module knows the wire format. Records an earlier version wrote as JSON are still read: their
keys are the messages' field names, and ``_legacy_group``/``_legacy_page`` reshape the two values
whose JSON form differs. The next change of such a record writes it in binary.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from clamor.v1 import notifier_state_pb2 as state_pb2
from services.notifier.grouping import Claim, Group, Item
from services.notifier.message import Message
from services.notifier.pages import Page, PageState
from services.shared.kv_state import MappedCodec

_PAGE_STATES = {
    PageState.OPEN: state_pb2.PAGE_STATE_OPEN,
    PageState.ACKNOWLEDGED: state_pb2.PAGE_STATE_ACKNOWLEDGED,
    PageState.RESOLVED: state_pb2.PAGE_STATE_RESOLVED,
    PageState.EXHAUSTED: state_pb2.PAGE_STATE_EXHAUSTED,
}
_PAGE_STATE_OF = {value: state for state, value in _PAGE_STATES.items()}


def _stamp(at: datetime | None) -> Timestamp | None:
    if at is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def _time(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def message_to_proto(message: Message) -> state_pb2.QueuedMessage:
    return state_pb2.QueuedMessage(
        id=message.id,
        kind=message.kind,
        title=message.title,
        severity=message.severity,
        risk_flags=message.risk_flags,
        reason=message.reason,
        post_text=message.post_text,
        author_handle=message.author_handle,
        author_followers=message.author_followers,
        platform=message.platform,
        post_url=message.post_url,
        case_id=message.case_id,
        team=message.team,
        level=message.level,
        sla_due=_stamp(message.sla_due),
        ack_url=message.ack_url,
        dedup_key=message.dedup_key,
        mention_id=message.mention_id,
        raised_at=_stamp(message.raised_at),
        items=[message_to_proto(item) for item in message.items],
        topic=message.topic,
    )


def message_from_proto(stored: state_pb2.QueuedMessage) -> Message:
    return Message(
        id=stored.id,
        kind=stored.kind,
        title=stored.title,
        severity=stored.severity,
        risk_flags=tuple(stored.risk_flags),
        reason=stored.reason,
        post_text=stored.post_text,
        author_handle=stored.author_handle,
        author_followers=stored.author_followers,
        platform=stored.platform,
        post_url=stored.post_url,
        case_id=stored.case_id,
        team=stored.team,
        level=stored.level,
        sla_due=_time(stored.sla_due) if stored.HasField("sla_due") else None,
        ack_url=stored.ack_url,
        dedup_key=stored.dedup_key,
        mention_id=stored.mention_id,
        raised_at=_time(stored.raised_at) if stored.HasField("raised_at") else None,
        items=tuple(message_from_proto(item) for item in stored.items),
        topic=stored.topic,
    )


def group_to_proto(group: Group) -> state_pb2.NotificationGroup:
    return state_pb2.NotificationGroup(
        id=group.id,
        channel=group.channel,
        key=group.key,
        pending=[
            state_pb2.GroupItem(
                id=item.id,
                fingerprint=item.fingerprint,
                message=message_to_proto(item.message),
                added_at=_stamp(item.added_at),
                cancel_on_ack=item.cancel_on_ack,
                traceparent=item.traceparent,
            )
            for item in group.pending
        ],
        sent={
            item_id: state_pb2.SentMark(fingerprint=fingerprint, at=_stamp(at))
            for item_id, (fingerprint, at) in group.sent.items()
        },
        sequence=group.sequence,
        first_pending_at=_stamp(group.first_pending_at),
        last_flush_at=_stamp(group.last_flush_at),
        retry_at=_stamp(group.retry_at),
        failures=group.failures,
        claim=state_pb2.GroupClaim(owner=group.claim.owner, until=_stamp(group.claim.until)) if group.claim else None,
        held_logged=group.held_logged,
    )


def group_from_proto(stored: state_pb2.NotificationGroup) -> Group:
    return Group(
        id=stored.id,
        channel=stored.channel,
        key=stored.key,
        pending=[
            Item(
                id=item.id,
                fingerprint=item.fingerprint,
                message=message_from_proto(item.message),
                added_at=_time(item.added_at),
                cancel_on_ack=item.cancel_on_ack,
                traceparent=item.traceparent,
            )
            for item in stored.pending
        ],
        sent={item_id: (mark.fingerprint, _time(mark.at)) for item_id, mark in stored.sent.items()},
        sequence=stored.sequence,
        first_pending_at=_time(stored.first_pending_at) if stored.HasField("first_pending_at") else None,
        last_flush_at=_time(stored.last_flush_at) if stored.HasField("last_flush_at") else None,
        retry_at=_time(stored.retry_at) if stored.HasField("retry_at") else None,
        failures=stored.failures,
        claim=Claim(stored.claim.owner, _time(stored.claim.until)) if stored.HasField("claim") else None,
        held_logged=stored.held_logged,
    )


def page_to_proto(page: Page) -> state_pb2.EscalationPage:
    return state_pb2.EscalationPage(
        case_id=page.case_id,
        policy=page.policy,
        message=message_to_proto(page.message),
        step_started_at=_stamp(page.step_started_at),
        step=page.step,
        loop=page.loop,
        state=_PAGE_STATES[page.state],
        actor=page.actor,
        via=page.via,
        answered_at=_stamp(page.answered_at),
        opened_at=_stamp(page.opened_at),
    )


def page_from_proto(stored: state_pb2.EscalationPage) -> Page:
    return Page(
        case_id=stored.case_id,
        policy=stored.policy,
        message=message_from_proto(stored.message),
        step_started_at=_time(stored.step_started_at),
        step=stored.step,
        loop=stored.loop,
        state=_PAGE_STATE_OF.get(stored.state, PageState.OPEN),
        actor=stored.actor,
        via=stored.via,
        answered_at=_time(stored.answered_at) if stored.HasField("answered_at") else None,
        opened_at=_time(stored.opened_at) if stored.HasField("opened_at") else None,
    )


def _legacy_group(data: dict[str, Any]) -> dict[str, Any]:
    # Earlier versions stored a sent mark as a [fingerprint, time] pair.
    sent = data.get("sent") or {}
    return data | {"sent": {item_id: {"fingerprint": mark[0], "at": mark[1]} for item_id, mark in sent.items()}}


def _legacy_page(data: dict[str, Any]) -> dict[str, Any]:
    # Earlier versions stored the state by its lower-case name.
    return data | {"state": f"PAGE_STATE_{str(data.get('state') or 'open').upper()}"}


GROUP_CODEC = MappedCodec(
    state_pb2.NotificationGroup, to_proto=group_to_proto, from_proto=group_from_proto, legacy=_legacy_group
)
PAGE_CODEC = MappedCodec(
    state_pb2.EscalationPage, to_proto=page_to_proto, from_proto=page_from_proto, legacy=_legacy_page
)
