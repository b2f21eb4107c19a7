"""``clamor serve notifier``: config → telemetry → channels → server → NATS → consumers → run."""

from __future__ import annotations

import sys
from collections import deque
from typing import TYPE_CHECKING

from clamor.v1 import alert_pb2, case_pb2, notification_pb2, notifier_service_pb2_grpc
from services.notifier.clients import DeliveryStore, build_channel
from services.notifier.config import NotifierConfig
from services.notifier.consumer import NotifyHandler
from services.notifier.server import SERVICE_NAME, NotifierServicer
from services.shared import subjects
from services.shared.config import load_config
from services.shared.lifecycle import ServiceRuntime, service_main
from services.shared.pull_consumer import one_at_a_time
from services.shared.telemetry import setup_telemetry

if TYPE_CHECKING:
    from pathlib import Path

    import grpc

NAME = "notifier"


async def run(config_path: Path | None) -> None:
    config = load_config(NotifierConfig, config_path)
    settings = config.notifier
    runtime = ServiceRuntime(NAME, config.nats, settings.grpc, setup_telemetry(NAME, config.telemetry))
    channels = [build_channel(channel, quote_chars=settings.quote_chars) for channel in settings.channels]
    log: deque[notification_pb2.Notification] = deque(maxlen=settings.log_size)

    def register(server: grpc.aio.Server) -> None:
        notifier_service_pb2_grpc.add_NotifierServiceServicer_to_server(NotifierServicer(log), server)

    await runtime.start_grpc(register, [SERVICE_NAME])
    js = await runtime.connect()
    deliveries = await DeliveryStore.open(js, replicas=config.nats.stream_replicas)
    handler = NotifyHandler(
        channels, deliveries=deliveries, quote_chars=settings.quote_chars, log=log, tracer=runtime.tracer,
        counters=runtime.counters,
    )  # fmt: skip
    await runtime.add_consumer(
        subjects.NOTIFIER_ESCALATIONS_CONSUMER, case_pb2.Escalation, one_at_a_time(handler.on_escalation)
    )
    await runtime.add_consumer(subjects.NOTIFIER_ALERTS_CONSUMER, alert_pb2.Alert, one_at_a_time(handler.on_alert))
    try:
        await runtime.run_until_signal()
    finally:
        for channel in channels:
            await channel.aclose()


def main(argv: list[str] | None = None) -> int:
    return service_main(NAME, run, argv)


if __name__ == "__main__":
    sys.exit(main())
