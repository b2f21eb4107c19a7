"""Ask running services how they are: grpc.health.v1 and the shared StatusService."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2

from clamor.v1 import listener_service_pb2, status_pb2
from services.cli import clients
from services.cli.mesh import SERVICES, MeshConfig

if TYPE_CHECKING:
    from services.shared.config import GrpcSettings

UNREACHABLE = "UNREACHABLE"
# More sources than anyone reads in a terminal table; the listener serves them a page at a time.
MAX_SOURCES = 10_000


@dataclass
class ServiceReport:
    name: str
    address: str
    health: str = UNREACHABLE
    counters: dict[str, int] = field(default_factory=dict)
    gauges: dict[str, int] = field(default_factory=dict)
    not_ready: list[str] = field(default_factory=list)
    uptime_seconds: float = 0.0
    sources: list[listener_service_pb2.SourceStatus] = field(default_factory=list)
    error: str = ""

    @property
    def serving(self) -> bool:
        return self.health == "SERVING"


async def probe(name: str, settings: GrpcSettings, *, timeout_s: float = 1.0) -> ServiceReport:
    report = ServiceReport(name=name, address=clients.address_of(settings))
    async with clients.connect(report.address) as channel:
        try:
            health = await clients.health(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
            report.health = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)
            status = await clients.status(channel).GetStatus(status_pb2.GetStatusRequest(), timeout=timeout_s)
            report.counters = {c.name: c.value for c in status.status.counters}
            report.gauges = {g.name: g.value for g in status.status.gauges}
            report.not_ready = list(status.status.not_ready)
            report.uptime_seconds = status.status.uptime_seconds
            if name == "listener":
                stub = clients.listener(channel)

                async def ask(token: str, size: int) -> clients.Page[listener_service_pb2.SourceStatus]:
                    request = listener_service_pb2.ListSourcesRequest(page_size=size, page_token=token)
                    answer = await stub.ListSources(request, timeout=timeout_s)
                    return answer.sources, answer.next_page_token

                report.sources = await clients.follow_pages(ask, limit=MAX_SOURCES)
        except grpc.aio.AioRpcError as exc:
            unavailable = exc.code() == grpc.StatusCode.UNAVAILABLE
            report.error = "not running" if unavailable else (exc.details() or exc.code().name)
    return report


async def probe_all(config: MeshConfig, *, timeout_s: float = 1.0) -> list[ServiceReport]:
    return list(await asyncio.gather(*(probe(name, config.grpc(name), timeout_s=timeout_s) for name in SERVICES)))
