"""A real OTLP receiver on loopback, over gRPC and over HTTP: it decodes what the services export.

It stands in for the OpenTelemetry Collector where its image cannot run: the services export traces,
metrics and logs with their own OTLP exporters, and the test reads what they sent. The HTTP side
speaks OTLP/HTTP with binary protobuf bodies (``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs``).
"""

from __future__ import annotations

import gzip
import threading
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

if TYPE_CHECKING:
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    attributes: dict[str, str]
    resource: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class ReceivedMetric:
    """One data point of one metric, with its metric's name, unit and kind, and its resource."""

    service: str
    name: str
    unit: str
    kind: str  # sum, gauge, histogram
    attributes: dict[str, str]
    value: float  # a sum's or gauge's value; a histogram's count
    resource: dict[str, str]
    monotonic: bool = False


@dataclass(frozen=True)
class ReceivedLog:
    service: str
    severity: str
    body: str
    trace_id: str
    resource: dict[str, str]


def spans_of(request: trace_service_pb2.ExportTraceServiceRequest) -> list[ReceivedSpan]:
    received: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _text(list(resource_spans.resource.attributes))
        for scope_spans in resource_spans.scope_spans:
            received.extend(
                ReceivedSpan(
                    resource.get("service.name", ""),
                    span.name,
                    span.trace_id.hex(),
                    _text(list(span.attributes)),
                    resource,
                )
                for span in scope_spans.spans
            )
    return received


def metrics_of(request: metrics_service_pb2.ExportMetricsServiceRequest) -> list[ReceivedMetric]:
    received: list[ReceivedMetric] = []
    for resource_metrics in request.resource_metrics:
        resource = _text(list(resource_metrics.resource.attributes))
        service = resource.get("service.name", "")
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data") or ""
                data: Any = getattr(metric, kind)
                for point in data.data_points:
                    if kind == "histogram":
                        value = float(point.count)
                    else:
                        value = float(point.as_double if point.WhichOneof("value") == "as_double" else point.as_int)
                    received.append(
                        ReceivedMetric(
                            service,
                            metric.name,
                            metric.unit,
                            kind,
                            _text(list(point.attributes)),
                            value,
                            resource,
                            bool(getattr(data, "is_monotonic", False)),
                        )
                    )
    return received


def logs_of(request: logs_service_pb2.ExportLogsServiceRequest) -> list[ReceivedLog]:
    received: list[ReceivedLog] = []
    for resource_logs in request.resource_logs:
        resource = _text(list(resource_logs.resource.attributes))
        for scope in resource_logs.scope_logs:
            received.extend(
                ReceivedLog(
                    resource.get("service.name", ""),
                    record.severity_text,
                    record.body.string_value,
                    record.trace_id.hex(),
                    resource,
                )
                for record in scope.log_records
            )
    return received


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
        self._sink.add(spans_of(request), via="grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, sink: OtlpReceiver) -> None:
        self._sink = sink

    def Export(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: grpc.ServicerContext
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self._sink.add_metrics(metrics_of(request), via="grpc")
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, sink: OtlpReceiver) -> None:
        self._sink = sink

    def Export(
        self, request: logs_service_pb2.ExportLogsServiceRequest, context: grpc.ServicerContext
    ) -> logs_service_pb2.ExportLogsServiceResponse:
        self._sink.add_logs(logs_of(request), via="grpc")
        return logs_service_pb2.ExportLogsServiceResponse()


def _http_handler(sink: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.headers.get("Content-Type") != "application/x-protobuf":
                self.send_error(415, "OTLP/HTTP here takes application/x-protobuf")
                return
            answer: Any
            if self.path == "/v1/traces":
                sink.add(spans_of(trace_service_pb2.ExportTraceServiceRequest.FromString(body)), via="http")
                answer = trace_service_pb2.ExportTraceServiceResponse()
            elif self.path == "/v1/metrics":
                request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
                sink.add_metrics(metrics_of(request), via="http")
                answer = metrics_service_pb2.ExportMetricsServiceResponse()
            elif self.path == "/v1/logs":
                sink.add_logs(logs_of(logs_service_pb2.ExportLogsServiceRequest.FromString(body)), via="http")
                answer = logs_service_pb2.ExportLogsServiceResponse()
            else:
                self.send_error(404)
                return
            payload = answer.SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


class OtlpReceiver:
    """``with OtlpReceiver() as receiver:`` listens on ``receiver.port`` (gRPC) and
    ``receiver.http_port`` (HTTP) until the block ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._metrics: list[ReceivedMetric] = []
        self._logs: list[ReceivedLog] = []
        # Which protocol carried each signal: {"grpc": {"traces", ...}, "http": {...}}.
        self.protocols: dict[str, set[tuple[str, str]]] = {"grpc": set(), "http": set()}
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceService(self), self._server
        )
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _MetricsService(self), self._server
        )
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _LogsService(self), self._server
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _http_handler(self))
        self.http_port = self._http.server_address[1]
        self._http_thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def add(self, spans: list[ReceivedSpan], via: str = "grpc") -> None:
        with self._lock:
            self._spans.extend(spans)
            self.protocols[via].update(("traces", s.service) for s in spans)

    def add_metrics(self, metrics: list[ReceivedMetric], via: str) -> None:
        with self._lock:
            self._metrics.extend(metrics)
            self.protocols[via].update(("metrics", m.service) for m in metrics)

    def add_logs(self, logs: list[ReceivedLog], via: str) -> None:
        with self._lock:
            self._logs.extend(logs)
            self.protocols[via].update(("logs", r.service) for r in logs)

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    @property
    def metrics(self) -> list[ReceivedMetric]:
        with self._lock:
            return list(self._metrics)

    @property
    def logs(self) -> list[ReceivedLog]:
        with self._lock:
            return list(self._logs)

    def __enter__(self) -> OtlpReceiver:
        self._server.start()
        self._http_thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop(grace=None)
        self._http.shutdown()
        self._http.server_close()
