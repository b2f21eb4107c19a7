"""The reputation service's gRPC API on a real server: alerts page by page, and verdicts asked by enum.

Real nats-server, the service's parts as ``assemble`` wires them, and its ``ReputationServicer`` on a
free port. Alerts are stored as the watch stores them (the latest revision per id, in KV).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import grpc
import pytest

from clamor.v1 import alert_pb2, reputation_service_pb2, reputation_service_pb2_grpc, triage_pb2
from services.reputation.app import Reputation, assemble
from services.reputation.server import ReputationParts, ReputationServicer
from services.shared.jetstream import ensure_streams
from tests.integration.reputation_harness import reputation_settings
from tests.support.clock import T0, ManualClock, tracer

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient


@asynccontextmanager
async def serving(reputation: Reputation, clock: ManualClock) -> AsyncIterator[str]:
    servicer = ReputationServicer(reputation.settings, clock=clock)
    servicer.attach(ReputationParts(trends=reputation.trends, reputation=reputation.watch))
    server = grpc.aio.server()
    reputation_service_pb2_grpc.add_ReputationServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


def replaced_by(alert: alert_pb2.Alert) -> Callable[[alert_pb2.Alert | None], alert_pb2.Alert]:
    return lambda _: alert


async def store_alerts(reputation: Reputation, clock: ManualClock, count: int) -> list[str]:
    """``count`` alerts raised a minute apart, the last one resolved; returns their ids, newest first."""
    ids: list[str] = []
    for n in range(count):
        alert = alert_pb2.Alert(
            id=f"a{n}", topic="acme", watch="acme", revision=1, status=alert_pb2.ALERT_STATUS_FIRING
        )
        if n == count - 1:
            alert.status = alert_pb2.ALERT_STATUS_RESOLVED
        alert.raised_at.FromDatetime(clock() + timedelta(minutes=n))
        await reputation.alert_states.change(alert.id, replaced_by(alert))
        ids.append(alert.id)
    # The service answers from its mirror of the bucket: wait until it holds every alert.
    for _ in range(1000):
        if len(reputation.watch.alerts()) == count:
            break
        await asyncio.sleep(0.01)
    return ids[::-1]


async def test_alerts_come_page_by_page_newest_first(nc: NatsClient) -> None:
    js = nc.jetstream()
    await ensure_streams(js)
    clock = ManualClock(T0)
    reputation = await assemble(js, reputation_settings({}), tracer=tracer(), clock=clock)
    try:
        newest_first = await store_alerts(reputation, clock, 5)
        async with serving(reputation, clock) as address, grpc.aio.insecure_channel(address) as channel:
            stub = reputation_service_pb2_grpc.ReputationServiceStub(channel)
            seen: list[str] = []
            token = ""
            pages = 0
            while True:
                page = await stub.ListAlerts(reputation_service_pb2.ListAlertsRequest(page_size=2, page_token=token))
                seen += [a.id for a in page.alerts]
                pages += 1
                token = page.next_page_token
                if not token:
                    break
            firing = await stub.ListAlerts(reputation_service_pb2.ListAlertsRequest(firing_only=True))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListAlerts(reputation_service_pb2.ListAlertsRequest(page_token="not-a-token"))
            trends = await stub.GetTrends(
                reputation_service_pb2.GetTrendsRequest(counted_verdict=triage_pb2.VERDICT_NOISE)
            )
    finally:
        await reputation.close()
    assert (seen, pages) == (newest_first, 3)
    assert [a.id for a in firing.alerts] == newest_first[1:]
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert trends.generated_at.ToDatetime() == clock().replace(tzinfo=None)
