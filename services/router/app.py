"""The router wired: config → telemetry → server → NATS → clients → clocks → handler → consumers → run.

Every part is built after the parts it uses, so none is patched in later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from clamor.v1 import case_pb2, router_service_pb2_grpc, triage_pb2
from services.router.clients import (
    CaseIndex,
    CaseStore,
    DeliveryQueue,
    EscalationPublisher,
    MentionCaseIndex,
    TriageFeedback,
)
from services.router.config import OUTBOX, RouterConfig, RouterSettings
from services.router.consumer import RouterHandler, RulesHolder
from services.router.dead_letters import DeadLetters
from services.router.delivery.destinations import build_destination
from services.router.delivery.destinations.base import HttpDestination
from services.router.delivery.local import NatsDestination, OutboxDestination
from services.router.delivery.worker import (
    DeliveryWorker,
    DestinationPolicy,
    Disabled,
    TicketRecord,
    open_disabled,
    open_tickets,
)
from services.router.http import CallbackServer
from services.router.server import SERVICE_NAME, RouterParts, RouterServicer
from services.router.sla_clock import SlaClocks
from services.shared import subjects
from services.shared.case_actions import CaseActions
from services.shared.clock import system_clock
from services.shared.config import load_config
from services.shared.kv_state import KvState
from services.shared.lifecycle import ServiceRuntime
from services.shared.metrics import Metrics
from services.shared.pull_consumer import BatchHandler, concurrently, one_at_a_time
from services.shared.telemetry import setup_telemetry

if TYPE_CHECKING:
    from pathlib import Path

    import grpc
    from google.protobuf.message import Message
    from nats.js import JetStreamContext
    from opentelemetry import trace

    from services.router.delivery.destinations.base import Destination
    from services.shared.clock import Clock
    from services.shared.status import Counters

NAME = "router"
log = logging.getLogger(__name__)


def build_destinations(
    settings: RouterSettings,
    js: JetStreamContext,
    tracer: trace.Tracer,
    *,
    clock: Clock = system_clock,
    metrics: Metrics | None = None,
) -> tuple[dict[str, Destination], dict[str, DestinationPolicy]]:
    """Every destination by name with its budget and retry period; the outbox is always there."""
    destinations: dict[str, Destination] = {OUTBOX: OutboxDestination(settings.outbox.path)}
    policies = {OUTBOX: DestinationPolicy(rate_per_s=1000.0, burst=100, retry_for_s=settings.outbox.retry_for_s)}
    for item in settings.destinations:
        if item.kind == "nats":
            destinations[item.name] = NatsDestination(item.name, js, tracer, metrics=metrics)
        else:
            destination = build_destination(item, clock=clock)
            if metrics is not None and isinstance(destination, HttpDestination):
                destination.measure_with(metrics)
            destinations[item.name] = destination
        policies[item.name] = DestinationPolicy(item.rate_per_s, item.burst, item.retry_for_s)
    return destinations, policies


def delivery_consumer(settings: RouterSettings) -> subjects.ConsumerSpec:
    """The delivery durable with the configured ack wait (a crashed router's work moves on after it)."""
    return replace(subjects.ROUTER_DELIVERY_CONSUMER, ack_wait_s=settings.delivery.ack_wait_s)


@dataclass
class Router:
    """The router's parts, wired as the service runs them (the tests wire the same way)."""

    settings: RouterSettings
    cases: CaseStore
    index: CaseIndex
    mentions: MentionCaseIndex
    tickets: KvState[TicketRecord]
    disabled: KvState[Disabled]
    actions: CaseActions
    dead_letters: DeadLetters
    feedback: TriageFeedback
    handler: RouterHandler
    clocks: SlaClocks
    worker: DeliveryWorker
    destinations: dict[str, Destination]

    def consumers(self) -> list[tuple[subjects.ConsumerSpec, type[Message], BatchHandler[Any], int]]:
        """(durable, payload type, batch handler, batch size) of each consumer the router runs."""
        return [
            # Complaints are placed concurrently: posts of one customer meet at the group key's claim.
            (
                subjects.ROUTER_CONSUMER,
                triage_pb2.TriagedMention,
                concurrently(self.handler.handle),
                self.settings.concurrency,
            ),
            (subjects.ROUTER_ACTIONS_CONSUMER, case_pb2.CaseAction, one_at_a_time(self.handler.on_action), 16),
            (
                delivery_consumer(self.settings),
                case_pb2.CaseDelivery,
                concurrently(self.worker.handle),
                self.settings.delivery.concurrency,
            ),
        ]

    async def tick(self, now: datetime) -> int:
        """One turn of the SLA clocks; returns the steps fired."""
        return await self.clocks.tick(now, self.handler.on_sla_step)

    async def close(self) -> None:
        await self.feedback.close()
        for destination in self.destinations.values():
            await destination.aclose()
        await self.index.close()
        for state in (self.clocks, self.tickets, self.disabled):
            await state.close()


async def assemble(
    js: JetStreamContext,
    settings: RouterSettings,
    *,
    tracer: trace.Tracer,
    counters: Counters,
    replicas: int = 1,
    rules: RulesHolder | None = None,
    clock: Clock = system_clock,
) -> Router:
    """Every part in dependency order: stores and clients, the SLA clocks, then the handlers that use them."""
    cases = await CaseStore.open(js, replicas=replicas)
    index = await CaseIndex.open(js, replicas=replicas, window_s=settings.grouping.window_s)
    mentions = await MentionCaseIndex.open(js, replicas=replicas)
    tickets = await open_tickets(js, replicas=replicas)
    disabled = await open_disabled(js, replicas=replicas)
    feedback = TriageFeedback(settings.triage_address)
    policies = {policy.name: policy for policy in settings.sla_policies}
    clocks = await SlaClocks.open(js, policies, replicas=replicas)
    handler = RouterHandler(
        settings,
        rules=rules or RulesHolder(settings.rules),
        cases=cases,
        index=index,
        queue=DeliveryQueue(js, tracer, metrics=counters.metrics),
        escalations=EscalationPublisher(js, tracer, metrics=counters.metrics),
        clocks=clocks,
        mentions=mentions,
        feedback=feedback,
        counters=counters,
        clock=clock,
    )
    destinations, budgets = build_destinations(settings, js, tracer, clock=clock, metrics=counters.metrics)
    worker = DeliveryWorker(
        destinations,
        budgets,
        cases=cases,
        tickets=tickets,
        disabled=disabled,
        settings=settings.delivery,
        counters=counters,
        tracer=tracer,
        clock=clock,
    )
    return Router(
        settings=settings,
        cases=cases,
        index=index,
        mentions=mentions,
        tickets=tickets,
        disabled=disabled,
        actions=CaseActions(js, tracer, clock=clock, metrics=counters.metrics),
        dead_letters=DeadLetters(js, tracer, disabled, clock=clock, metrics=counters.metrics),
        feedback=feedback,
        handler=handler,
        clocks=clocks,
        worker=worker,
        destinations=destinations,
    )


async def run(config_path: Path | None, *, clock: Clock = system_clock) -> None:
    config = load_config(RouterConfig, config_path)
    settings = config.router
    runtime = ServiceRuntime(NAME, config.nats, settings.grpc, setup_telemetry(NAME, config.telemetry))
    rules = RulesHolder(settings.rules)
    servicer = RouterServicer(settings, rules, config_path, clock=clock)

    def register(server: grpc.aio.Server) -> None:
        router_service_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server)

    await runtime.start_grpc(register, [SERVICE_NAME])
    js = await runtime.connect()
    router = await assemble(
        js,
        settings,
        tracer=runtime.tracer,
        counters=runtime.counters,
        replicas=config.nats.stream_replicas,
        rules=rules,
        clock=clock,
    )
    servicer.attach(RouterParts(cases=router.cases, actions=router.actions, dead_letters=router.dead_letters))
    for spec, payload_type, handle, batch_size in router.consumers():
        await runtime.add_consumer(spec, payload_type, handle, batch_size=batch_size)

    runtime.add_periodic("sla-clock", settings.tick_s, lambda: _tick(router))
    callback = (
        CallbackServer(
            settings.callback,
            cases=router.cases,
            actions=router.actions,
            destinations=[d.name for d in settings.destinations],
            clock=clock,
        )
        if settings.callback.enabled
        else None
    )
    if callback is not None:
        await callback.start()
    try:
        await runtime.run_until_signal()
    finally:
        if callback is not None:
            await callback.stop()
        await router.close()


async def _tick(router: Router) -> None:
    await router.tick(router.handler.now())
