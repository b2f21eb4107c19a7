"""``clamor serve listener``: config → telemetry → server → NATS → clients → sources → run."""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING

from clamor.v1 import listener_service_pb2_grpc
from services.listener.clients import CursorStore, MentionPublisher
from services.listener.config import ListenerConfig
from services.listener.poller import ReplaySource
from services.listener.server import SERVICE_NAME, ListenerServicer
from services.shared.config import load_config
from services.shared.lifecycle import ServiceRuntime, service_main
from services.shared.telemetry import setup_telemetry

if TYPE_CHECKING:
    from pathlib import Path

    import grpc

    from services.listener.domain import SourceState

NAME = "listener"


async def run(config_path: Path | None) -> None:
    config = load_config(ListenerConfig, config_path)
    settings = config.listener
    runtime = ServiceRuntime(NAME, config.nats, settings.grpc, setup_telemetry(NAME, config.telemetry))
    # Filled once NATS is up; the servicer reads it live.
    states: list[SourceState] = []

    def register(server: grpc.aio.Server) -> None:
        listener_service_pb2_grpc.add_ListenerServiceServicer_to_server(ListenerServicer(states), server)

    await runtime.start_grpc(register, [SERVICE_NAME])
    js = await runtime.connect()
    publisher = MentionPublisher(js, runtime.tracer)
    cursors = await CursorStore.open(js, replicas=config.nats.stream_replicas)
    for source_settings in settings.sources:
        source = ReplaySource(
            source_settings, publisher=publisher, cursors=cursors, tracer=runtime.tracer, counters=runtime.counters
        )
        states.append(source.state)
        runtime.add_worker(f"source {source_settings.name}", functools.partial(source.run, runtime.stopping))
    await runtime.run_until_signal()


def main(argv: list[str] | None = None) -> int:
    return service_main(NAME, run, argv)


if __name__ == "__main__":
    sys.exit(main())
