"""The reputation service's parts wired by ``services.reputation.app.assemble``, beside a real router.

Real nats-server. Triaged posts go in through JetStream; the router places them into cases (and
writes the mention → case index), the reputation service counts them through its own durable
consumer, and the test turns a manual clock and calls :meth:`RunningReputation.count_and_watch`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.reputation.app import Reputation, assemble
from services.reputation.config import ReputationConfig, ReputationSettings
from services.shared.jetstream import ensure_streams
from services.shared.pull_consumer import ConsumerSet
from services.shared.status import Counters
from tests.integration.router_harness import RunningRouter, router_settings, running_router
from tests.support.clock import tracer

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from nats.js import JetStreamContext

    from clamor.v1 import alert_pb2
    from services.shared.clock import Clock


def reputation_settings(data: dict[str, Any]) -> ReputationSettings:
    """ReputationSettings from a ``reputation:`` mapping, as in a config file."""
    return ReputationConfig.model_validate({"reputation": data}).reputation


@dataclass
class RunningReputation:
    router: RunningRouter
    reputation: Reputation
    consumers: ConsumerSet
    clock: Clock

    async def settle(self) -> None:
        """Wait until the router and the reputation service have acknowledged everything published so far."""
        await self.router.settle()
        await self.consumers.settle()

    async def count_and_watch(self) -> list[alert_pb2.Alert]:
        """Everything on TRIAGED placed and counted, then one turn of the watch; returns the alerts it published."""
        await self.settle()
        return await self.reputation.watch.tick(self.clock())


@asynccontextmanager
async def running_reputation(
    js: JetStreamContext,
    settings: ReputationSettings,
    tmp_path: Path,
    *,
    clock: Clock,
    counters: Counters | None = None,
) -> AsyncIterator[RunningReputation]:
    """The reputation service beside a router; ``counters`` (tests/support/metrics.py) to read its metrics back."""
    await ensure_streams(js)
    async with running_router(
        js, router_settings({"outbox": {"path": "outbox.jsonl"}}, tmp_path), clock=clock
    ) as router:
        reputation = await assemble(js, settings, tracer=tracer(), counters=counters, clock=clock)
        consumers = await ConsumerSet.start(js, reputation.consumers(), tracer=tracer(), counters=Counters())
        try:
            yield RunningReputation(router, reputation, consumers, clock)
        finally:
            await consumers.stop()
            await reputation.close()
