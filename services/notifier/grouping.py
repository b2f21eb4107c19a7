"""Alertmanager-style groups: what goes out together through one channel, when, and what is a repeat.

A group is the pending and recently sent items of one channel under one group key (e.g. team
care, severity HIGH). Every function here is pure: it takes a group and returns a changed copy,
or the same object when nothing changes, which is what :class:`KvState.change` expects.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from services.notifier.message import Message
from services.notifier.quiet_hours import quiet_until

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from services.notifier.config import GroupingSettings, QuietHours

SEVERITY_RANK = {"LOW": 0, "MEDIUM": 1, "HIGH": 2, "CRITICAL": 3}
# Fields that change on every render without changing what a responder learns.
_NOT_CONTENT = ("id", "ack_url", "items")


class Enqueued(enum.Enum):
    QUEUED = "queued"
    # The item was waiting already and changed (an alert that grew): the newer version replaces it.
    UPDATED = "updated"
    # Waiting already, or sent unchanged within repeat_interval: nothing to send again.
    DUPLICATE = "duplicate"


def fingerprint(message: Message) -> str:
    data = {key: value for key, value in asdict(message).items() if key not in _NOT_CONTENT}
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=datetime.isoformat)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Item:
    # The escalation or alert id, or "<case>:<policy>:<loop>:<step>" for a re-escalation.
    id: str
    fingerprint: str
    message: Message
    added_at: datetime
    # A re-escalation step is cancelled when its case is acknowledged before it goes out.
    cancel_on_ack: bool = False
    # W3C trace context of the mention's trace, so the send continues it however late it happens.
    traceparent: str = ""

    @property
    def critical(self) -> bool:
        return self.message.severity == "CRITICAL"


@dataclass(frozen=True)
class Claim:
    """A replica's lease on sending the group's next message; it lapses if that replica dies."""

    owner: str
    until: datetime


@dataclass
class Group:
    id: str
    channel: str
    key: str
    pending: list[Item] = field(default_factory=list)
    # Item id → (fingerprint, sent at), kept for repeat_interval.
    sent: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    # Messages sent so far; the next one's id is "<group id>:<sequence + 1>".
    sequence: int = 0
    first_pending_at: datetime | None = None
    last_flush_at: datetime | None = None
    # After a failed send, nothing is tried before this time.
    retry_at: datetime | None = None
    failures: int = 0
    claim: Claim | None = None
    # Set once the notification log has said the group is held by quiet hours.
    held_logged: bool = False

    @property
    def next_notification_id(self) -> str:
        return f"{self.id}:{self.sequence + 1}"


def _clone(group: Group) -> Group:
    """A copy whose lists and dicts may change; items, claims and messages are immutable and shared."""
    return replace(group, pending=list(group.pending), sent=dict(group.sent))


def queued(groups: Iterable[Group]) -> int:
    """Items waiting to be sent across ``groups``: what the notifier reports as its queue."""
    return sum(len(group.pending) for group in groups)


def group_key(message: Message, group_by: Sequence[str]) -> str:
    values = {
        "kind": message.kind,
        "team": message.team,
        "severity": message.severity,
        "case": message.case_id,
        "topic": message.topic,
    }
    return ",".join(f"{name}={values[name]}" for name in group_by) or "all"


def group_id(channel: str, key: str) -> str:
    return "g_" + hashlib.blake2b(f"{channel}\n{key}".encode(), digest_size=12).hexdigest()


def enqueue(
    group: Group | None, item: Item, *, channel: str, key: str, now: datetime, repeat_interval_s: float
) -> tuple[Group, Enqueued]:
    """``group`` with ``item`` added, or unchanged (the same object) when it is a repeat."""
    if group is None:
        group = Group(id=group_id(channel, key), channel=channel, key=key)
    for index, waiting in enumerate(group.pending):
        if waiting.id == item.id:
            if waiting.fingerprint == item.fingerprint:
                return group, Enqueued.DUPLICATE
            changed = _clone(group)
            changed.pending[index] = replace(item, added_at=waiting.added_at)
            return changed, Enqueued.UPDATED
    mark = group.sent.get(item.id)
    if mark is not None and mark[0] == item.fingerprint and now - mark[1] < timedelta(seconds=repeat_interval_s):
        return group, Enqueued.DUPLICATE
    changed = _clone(group)
    changed.pending.append(item)
    if changed.first_pending_at is None:
        changed.first_pending_at = now
    changed.held_logged = False
    return changed, Enqueued.QUEUED


def due_at(
    group: Group, grouping: GroupingSettings, quiet: QuietHours | None, now: datetime, *, owner: str = ""
) -> datetime | None:
    """When the group's next message should go (for replica ``owner``), or None when nothing waits.

    Another replica's live claim delays the group until its lease ends. ``owner``'s own claim does
    not: it is left behind only when a send was cut short (NATS or KV away while a leader is being
    elected), and the replica that holds it tries again at once rather than waiting out the lease.
    """
    if not group.pending or group.first_pending_at is None:
        return None
    due = group.first_pending_at + timedelta(seconds=grouping.group_wait_s)
    if group.last_flush_at is not None:
        due = max(due, group.last_flush_at + timedelta(seconds=grouping.group_interval_s))
    if group.retry_at is not None:
        due = max(due, group.retry_at)
    if group.claim is not None and group.claim.until > now and (not owner or group.claim.owner != owner):
        due = max(due, group.claim.until)
    quiet_end = quiet_until(quiet, max(due, now))
    if quiet_end is not None and not any(item.critical for item in group.pending):
        return quiet_end
    return due


def held_by_quiet_hours(group: Group, quiet: QuietHours | None, now: datetime) -> bool:
    return quiet_until(quiet, now) is not None and not any(item.critical for item in group.pending)


def next_batch(group: Group, quiet: QuietHours | None, now: datetime, *, max_items: int) -> list[Item]:
    """The items of the next message: CRITICAL ones only during quiet hours, oldest first."""
    quiet_now = quiet_until(quiet, now) is not None
    return [item for item in group.pending if item.critical or not quiet_now][:max_items]


def claim(group: Group | None, *, owner: str, now: datetime, lease_s: float) -> Group | None:
    """The group claimed by ``owner``, or None when another replica holds a live claim."""
    if group is None or (group.claim is not None and group.claim.until > now and group.claim.owner != owner):
        return None
    changed = _clone(group)
    changed.claim = Claim(owner=owner, until=now + timedelta(seconds=lease_s))
    return changed


def mark_sent(group: Group, item_ids: set[str], *, now: datetime, repeat_interval_s: float) -> Group:
    """The group after its next message carried ``item_ids``: sequence advanced, repeats remembered."""
    changed = _clone(group)
    horizon = now - timedelta(seconds=repeat_interval_s)
    changed.sent = {item_id: mark for item_id, mark in changed.sent.items() if mark[1] > horizon}
    for item in group.pending:
        if item.id in item_ids:
            changed.sent[item.id] = (item.fingerprint, now)
    changed.pending = [item for item in group.pending if item.id not in item_ids]
    changed.first_pending_at = changed.pending[0].added_at if changed.pending else None
    changed.sequence += 1
    changed.last_flush_at = now
    changed.retry_at = None
    changed.failures = 0
    changed.claim = None
    return changed


def drop(group: Group, item_ids: set[str]) -> Group:
    """The group without ``item_ids`` (cancelled or dead-lettered), its claim released."""
    changed = _clone(group)
    changed.pending = [item for item in group.pending if item.id not in item_ids]
    changed.first_pending_at = changed.pending[0].added_at if changed.pending else None
    changed.claim = None
    return changed


def mark_failed(group: Group, *, retry_at: datetime) -> Group:
    changed = _clone(group)
    changed.failures += 1
    changed.retry_at = retry_at
    changed.claim = None
    return changed


def digest(group: Group, items: list[Item]) -> Message:
    """The message that carries ``items``: the item itself when alone, a digest otherwise."""
    notification_id = group.next_notification_id
    if len(items) == 1:
        return replace(items[0].message, id=notification_id)
    messages = tuple(item.message for item in items)
    severity = max((m.severity for m in messages), key=lambda s: SEVERITY_RANK.get(s, 0))
    kinds = {m.kind for m in messages}
    noun = "escalations" if kinds == {"escalation"} else "alerts" if kinds == {"alert"} else "notifications"
    teams = sorted({m.team for m in messages if m.team})
    about = f" for {', '.join(teams)}" if teams else ""
    return Message(
        id=notification_id,
        kind="digest",
        title=f"[{severity}] {len(items)} {noun}{about}",
        severity=severity,
        team=teams[0] if len(teams) == 1 else "",
        # One case's escalations keep its incident key; a mixed digest gets the group's own.
        dedup_key=keys.pop() if len(keys := {m.dedup_key for m in messages}) == 1 else f"clamor-{group.id}",
        mention_id=messages[0].mention_id,
        raised_at=messages[-1].raised_at,
        items=messages,
    )
