"""The gRPC bootstrap and service runtime: health follows real readiness, reflection, status."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from clamor.v1 import status_pb2, status_pb2_grpc
from services.shared.config import GrpcSettings, NatsSettings, TelemetrySettings
from services.shared.lifecycle import ServiceRuntime
from services.shared.nats_server import LocalNatsServer, free_port
from services.shared.telemetry import setup_telemetry
from tests.support.eventually import eventually

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def runtime(nats_server: LocalNatsServer) -> AsyncIterator[ServiceRuntime]:
    telemetry = setup_telemetry("test", TelemetrySettings(log_format="text"), install_global=False)
    service = ServiceRuntime(
        "test", NatsSettings(url=nats_server.url), GrpcSettings(port=0, shutdown_grace_s=1), telemetry
    )
    yield service
    await service.shutdown()


async def health_of(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        return int(response.status)


async def health_is(port: int, status: int) -> bool:
    return await health_of(port) == status


async def test_health_is_not_serving_until_nats_is_connected_and_the_service_wired(runtime: ServiceRuntime) -> None:
    port = await runtime.start_grpc(lambda server: None, [])
    assert await health_of(port) == NOT_SERVING
    await runtime.connect()
    # NATS alone is not enough: until the service has attached its parts, an RPC would answer
    # "still connecting", so a readiness probe must not send it traffic yet.
    assert await health_of(port) == NOT_SERVING
    await runtime.started()
    assert await health_of(port) == SERVING


async def test_health_waits_for_every_readiness_condition(runtime: ServiceRuntime) -> None:
    await runtime.readiness.require("model")
    port = await runtime.start_grpc(lambda server: None, [])
    await runtime.connect()
    await runtime.started()
    assert await health_of(port) == NOT_SERVING
    await runtime.readiness.mark("model", True)
    assert await health_of(port) == SERVING


async def test_health_drops_when_nats_goes_away_and_returns_with_it(
    nats_server: LocalNatsServer, runtime: ServiceRuntime
) -> None:
    port = await runtime.start_grpc(lambda server: None, [])
    await runtime.connect()
    await runtime.started()
    assert await health_of(port) == SERVING
    nats_server.stop()
    await eventually(lambda: health_is(port, NOT_SERVING), what="health NOT_SERVING")
    nats_server.start()
    await eventually(lambda: health_is(port, SERVING), what="health SERVING")


async def test_status_service_reports_counters_and_missing_conditions(runtime: ServiceRuntime) -> None:
    await runtime.readiness.require("model")
    runtime.counters.inc("triaged", 3)
    port = await runtime.start_grpc(lambda server: None, [])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = await status_pb2_grpc.StatusServiceStub(channel).GetStatus(status_pb2.GetStatusRequest(), timeout=2)
    status = response.status
    assert status.service == "test"
    assert status.ready is False
    assert list(status.not_ready) == ["model", "nats", "started"]
    assert [(c.name, c.value) for c in status.counters] == [("triaged", 3)]


async def test_reflection_lists_the_served_services(runtime: ServiceRuntime) -> None:
    port = await runtime.start_grpc(lambda server: None, [])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = [s.name async for r in responses for s in r.list_services_response.service]
    assert "clamor.v1.StatusService" in names
    assert "grpc.health.v1.Health" in names


def test_free_port_is_bindable() -> None:
    assert 0 < free_port() < 65536
