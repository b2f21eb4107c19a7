"""A real OTLP/gRPC trace receiver on loopback: it decodes what the services export, as a collector would.

It stands in for the OpenTelemetry Collector where its image cannot run (the manifest test): the
services export with their own OTLP exporter over gRPC, and the test reads the spans they sent.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

if TYPE_CHECKING:
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    attributes: dict[str, str]


def _text(attributes: list[KeyValue]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in attributes:
        kind = item.value.WhichOneof("value")
        values[item.key] = str(getattr(item.value, kind)) if kind else ""
    return values


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: OtlpReceiver) -> None:
        self._sink = sink

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            service = _text(list(resource_spans.resource.attributes)).get("service.name", "")
            for scope_spans in resource_spans.scope_spans:
                received.extend(
                    ReceivedSpan(service, span.name, span.trace_id.hex(), _text(list(span.attributes)))
                    for span in scope_spans.spans
                )
        self._sink.add(received)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """``with OtlpReceiver() as receiver:`` listens on ``receiver.port`` until the block ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceService(self), self._server
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def add(self, spans: list[ReceivedSpan]) -> None:
        with self._lock:
            self._spans.extend(spans)

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def __enter__(self) -> OtlpReceiver:
        self._server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop(grace=None)
