"""``clamor serve listener``: config → telemetry → server → NATS → clients → sources → run."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from clamor.v1 import listener_service_pb2_grpc
from services.listener.clients import AddedSourceStore, AlertPublisher, LeaseStore, MentionPublisher, StateStore
from services.listener.config import ListenerConfig, ListenerSettings, WebhookSourceSettings
from services.listener.factory import SourceFactory
from services.listener.lease_keeper import LeaseKeeper, new_holder_id
from services.listener.registry import SourceRegistry
from services.listener.runner import PushedSource
from services.listener.server import SERVICE_NAME, ListenerServicer
from services.listener.watch import Query, Watch
from services.listener.webhook import WebhookReceiver
from services.shared.clock import system_clock
from services.shared.config import load_config
from services.shared.lifecycle import ServiceRuntime, service_main
from services.shared.telemetry import setup_telemetry

if TYPE_CHECKING:
    from pathlib import Path

    import grpc

    from services.listener.sources.base import Post

NAME = "listener"
log = logging.getLogger(__name__)


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
    # The one clock every part reads; tests hand the same parts a clock they turn by hand.
    clock = system_clock
    registries: list[SourceRegistry] = []

    def register(server: grpc.aio.Server) -> None:
        listener_service_pb2_grpc.add_ListenerServiceServicer_to_server(ListenerServicer(registries), server)

    await runtime.start_grpc(register, [SERVICE_NAME])
    js = await runtime.connect()
    replicas = config.nats.stream_replicas
    keeper = LeaseKeeper(
        await LeaseStore.open(js, replicas=replicas), holder=new_holder_id(), ttl_s=settings.lease_ttl_s, clock=clock
    )
    log.info("listener replica %s", keeper.holder)
    factory = SourceFactory(
        publisher=MentionPublisher(js, runtime.tracer, metrics=runtime.counters.metrics),
        states=await StateStore.open(js, replicas=replicas),
        alerts=AlertPublisher(js, runtime.tracer, clock=clock, metrics=runtime.counters.metrics),
        leases=keeper,
        watches=build_watches(settings),
        tracer=runtime.tracer,
        counters=runtime.counters,
        clock=clock,
    )
    registry = SourceRegistry(
        factory,
        await AddedSourceStore.open(js, replicas=replicas),
        runtime.stopping,
        holder_of=keeper.holder_of,
        claim=keeper.claim,
    )
    for source_settings in settings.sources:
        registry.start(source_settings)
    await registry.restore()
    # Take this replica's share before answering ListSources, so a single listener shows its sources held.
    await keeper.tick()
    registries.append(registry)

    async def run_sources() -> None:
        await registry.run()
        # Only once no source polls any more: the other replicas take the leases at once, not a TTL later.
        await keeper.release_all()

    runtime.add_worker("sources", run_sources)
    runtime.add_periodic("leases", keeper.renew_every_s, keeper.tick)

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
        await factory.aclose()


def main(argv: list[str] | None = None) -> int:
    return service_main(NAME, run, argv)


if __name__ == "__main__":
    sys.exit(main())
