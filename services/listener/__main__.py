"""``clamor serve listener``: config → telemetry → server → NATS → clients → sources → run."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from clamor.v1 import listener_service_pb2_grpc
from services.listener.clients import AddedSourceStore, AlertPublisher, MentionPublisher, StateStore
from services.listener.config import (
    HttpSourceSettings,
    ListenerConfig,
    ListenerSettings,
    ReplaySourceSettings,
    WebhookSourceSettings,
)
from services.listener.poller import ReplaySource
from services.listener.registry import Runner, SourceRegistry
from services.listener.runner import PushedSource, SourceRunner
from services.listener.server import SERVICE_NAME, ListenerServicer
from services.listener.sources import build_source
from services.listener.watch import Query, Watch
from services.listener.webhook import WebhookReceiver
from services.shared.clock import system_clock
from services.shared.config import load_config
from services.shared.lifecycle import ServiceRuntime, service_main
from services.shared.outbound import FetchLimits, OutboundClient, OutboundPolicy
from services.shared.telemetry import setup_telemetry

if TYPE_CHECKING:
    from pathlib import Path

    import grpc

    from services.listener.sources.base import Post

NAME = "listener"


def build_watches(settings: ListenerSettings) -> dict[str, Watch]:
    return {
        w.name: Watch(
            name=w.name,
            terms=tuple(w.terms),
            query=Query.parse(w.query) if w.query else None,
            languages=tuple(w.languages),
            own_handles=frozenset(w.own_handles),
        )
        for w in settings.watches
    }


async def run(config_path: Path | None) -> None:
    config = load_config(ListenerConfig, config_path)
    settings = config.listener
    runtime = ServiceRuntime(NAME, config.nats, settings.grpc, setup_telemetry(NAME, config.telemetry))
    watches = build_watches(settings)
    # The one clock every part reads; tests hand the same parts a clock they turn by hand.
    clock = system_clock
    registries: list[SourceRegistry] = []

    def register(server: grpc.aio.Server) -> None:
        listener_service_pb2_grpc.add_ListenerServiceServicer_to_server(ListenerServicer(registries), server)

    await runtime.start_grpc(register, [SERVICE_NAME])
    js = await runtime.connect()
    replicas = config.nats.stream_replicas
    publisher = MentionPublisher(js, runtime.tracer)
    states = await StateStore.open(js, replicas=replicas)
    alerts = AlertPublisher(js, runtime.tracer, clock=clock)
    clients: list[OutboundClient] = []

    def build(source: Any, dynamic: bool) -> Runner:
        watch = watches.get(source.watch) if source.watch else None
        if isinstance(source, ReplaySourceSettings):
            return ReplaySource(
                source,
                publisher=publisher,
                states=states,
                tracer=runtime.tracer,
                counters=runtime.counters,
                watches=watches,
                clock=clock,
            )
        if isinstance(source, WebhookSourceSettings):
            return PushedSource(
                source, publisher=publisher, watch=watch, tracer=runtime.tracer, counters=runtime.counters, clock=clock
            )
        assert isinstance(source, HttpSourceSettings)
        http = OutboundClient(
            OutboundPolicy(tuple(source.allow_hosts)),
            limits=FetchLimits(max_bytes=source.max_body_bytes, timeout_s=source.timeout_s),
            clock=clock,
        )
        clients.append(http)
        return SourceRunner(
            source,
            build_source(source),
            http=http,
            states=states,
            publisher=publisher,
            alerts=alerts,
            watch=watch,
            tracer=runtime.tracer,
            counters=runtime.counters,
            dynamic=dynamic,
            clock=clock,
        )

    registry = SourceRegistry(build, await AddedSourceStore.open(js, replicas=replicas), runtime.stopping)
    registries.append(registry)
    for source_settings in settings.sources:
        registry.start(source_settings)
    await registry.restore()
    runtime.add_worker("sources", registry.run)

    webhook_sources = [s for s in settings.sources if isinstance(s, WebhookSourceSettings)]
    receiver: WebhookReceiver | None = None
    if webhook_sources:

        async def on_posts(source: WebhookSourceSettings, posts: list[Post]) -> None:
            runner = registry.get(source.name)
            assert isinstance(runner, PushedSource)
            await runner.accept(posts)

        receiver = WebhookReceiver(webhook_sources, on_posts, clock=clock)
        await receiver.start(settings.webhook_server.host, settings.webhook_server.port)
    try:
        await runtime.run_until_signal()
    finally:
        if receiver is not None:
            await receiver.stop()
        for client in clients:
            await client.aclose()


def main(argv: list[str] | None = None) -> int:
    return service_main(NAME, run, argv)


if __name__ == "__main__":
    sys.exit(main())
