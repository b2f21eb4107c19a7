"""The asyncio gRPC server bootstrap every service uses.

Each server carries grpc.health.v1 (driven by :class:`Readiness`), server reflection, the
shared ``StatusService``, and OpenTelemetry server spans, with health and reflection calls
filtered out of traces so probes do not drown the real work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

from clamor.v1 import status_pb2, status_pb2_grpc
from services.shared.grpc_metrics import CallDurationInterceptor

if TYPE_CHECKING:
    from services.shared.config import GrpcSettings
    from services.shared.status import StatusReporter

log = logging.getLogger(__name__)

Registrar = Callable[[grpc.aio.Server], None]


class StatusServicer(status_pb2_grpc.StatusServiceServicer):
    def __init__(self, reporter: StatusReporter) -> None:
        self._reporter = reporter

    async def GetStatus(
        self, request: status_pb2.GetStatusRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> status_pb2.GetStatusResponse:
        return status_pb2.GetStatusResponse(status=self._reporter.status())


class GrpcServer:
    """Owns one grpc.aio server; ``service_names`` are the full names health reports on."""

    def __init__(
        self,
        settings: GrpcSettings,
        reporter: StatusReporter,
        *,
        service_names: Sequence[str],
        register: Registrar,
        trace_status_calls: bool = False,
    ) -> None:
        self._settings = settings
        self._reporter = reporter
        self._service_names = [*service_names, status_pb2.DESCRIPTOR.services_by_name["StatusService"].full_name]
        self._health = health.aio.HealthServicer()
        untraced = [filters.health_check(), filters.service_prefix("grpc.reflection")]
        if not trace_status_calls:
            # The CLI and `clamor up` poll GetStatus every second or so: spans of those are noise.
            untraced.append(filters.service_prefix(status_pb2.DESCRIPTOR.services_by_name["StatusService"].full_name))
        tracing = aio_server_interceptor(filter_=filters.negate(filters.any_of(*untraced)))  # type: ignore[no-untyped-call]
        timing = CallDurationInterceptor(reporter.counters.metrics)
        self._server = grpc.aio.server(interceptors=[tracing, timing])
        register(self._server)
        status_pb2_grpc.add_StatusServiceServicer_to_server(StatusServicer(reporter), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            [*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server
        )
        reporter.readiness.add_listener(self._set_serving)
        self.port = 0

    async def start(self) -> int:
        """Bind and start serving; health stays NOT_SERVING until readiness says otherwise."""
        await self._set_serving(self._reporter.readiness.ready)
        address = f"{self._settings.host}:{self._settings.port}"
        self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot bind gRPC server to {address}")
        await self._server.start()
        log.info("gRPC listening on %s:%d", self._settings.host, self.port)
        return self.port

    async def stop(self) -> None:
        await self._server.stop(self._settings.shutdown_grace_s)

    async def _set_serving(self, ready: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ["", *self._service_names]:
            await self._health.set(name, status)
