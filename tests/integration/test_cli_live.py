"""What `clamor up` counts as pending: the notifier reports its queue over GetStatus, read by the CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from services.cli import live
from services.cli.probe import probe
from services.notifier import grouping
from services.notifier.config import NotifierSettings
from services.shared.config import GrpcSettings, NatsSettings, TelemetrySettings
from services.shared.lifecycle import ServiceRuntime
from services.shared.nats_server import LocalNatsServer
from services.shared.status import QUEUED_GAUGE
from services.shared.telemetry import setup_telemetry
from tests.integration.notifier_harness import escalation, publish_escalation, running_notifier
from tests.support.clock import ManualClock
from tests.support.eventually import eventually


@pytest.fixture
async def js(nc: NatsClient) -> JetStreamContext:
    return nc.jetstream()


@pytest.fixture
async def runtime(nats_server: LocalNatsServer) -> AsyncIterator[ServiceRuntime]:
    """A process named like the notifier, serving StatusService on a free port."""
    telemetry = setup_telemetry("notifier", TelemetrySettings(log_format="text"), install_global=False)
    service = ServiceRuntime(
        "notifier", NatsSettings(url=nats_server.url), GrpcSettings(port=0, shutdown_grace_s=1), telemetry
    )
    yield service
    await service.shutdown()


def waiting_settings(folder: Path) -> NotifierSettings:
    """One file channel that holds escalations for a minute before sending them together."""
    return NotifierSettings.model_validate(
        {
            "channels": [{"kind": "file", "name": "care", "path": folder / "care.jsonl"}],
            "grouping": {"group_wait_s": 60, "group_interval_s": 60},
        }
    )


async def test_notifications_waiting_in_groups_count_as_pending_work_until_they_are_sent(
    js: JetStreamContext, nc: NatsClient, runtime: ServiceRuntime, tmp_path: Path
) -> None:
    clock = ManualClock()
    async with running_notifier(js, waiting_settings(tmp_path), clock=clock) as notifier:
        runtime.reporter.add_gauge(QUEUED_GAUGE, lambda: grouping.queued(notifier.groups.records()))
        port = await runtime.start_grpc(lambda server: None, [])
        await runtime.connect()
        await runtime.started()
        settings = GrpcSettings(port=port)

        for case_id in ("q1", "q2"):
            await publish_escalation(js, escalation(case_id))
        await notifier.tick()

        async def pending() -> dict[str, int]:
            return live.queued([await probe("notifier", settings)])

        async def two_waiting() -> bool:
            return await pending() == {live.NOTIFIER_QUEUE: 2}

        # Nothing waits in a consumer; the two escalations wait in the group, and the mesh is not idle.
        await eventually(two_waiting, what="two notifications queued")
        assert sum((await live.pending_work([await probe("notifier", settings)], nc)).values()) == 2

        clock.advance(61)
        await notifier.tick()

        async def none_waiting() -> bool:
            return await pending() == {live.NOTIFIER_QUEUE: 0}

        await eventually(none_waiting, what="the queue sent")


async def test_an_unreachable_notifier_adds_no_queue_entry() -> None:
    report = await probe("notifier", GrpcSettings(port=1), timeout_s=0.5)
    assert not report.serving
    assert live.queued([report]) == {}
