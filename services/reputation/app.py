"""The reputation service wired: config → telemetry → server → NATS → state → consumer → watch → run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clamor.v1 import alert_pb2, reputation_service_pb2_grpc
from services.reputation.clients import MentionCases
from services.reputation.config import ReputationConfig, ReputationSettings
from services.reputation.consumer import counting_consumer
from services.reputation.counters import CounterStore, TrendsCounter
from services.reputation.server import SERVICE_NAME, ReputationParts, ReputationServicer
from services.reputation.watch import ReputationWatch, open_states
from services.shared.clock import system_clock
from services.shared.config import load_config
from services.shared.lifecycle import ServiceRuntime
from services.shared.telemetry import setup_telemetry

if TYPE_CHECKING:
    from pathlib import Path

    import grpc
    from google.protobuf.message import Message
    from nats.js import JetStreamContext
    from opentelemetry import trace

    from services.reputation.spikes import SpikeState
    from services.shared import subjects
    from services.shared.clock import Clock
    from services.shared.kv_state import KvState
    from services.shared.pull_consumer import BatchHandler
    from services.shared.status import Counters

NAME = "reputation"


@dataclass
class Reputation:
    """The reputation service's parts, wired as the service runs them (the tests wire the same way)."""

    settings: ReputationSettings
    trends: TrendsCounter
    watch: ReputationWatch
    spike_states: KvState[SpikeState]
    alert_states: KvState[alert_pb2.Alert]

    def consumers(self) -> list[tuple[subjects.ConsumerSpec, type[Message], BatchHandler[Any], int]]:
        """(durable, payload type, batch handler, batch size) of each consumer the service runs."""
        return [counting_consumer(self.trends)]

    async def tick(self, clock: Clock) -> None:
        """One turn of the spike detector over every watch, at the clock's time."""
        await self.watch.tick(clock())

    async def close(self) -> None:
        for state in (self.spike_states, self.alert_states):
            await state.close()


async def assemble(
    js: JetStreamContext,
    settings: ReputationSettings,
    *,
    tracer: trace.Tracer,
    counters: Counters | None = None,
    replicas: int = 1,
    history_days: float = 90.0,
    clock: Clock = system_clock,
) -> Reputation:
    """Every part in dependency order: stores first, then what reads and writes them.

    ``counters`` carry the process's metrics (none recorded without them).
    """
    store = await CounterStore.open(js, replicas=replicas, history_days=history_days)
    spike_states, alert_states = await open_states(js, replicas=replicas)
    cases = await MentionCases.open(js, replicas=replicas)
    watch = ReputationWatch(
        settings,
        js=js,
        tracer=tracer,
        counters=store,
        spikes=spike_states,
        alerts=alert_states,
        cases=cases,
        metrics=counters.metrics if counters is not None else None,
    )
    trends = TrendsCounter(js, store, keywords=settings.keywords.keywords, clock=clock)
    return Reputation(
        settings=settings, trends=trends, watch=watch, spike_states=spike_states, alert_states=alert_states
    )


async def run(config_path: Path | None, *, clock: Clock = system_clock) -> None:
    config = load_config(ReputationConfig, config_path)
    settings = config.reputation
    runtime = ServiceRuntime(NAME, config.nats, settings.grpc, setup_telemetry(NAME, config.telemetry))
    servicer = ReputationServicer(settings, clock=clock)

    def register(server: grpc.aio.Server) -> None:
        reputation_service_pb2_grpc.add_ReputationServiceServicer_to_server(servicer, server)

    await runtime.start_grpc(register, [SERVICE_NAME])
    js = await runtime.connect()
    reputation = await assemble(
        js,
        settings,
        tracer=runtime.tracer,
        counters=runtime.counters,
        replicas=config.nats.stream_replicas,
        history_days=config.nats.history_days,
        clock=clock,
    )
    servicer.attach(ReputationParts(trends=reputation.trends, reputation=reputation.watch))
    for spec, payload_type, handle, batch_size in reputation.consumers():
        await runtime.add_consumer(spec, payload_type, handle, batch_size=batch_size)
    if settings.enabled:
        runtime.add_periodic("reputation", settings.tick_s, lambda: reputation.tick(clock))
    try:
        await runtime.run_until_signal()
    finally:
        await reputation.close()
