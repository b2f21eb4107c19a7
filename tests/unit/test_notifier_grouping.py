"""Notifier groups: what is queued, what is a repeat, when a group is due, and what it sends."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

from services.notifier.config import GroupingSettings, QuietHours
from services.notifier.grouping import (
    Claim,
    Enqueued,
    Group,
    Item,
    claim,
    digest,
    drop,
    due_at,
    enqueue,
    fingerprint,
    group_id,
    mark_failed,
    mark_sent,
    next_batch,
)
from services.notifier.message import Message
from services.notifier.records import GROUP_CODEC

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
# Inside the quiet hours below (22:00–07:00 UTC), and the moment they end.
NIGHT = datetime(2026, 11, 2, 23, 0, tzinfo=UTC)
MORNING = datetime(2026, 11, 3, 7, 0, tzinfo=UTC)
REPEAT_S = 3600.0
CHANNEL = "slack"
KEY = "kind=escalation,team=care,severity=HIGH"
RULES = GroupingSettings(group_wait_s=30, group_interval_s=300, repeat_interval_s=REPEAT_S)
QUIET = QuietHours(start=time(22), end=time(7))


def message(
    message_id: str = "c_1:1",
    *,
    severity: str = "HIGH",
    reason: str = "severity HIGH",
    case_id: str = "c_1",
    team: str = "care",
) -> Message:
    return Message(
        id=message_id,
        kind="escalation",
        title=f"[{severity}] case {case_id} escalated to {team}",
        severity=severity,
        reason=reason,
        case_id=case_id,
        team=team,
        dedup_key=f"clamor-case-{case_id}",
        raised_at=NOW,
    )


def item(msg: Message | None = None, *, added_at: datetime = NOW) -> Item:
    msg = msg if msg is not None else message()
    return Item(id=msg.id, fingerprint=fingerprint(msg), message=msg, added_at=added_at)


def add(group: Group | None, new: Item, *, now: datetime = NOW) -> tuple[Group, Enqueued]:
    return enqueue(group, new, channel=CHANNEL, key=KEY, now=now, repeat_interval_s=REPEAT_S)


def queued(*items: Item, now: datetime = NOW) -> Group:
    group: Group | None = None
    for new in items:
        group, _ = add(group, new, now=now)
    assert group is not None
    return group


def sent(group: Group, *item_ids: str, now: datetime) -> Group:
    return mark_sent(group, set(item_ids), now=now, repeat_interval_s=REPEAT_S)


def several(count: int, *, now: datetime = NOW) -> Group:
    return queued(*(item(message(f"c_{n}:1", case_id=f"c_{n}"), added_at=now) for n in range(count)), now=now)


# --- enqueue ------------------------------------------------------------------------------


def test_enqueue_queues_a_new_item_in_a_new_group() -> None:
    group, outcome = add(None, item())
    assert outcome is Enqueued.QUEUED
    assert [i.id for i in group.pending] == ["c_1:1"]
    assert (group.id, group.channel, group.key) == (group_id(CHANNEL, KEY), CHANNEL, KEY)


def test_enqueue_sets_first_pending_at_for_the_first_item() -> None:
    group, _ = add(None, item())
    assert group.first_pending_at == NOW


def test_enqueue_keeps_first_pending_at_for_later_items() -> None:
    later = NOW + timedelta(seconds=10)
    group, _ = add(queued(item()), item(message("c_2:1", case_id="c_2"), added_at=later), now=later)
    assert group.first_pending_at == NOW


def test_enqueue_leaves_the_given_group_unchanged() -> None:
    group = queued(item())
    add(group, item(message("c_2:1", case_id="c_2")))
    assert [i.id for i in group.pending] == ["c_1:1"]


def test_enqueue_of_a_waiting_item_unchanged_is_a_duplicate_and_returns_the_same_group() -> None:
    group = queued(item())
    again, outcome = add(group, item(added_at=NOW + timedelta(seconds=5)), now=NOW + timedelta(seconds=5))
    assert outcome is Enqueued.DUPLICATE
    assert again is group


def test_enqueue_of_a_changed_waiting_item_updates_it() -> None:
    group = queued(item())
    grown = message(reason="severity HIGH with safety")
    updated, outcome = add(group, item(grown), now=NOW + timedelta(seconds=5))
    assert outcome is Enqueued.UPDATED
    assert [(i.id, i.message) for i in updated.pending] == [("c_1:1", grown)]


def test_enqueue_of_a_changed_waiting_item_keeps_its_added_at() -> None:
    later = NOW + timedelta(seconds=5)
    updated, _ = add(queued(item()), item(message(reason="grew"), added_at=later), now=later)
    assert updated.pending[0].added_at == NOW


def test_enqueue_of_an_item_sent_unchanged_within_repeat_interval_is_a_duplicate() -> None:
    group = sent(queued(item()), "c_1:1", now=NOW)
    later = NOW + timedelta(seconds=REPEAT_S - 1)
    again, outcome = add(group, item(added_at=later), now=later)
    assert outcome is Enqueued.DUPLICATE
    assert again is group


def test_enqueue_of_an_item_sent_unchanged_is_queued_again_after_repeat_interval() -> None:
    group = sent(queued(item()), "c_1:1", now=NOW)
    later = NOW + timedelta(seconds=REPEAT_S)
    again, outcome = add(group, item(added_at=later), now=later)
    assert outcome is Enqueued.QUEUED
    assert [i.id for i in again.pending] == ["c_1:1"]


def test_enqueue_of_a_sent_item_with_changed_content_is_queued_within_repeat_interval() -> None:
    group = sent(queued(item()), "c_1:1", now=NOW)
    later = NOW + timedelta(seconds=60)
    _, outcome = add(group, item(message(reason="severity HIGH with legal_threat"), added_at=later), now=later)
    assert outcome is Enqueued.QUEUED


# --- fingerprint --------------------------------------------------------------------------


def test_fingerprint_ignores_id_and_ack_url() -> None:
    rendered = replace(message(), id="g_1:7", ack_url="https://clamor.example.com/ack/abc")
    assert fingerprint(rendered) == fingerprint(message())


def test_fingerprint_changes_with_content() -> None:
    assert fingerprint(message(reason="other")) != fingerprint(message())


# --- due_at -------------------------------------------------------------------------------


def test_due_at_is_none_when_nothing_waits() -> None:
    assert due_at(Group(id="g_1", channel=CHANNEL, key=KEY), RULES, None, NOW) is None


def test_due_at_of_a_new_group_is_group_wait_after_its_first_item() -> None:
    assert due_at(queued(item()), RULES, None, NOW) == NOW + timedelta(seconds=30)


def test_due_at_after_a_flush_waits_group_interval_from_the_last_message() -> None:
    flushed_at = NOW + timedelta(seconds=30)
    later = NOW + timedelta(seconds=60)
    group = sent(queued(item()), "c_1:1", now=flushed_at)
    group, _ = add(group, item(message("c_2:1", case_id="c_2"), added_at=later), now=later)
    assert due_at(group, RULES, None, later) == flushed_at + timedelta(seconds=300)


def test_due_at_after_a_flush_long_ago_is_group_wait_after_the_new_item() -> None:
    later = NOW + timedelta(hours=1)
    group = sent(queued(item()), "c_1:1", now=NOW)
    group, _ = add(group, item(message("c_2:1", case_id="c_2"), added_at=later), now=later)
    assert due_at(group, RULES, None, later) == later + timedelta(seconds=30)


def test_due_at_waits_for_retry_at_after_a_failure() -> None:
    retry_at = NOW + timedelta(minutes=10)
    group = mark_failed(queued(item()), retry_at=retry_at)
    assert due_at(group, RULES, None, NOW + timedelta(minutes=1)) == retry_at


def test_due_at_is_delayed_by_another_replicas_live_claim() -> None:
    claimed_at = NOW + timedelta(seconds=30)
    group = claim(queued(item()), owner="replica-b", now=claimed_at, lease_s=60)
    assert group is not None
    assert due_at(group, RULES, None, claimed_at + timedelta(seconds=10)) == claimed_at + timedelta(seconds=60)


def test_due_at_for_the_claims_owner_ignores_its_own_live_claim() -> None:
    # A send cut short by a NATS hiccup leaves the claim behind; its owner tries again without waiting it out.
    claimed_at = NOW + timedelta(seconds=30)
    group = claim(queued(item()), owner="replica-a", now=claimed_at, lease_s=60)
    assert group is not None
    later = claimed_at + timedelta(seconds=10)
    assert due_at(group, RULES, None, later, owner="replica-a") == NOW + timedelta(seconds=30)
    assert due_at(group, RULES, None, later, owner="replica-b") == claimed_at + timedelta(seconds=60)


def test_due_at_ignores_a_lapsed_claim() -> None:
    group = claim(queued(item()), owner="replica-b", now=NOW, lease_s=60)
    assert group is not None
    assert due_at(group, RULES, None, NOW + timedelta(minutes=5)) == NOW + timedelta(seconds=30)


def test_due_at_of_a_non_critical_group_in_quiet_hours_is_the_end_of_the_window() -> None:
    assert due_at(queued(item(added_at=NIGHT), now=NIGHT), RULES, QUIET, NIGHT) == MORNING


def test_due_at_of_a_group_whose_wait_ends_in_quiet_hours_is_the_end_of_the_window() -> None:
    before = datetime(2026, 11, 2, 21, 59, 50, tzinfo=UTC)
    assert due_at(queued(item(added_at=before), now=before), RULES, QUIET, before) == MORNING


def test_due_at_of_a_group_with_a_critical_item_ignores_quiet_hours() -> None:
    group = queued(item(added_at=NIGHT), item(message("c_2:1", severity="CRITICAL", case_id="c_2")), now=NIGHT)
    assert due_at(group, RULES, QUIET, NIGHT) == NIGHT + timedelta(seconds=30)


def test_due_at_outside_quiet_hours_is_unaffected_by_them() -> None:
    assert due_at(queued(item()), RULES, QUIET, NOW) == NOW + timedelta(seconds=30)


# --- next_batch ---------------------------------------------------------------------------


def test_next_batch_in_quiet_hours_holds_back_all_but_critical_items() -> None:
    critical = item(message("c_2:1", severity="CRITICAL", case_id="c_2"), added_at=NIGHT)
    group = queued(item(added_at=NIGHT), critical, now=NIGHT)
    assert next_batch(group, QUIET, NIGHT, max_items=25) == [critical]


def test_next_batch_outside_quiet_hours_takes_every_item() -> None:
    group = queued(item(), item(message("c_2:1", severity="CRITICAL", case_id="c_2")))
    assert [i.id for i in next_batch(group, QUIET, NOW, max_items=25)] == ["c_1:1", "c_2:1"]


def test_next_batch_caps_at_max_items_oldest_first() -> None:
    assert [i.id for i in next_batch(several(5), None, NOW, max_items=2)] == ["c_0:1", "c_1:1"]


# --- claim --------------------------------------------------------------------------------


def test_claim_sets_the_owner_and_lease() -> None:
    group = claim(queued(item()), owner="replica-a", now=NOW, lease_s=60)
    assert group is not None
    assert group.claim == Claim(owner="replica-a", until=NOW + timedelta(seconds=60))


def test_claim_is_refused_while_another_owners_claim_is_live() -> None:
    group = claim(queued(item()), owner="replica-a", now=NOW, lease_s=60)
    assert claim(group, owner="replica-b", now=NOW + timedelta(seconds=59), lease_s=60) is None


def test_claim_is_allowed_after_another_owners_claim_lapsed() -> None:
    later = NOW + timedelta(seconds=60)
    group = claim(
        claim(queued(item()), owner="replica-a", now=NOW, lease_s=60), owner="replica-b", now=later, lease_s=60
    )
    assert group is not None
    assert group.claim == Claim(owner="replica-b", until=later + timedelta(seconds=60))


def test_claim_may_be_renewed_by_its_owner() -> None:
    later = NOW + timedelta(seconds=30)
    group = claim(
        claim(queued(item()), owner="replica-a", now=NOW, lease_s=60), owner="replica-a", now=later, lease_s=60
    )
    assert group is not None
    assert group.claim == Claim(owner="replica-a", until=later + timedelta(seconds=60))


def test_claim_of_a_missing_group_is_none() -> None:
    assert claim(None, owner="replica-a", now=NOW, lease_s=60) is None


# --- mark_sent, mark_failed, drop ---------------------------------------------------------


def test_mark_sent_removes_the_sent_items() -> None:
    group = sent(several(3), "c_0:1", "c_2:1", now=NOW)
    assert [i.id for i in group.pending] == ["c_1:1"]


def test_mark_sent_advances_the_sequence() -> None:
    group = several(2)
    first = sent(group, "c_0:1", now=NOW)
    assert (first.sequence, first.next_notification_id) == (1, f"{group.id}:2")


def test_mark_sent_records_the_flush_time() -> None:
    assert sent(several(1), "c_0:1", now=NOW).last_flush_at == NOW


def test_mark_sent_remembers_the_sent_fingerprints() -> None:
    group = sent(queued(item()), "c_1:1", now=NOW)
    assert group.sent == {"c_1:1": (fingerprint(message()), NOW)}


def test_mark_sent_prunes_marks_older_than_repeat_interval() -> None:
    group = sent(queued(item()), "c_1:1", now=NOW)
    later = NOW + timedelta(seconds=REPEAT_S + 1)
    group, _ = add(group, item(message("c_2:1", case_id="c_2"), added_at=later), now=later)
    assert set(sent(group, "c_2:1", now=later).sent) == {"c_2:1"}


def test_mark_sent_keeps_marks_within_repeat_interval() -> None:
    group = sent(queued(item()), "c_1:1", now=NOW)
    later = NOW + timedelta(seconds=REPEAT_S - 1)
    group, _ = add(group, item(message("c_2:1", case_id="c_2"), added_at=later), now=later)
    assert set(sent(group, "c_2:1", now=later).sent) == {"c_1:1", "c_2:1"}


def test_mark_sent_clears_claim_retry_and_failures() -> None:
    failed = mark_failed(queued(item()), retry_at=NOW + timedelta(seconds=10))
    claimed = claim(failed, owner="replica-a", now=NOW + timedelta(seconds=10), lease_s=60)
    assert claimed is not None
    group = sent(claimed, "c_1:1", now=NOW + timedelta(seconds=11))
    assert (group.claim, group.retry_at, group.failures) == (None, None, 0)


def test_mark_sent_moves_first_pending_at_to_the_oldest_item_left() -> None:
    later = NOW + timedelta(seconds=20)
    group = queued(item(), item(message("c_2:1", case_id="c_2"), added_at=later))
    assert sent(group, "c_1:1", now=later).first_pending_at == later


def test_mark_sent_of_the_last_item_clears_first_pending_at() -> None:
    assert sent(queued(item()), "c_1:1", now=NOW).first_pending_at is None


def test_mark_failed_counts_the_failure_and_sets_retry_at() -> None:
    retry_at = NOW + timedelta(seconds=30)
    group = mark_failed(mark_failed(queued(item()), retry_at=NOW), retry_at=retry_at)
    assert (group.failures, group.retry_at) == (2, retry_at)


def test_mark_failed_releases_the_claim_and_keeps_the_items() -> None:
    claimed = claim(queued(item()), owner="replica-a", now=NOW, lease_s=60)
    assert claimed is not None
    group = mark_failed(claimed, retry_at=NOW + timedelta(seconds=30))
    assert group.claim is None
    assert [i.id for i in group.pending] == ["c_1:1"]


def test_drop_removes_the_items_without_sending_them() -> None:
    group = drop(several(2), {"c_0:1"})
    assert [i.id for i in group.pending] == ["c_1:1"]
    assert (group.sequence, group.sent) == (0, {})


def test_drop_releases_the_claim() -> None:
    claimed = claim(several(2), owner="replica-a", now=NOW, lease_s=60)
    assert claimed is not None
    assert drop(claimed, set()).claim is None


def test_drop_of_the_last_item_clears_first_pending_at() -> None:
    assert drop(queued(item()), {"c_1:1"}).first_pending_at is None


# --- digest -------------------------------------------------------------------------------


def test_digest_of_one_item_is_that_message_with_the_groups_notification_id() -> None:
    group = queued(item())
    assert digest(group, group.pending) == replace(message(), id=f"{group.id}:1")


def test_digest_of_several_items_is_a_digest_carrying_them_in_order() -> None:
    group = several(3)
    result = digest(group, group.pending)
    assert (result.kind, result.id) == ("digest", f"{group.id}:1")
    assert result.items == tuple(i.message for i in group.pending)


def test_digest_title_counts_the_items_and_names_the_highest_severity() -> None:
    group = queued(
        item(message("c_1:1", severity="LOW", case_id="c_1")),
        item(message("c_2:1", severity="CRITICAL", case_id="c_2")),
        item(message("c_3:1", severity="HIGH", case_id="c_3")),
    )
    result = digest(group, group.pending)
    assert result.severity == "CRITICAL"
    assert result.title == "[CRITICAL] 3 escalations for care"


def test_digest_of_one_cases_items_keeps_the_cases_dedup_key() -> None:
    group = queued(item(message("c_1:1")), item(message("c_1:2")))
    assert digest(group, group.pending).dedup_key == "clamor-case-c_1"


def test_digest_of_several_cases_uses_the_groups_dedup_key() -> None:
    group = several(2)
    assert digest(group, group.pending).dedup_key == f"clamor-{group.id}"


# --- stored in KV ---------------------------------------------------------------------------------


def round_trip(group: Group) -> Group:
    return GROUP_CODEC.decode(GROUP_CODEC.encode(group))


def test_a_fresh_group_survives_a_round_trip_through_kv() -> None:
    group = Group(id="g_1", channel=CHANNEL, key=KEY)
    assert round_trip(group) == group


def test_a_busy_group_survives_a_round_trip_through_kv() -> None:
    critical = replace(
        message("c_2:1", severity="CRITICAL", case_id="c_2"),
        risk_flags=("safety",),
        sla_due=NOW + timedelta(hours=1),
        ack_url="https://clamor.example.com/ack/x",
    )
    group = queued(item(), item(critical, added_at=NOW + timedelta(seconds=3)))
    group.pending[1] = replace(group.pending[1], cancel_on_ack=True)
    group = sent(group, "c_1:1", now=NOW + timedelta(seconds=30))
    group, _ = add(group, item(message("c_3:1", case_id="c_3")), now=NOW + timedelta(seconds=40))
    group = mark_failed(group, retry_at=NOW + timedelta(minutes=1))
    claimed = claim(group, owner="replica-a", now=NOW + timedelta(minutes=1), lease_s=60)
    assert claimed is not None
    claimed.held_logged = True
    assert round_trip(claimed) == claimed
