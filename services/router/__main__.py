"""``clamor serve router``: config → telemetry → server → NATS → clients → consumer → run."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from clamor.v1 import case_pb2, router_service_pb2_grpc, triage_pb2
from services.router.clients import CaseStore, EscalationPublisher, Outbox
from services.router.config import RouterConfig
from services.router.consumer import RouterHandler
from services.router.server import SERVICE_NAME, RouterServicer
from services.shared import subjects
from services.shared.config import load_config
from services.shared.lifecycle import ServiceRuntime, service_main
from services.shared.pull_consumer import one_at_a_time
from services.shared.telemetry import setup_telemetry

if TYPE_CHECKING:
    from pathlib import Path

    import grpc

NAME = "router"


async def run(config_path: Path | None) -> None:
    config = load_config(RouterConfig, config_path)
    settings = config.router
    runtime = ServiceRuntime(NAME, config.nats, settings.grpc, setup_telemetry(NAME, config.telemetry))
    stores: list[CaseStore] = []

    def register(server: grpc.aio.Server) -> None:
        router_service_pb2_grpc.add_RouterServiceServicer_to_server(RouterServicer(stores), server)

    await runtime.start_grpc(register, [SERVICE_NAME])
    js = await runtime.connect()
    cases = await CaseStore.open(js, replicas=config.nats.stream_replicas)
    stores.append(cases)
    handler = RouterHandler(
        settings,
        cases=cases,
        outbox=Outbox(settings.outbox.path),
        escalations=EscalationPublisher(js, runtime.tracer),
        tracer=runtime.tracer,
        counters=runtime.counters,
    )
    await runtime.add_consumer(subjects.ROUTER_CONSUMER, triage_pb2.TriagedMention, one_at_a_time(handler.handle))
    await runtime.add_consumer(subjects.ROUTER_ACTIONS_CONSUMER, case_pb2.CaseAction, one_at_a_time(handler.on_action))
    await runtime.run_until_signal()


def main(argv: list[str] | None = None) -> int:
    return service_main(NAME, run, argv)


if __name__ == "__main__":
    sys.exit(main())
