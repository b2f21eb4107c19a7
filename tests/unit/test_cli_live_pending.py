"""What `clamor up` shows as pending: posts a replay source has yet to publish count, and so does
a consumer that cannot be read; neither may pass for an idle mesh."""

from __future__ import annotations

from clamor.v1 import listener_service_pb2
from services.cli import live
from services.cli.probe import ServiceReport
from services.shared import subjects


def listener(*, remaining: int, exhausted: bool, health: str = "SERVING") -> ServiceReport:
    source = listener_service_pb2.SourceStatus(name="sample", kind="replay", remaining=remaining, exhausted=exhausted)
    return ServiceReport(name="listener", address="127.0.0.1:1", health=health, sources=[source])


def drained_consumers() -> dict[str, int]:
    return {spec.durable: 0 for spec in subjects.ALL_CONSUMERS}


def test_unpublished_replay_posts_are_pending_while_nats_is_down() -> None:
    reports = [listener(remaining=240, exhausted=False, health="NOT_SERVING")]
    snapshot = live.Snapshot(reports=reports, lag=live.unpublished(reports), nats_connected=False)
    assert snapshot.pending == "≥240 (NATS unreachable)"
    assert "≥240 (NATS unreachable) pending" in live.plain_line(snapshot)
    assert not snapshot.idle


def test_unpublished_replay_posts_add_to_consumer_lag() -> None:
    reports = [listener(remaining=12, exhausted=False)]
    lag = {**live.unpublished(reports), **drained_consumers(), subjects.TRIAGE_CONSUMER.durable: 5}
    assert live.Snapshot(reports=reports, lag=lag).pending == "17"


def test_a_consumer_that_did_not_answer_keeps_the_mesh_from_looking_idle() -> None:
    reports = [listener(remaining=0, exhausted=True)]
    lag = drained_consumers()
    assert live.Snapshot(reports=reports, lag={**live.unpublished(reports), **lag}).idle
    del lag[subjects.TRIAGE_CONSUMER.durable]
    assert not live.Snapshot(reports=reports, lag={**live.unpublished(reports), **lag}).idle
