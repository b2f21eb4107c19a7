"""Spans leave the process over OTLP/gRPC when an endpoint is configured, and to the span file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from services.shared.config import TelemetrySettings
from services.shared.telemetry import setup_telemetry


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """A minimal OTLP trace collector: records every export request."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()


async def test_spans_are_exported_over_otlp_with_the_service_name(tmp_path: Path) -> None:
    collector = Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        settings = TelemetrySettings(otlp_endpoint=f"http://127.0.0.1:{port}", span_dir=tmp_path, log_format="text")
        telemetry = setup_telemetry("triage", settings, install_global=False)
        with telemetry.tracer.start_as_current_span("process clamor.mention.x"):
            pass
        # shutdown() flushes: the batch processor exports from its own thread, so do it off the loop.
        await asyncio.to_thread(telemetry.shutdown)
    finally:
        await server.stop(0)
    exported = [
        (resource.resource, span.name)
        for request in collector.requests
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    assert [name for _, name in exported] == ["process clamor.mention.x"]
    attributes = {a.key: a.value.string_value for a in exported[0][0].attributes}
    assert attributes["service.name"] == "triage"
    lines = (tmp_path / "triage.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["process clamor.mention.x"]
