"""``clamor serve notifier``: config → telemetry → channels → server → NATS → state → consumers → run."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from clamor.v1 import alert_pb2, case_pb2, notifier_service_pb2_grpc
from services.notifier import grouping, records
from services.notifier.ack_links import AckLinks
from services.notifier.clients import DeliveryStore, NotificationLog, build_channel
from services.notifier.config import NotifierConfig
from services.notifier.consumer import NotifyHandler
from services.notifier.dispatcher import Dispatcher
from services.notifier.http import AckServer
from services.notifier.server import SERVICE_NAME, NotifierServicer
from services.shared import subjects
from services.shared.case_actions import CaseActions
from services.shared.clock import system_clock
from services.shared.config import load_config
from services.shared.known_cases import KnownCases
from services.shared.kv_state import KvState
from services.shared.lifecycle import ServiceRuntime, service_main
from services.shared.pull_consumer import one_at_a_time
from services.shared.status import QUEUED_GAUGE
from services.shared.telemetry import setup_telemetry

if TYPE_CHECKING:
    from pathlib import Path

    import grpc

NAME = "notifier"
# Groups and pages are rewritten while they have work (every send, retry and step), so a record
# untouched this long is finished: longer than the longest repeat_interval and step timeout (7 days).
STATE_TTL_S = 8 * 24 * 3600.0


async def run(config_path: Path | None) -> None:
    config = load_config(NotifierConfig, config_path)
    settings = config.notifier
    runtime = ServiceRuntime(NAME, config.nats, settings.grpc, setup_telemetry(NAME, config.telemetry))
    # The one clock every part reads; tests hand the same parts a clock they turn by hand.
    clock = system_clock
    channels = [
        build_channel(channel, quote_chars=settings.quote_chars, clock=clock, metrics=runtime.counters.metrics)
        for channel in settings.channels
    ]
    by_name = {channel.name: channel for channel in channels}
    servicer = NotifierServicer()

    def register(server: grpc.aio.Server) -> None:
        notifier_service_pb2_grpc.add_NotifierServiceServicer_to_server(servicer, server)

    await runtime.start_grpc(register, [SERVICE_NAME])
    js = await runtime.connect()
    replicas = config.nats.stream_replicas
    log = NotificationLog(js, runtime.tracer, metrics=runtime.counters.metrics)
    actions = CaseActions(js, runtime.tracer, clock=clock, metrics=runtime.counters.metrics)
    servicer.attach(log, actions, by_name, KnownCases(js))
    group_state = await KvState.open(
        js, subjects.NOTIFIER_GROUPS_BUCKET, codec=records.GROUP_CODEC, replicas=replicas, ttl_s=STATE_TTL_S
    )
    # What waits in groups is invisible to consumer lag; GetStatus reports it, read from the mirror.
    runtime.reporter.add_gauge(QUEUED_GAUGE, lambda: grouping.queued(group_state.records()))
    page_state = await KvState.open(
        js, subjects.NOTIFIER_PAGES_BUCKET, codec=records.PAGE_CODEC, replicas=replicas, ttl_s=STATE_TTL_S
    )
    dispatcher = Dispatcher(
        settings,
        channels,
        groups=group_state,
        pages=page_state,
        deliveries=await DeliveryStore.open(js, replicas=replicas, ttl_s=STATE_TTL_S, clock=clock),
        log=log,
        tracer=runtime.tracer,
        counters=runtime.counters,
        clock=clock,
    )
    # The same queue as a metric: the collector reads on its own thread, so the dispatcher's count from
    # its last tick rather than the mirror.
    runtime.counters.metrics.observe("clamor.notifier.queue.depth", dispatcher.queue_depth)
    links = None
    ack_server = None
    if settings.ack.enabled:
        links = AckLinks(secret=settings.ack.secret, public_url=settings.ack.public_url, ttl_s=settings.ack.link_ttl_s)
        ack_server = AckServer(settings.ack, links=links, sink=actions.publish, clock=clock)
        await ack_server.start()
    handler = NotifyHandler(
        settings, channels, dispatcher=dispatcher, pages=page_state, links=links, counters=runtime.counters, clock=clock
    )
    await runtime.add_consumer(
        subjects.NOTIFIER_ESCALATIONS_CONSUMER, case_pb2.Escalation, one_at_a_time(handler.on_escalation)
    )
    await runtime.add_consumer(subjects.NOTIFIER_ALERTS_CONSUMER, alert_pb2.Alert, one_at_a_time(handler.on_alert))
    await runtime.add_consumer(
        subjects.NOTIFIER_ACTIONS_CONSUMER, case_pb2.CaseAction, one_at_a_time(handler.on_action)
    )
    runtime.add_periodic("dispatcher", settings.tick_s, dispatcher.tick)
    runtime.add_worker("dispatcher senders", lambda: dispatcher.finish(runtime.stopping))
    try:
        await runtime.run_until_signal()
    finally:
        if ack_server is not None:
            await ack_server.stop()
        await group_state.close()
        await page_state.close()
        for channel in channels:
            await channel.aclose()


def main(argv: list[str] | None = None) -> int:
    return service_main(NAME, run, argv)


if __name__ == "__main__":
    sys.exit(main())
