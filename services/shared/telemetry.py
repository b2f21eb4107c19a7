"""OpenTelemetry setup, trace-context propagation through NATS headers, and JSON logs.

One trace per mention: the listener starts it, every hop continues it through the
``traceparent`` header. Spans go to an OTLP collector when an endpoint is configured and, in
``clamor up``, to a JSON-lines file per service that ``clamor trace`` reads without a backend.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import secrets
import socket
import sys
import threading
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from services.shared import otel_env
from services.shared.metrics import METER_NAME, Metrics
from services.shared.metrics_server import MetricsServer

if TYPE_CHECKING:
    from pathlib import Path

    from services.shared.config import TelemetrySettings

SERVICE_NAMESPACE = "clamor"


class JsonlSpanExporter(SpanExporter):
    """Appends finished spans as JSON lines; one file per service keeps writes unshared."""

    def __init__(self, path: Path, service: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._service = service
        self._lock = threading.Lock()
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(span_to_dict(span, self._service), ensure_ascii=False) for span in spans]
        with self._lock:
            if self._file.closed:
                return SpanExportResult.FAILURE
            self._file.write("".join(line + "\n" for line in lines))
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()


def span_to_dict(span: ReadableSpan, service: str) -> dict[str, Any]:
    ctx = span.get_span_context()
    parent = span.parent
    return {
        "service": service,
        "name": span.name,
        "kind": span.kind.name if span.kind is not None else "INTERNAL",
        "trace_id": f"{ctx.trace_id:032x}" if ctx is not None else "",
        "span_id": f"{ctx.span_id:016x}" if ctx is not None else "",
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else "",
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": {k: _jsonable(v) for k, v in (span.attributes or {}).items()},
        "links": [
            {"trace_id": f"{link.context.trace_id:032x}", "span_id": f"{link.context.span_id:016x}"}
            for link in span.links
        ],
    }


def _jsonable(value: object) -> object:
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Sequence):
        return [_jsonable(v) for v in value]
    return str(value)


@dataclass
class Telemetry:
    """The process's tracer and meter, and the handle that flushes them on shutdown."""

    service: str
    provider: TracerProvider
    metrics: Metrics = field(default_factory=Metrics)
    meter_provider: MeterProvider | None = None
    # The Prometheus /metrics endpoint, when one is served.
    metrics_server: MetricsServer | None = None
    log_provider: LoggerProvider | None = None
    trace_status_calls: bool = False

    @property
    def tracer(self) -> trace.Tracer:
        return self.provider.get_tracer(f"{SERVICE_NAMESPACE}.{self.service}")

    def shutdown(self) -> None:
        """Flush and close every exporter; the last step of a graceful shutdown."""
        self.provider.force_flush()
        self.provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self.log_provider is not None:
            self.log_provider.shutdown()


def service_resource(service: str, settings: TelemetrySettings) -> Resource:
    """Our attributes, then OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over them (the spec's order)."""
    ours = Resource.create(
        {
            "service.name": service,
            "service.namespace": SERVICE_NAMESPACE,
            "service.version": package_version(),
            # The PID is 1 in every container: the host (the pod's name) and a random part.
            "service.instance.id": f"{socket.gethostname()}-{secrets.token_hex(4)}",
            "deployment.environment.name": settings.environment,
        }
    )
    return ours.merge(OTELResourceDetector().detect())


def package_version() -> str:
    try:
        return importlib.metadata.version("clamor")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def setup_telemetry(service: str, settings: TelemetrySettings, *, install_global: bool = True) -> Telemetry:
    """Create the tracer and meter providers for ``service`` and their exporters; configure logging too.

    The ``OTEL_*`` environment variables win over ``settings``.
    """
    environ = os.environ
    resource = service_resource(service, settings)
    disabled = otel_env.sdk_disabled(environ)
    # The SDK reads OTEL_TRACES_SAMPLER and its argument; unset, parent-based always-on.
    provider = TracerProvider(resource=resource)
    target = otel_env.otlp_target(otel_env.Signal.TRACES, settings, environ)
    if target is not None:
        provider.add_span_processor(BatchSpanProcessor(_span_exporter(target)))
    if settings.span_dir is not None and not disabled:
        exporter = JsonlSpanExporter(settings.span_dir / f"{service}.jsonl", service)
        # A short delay so `clamor trace` sees a mention's spans within a second.
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    if install_global:
        trace.set_tracer_provider(provider)
    meter_provider, metrics_server = _meter_provider(
        resource, settings, environ, disabled=disabled or not settings.metrics
    )
    log_provider = _log_provider(resource, settings, environ)
    configure_logging(service, settings, log_provider)
    if metrics_server is not None:
        logging.getLogger(__name__).info("metrics on http://%s:%d/metrics", settings.metrics_host, metrics_server.port)
    return Telemetry(
        service=service,
        provider=provider,
        metrics=Metrics(meter_provider.get_meter(METER_NAME, package_version()) if settings.metrics else None),
        meter_provider=meter_provider,
        metrics_server=metrics_server,
        log_provider=log_provider,
        trace_status_calls=settings.trace_status_calls,
    )


def _span_exporter(target: otel_env.OtlpTarget) -> SpanExporter:
    # Imported here: the exporters pull in grpc or requests setup that file-only runs never need.
    if target.protocol == otel_env.GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

        return OTLPSpanExporter(endpoint=target.endpoint)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter(endpoint=target.endpoint)


def _metric_exporter(target: otel_env.OtlpTarget) -> MetricExporter:
    if target.protocol == otel_env.GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter  # noqa: PLC0415

        return OTLPMetricExporter(endpoint=target.endpoint)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # noqa: PLC0415
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter(endpoint=target.endpoint)


def _log_exporter(target: otel_env.OtlpTarget) -> LogRecordExporter:
    if target.protocol == otel_env.GRPC:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter  # noqa: PLC0415

        return OTLPLogExporter(endpoint=target.endpoint)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import (  # noqa: PLC0415
        OTLPLogExporter as HttpLogExporter,
    )

    return HttpLogExporter(endpoint=target.endpoint)


def _meter_provider(
    resource: Resource, settings: TelemetrySettings, env: Mapping[str, str], *, disabled: bool
) -> tuple[MeterProvider, MetricsServer | None]:
    readers: list[MetricReader] = []
    target = otel_env.otlp_target(otel_env.Signal.METRICS, settings, env)
    if target is not None and not disabled:
        # The SDK reads the export interval from OTEL_METRIC_EXPORT_INTERVAL.
        readers.append(PeriodicExportingMetricReader(_metric_exporter(target)))
    server = None
    if settings.metrics_port is not None and not disabled:
        server = MetricsServer(settings.metrics_host, settings.metrics_port)
        readers.append(server.reader)
    return MeterProvider(resource=resource, metric_readers=readers), server


def _log_provider(resource: Resource, settings: TelemetrySettings, env: Mapping[str, str]) -> LoggerProvider | None:
    target = otel_env.otlp_target(otel_env.Signal.LOGS, settings, env)
    if target is None:
        return None
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(_log_exporter(target)))
    return provider


def inject_context(headers: MutableMapping[str, str], context: otel_context.Context | None = None) -> None:
    """Write ``traceparent`` (and ``tracestate``) for ``context`` into message headers."""
    propagate.inject(headers, context=context)


def extract_context(headers: Mapping[str, str] | None) -> otel_context.Context:
    return propagate.extract(dict(headers or {}))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the current trace and span ids when there is a span."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": rfc3339(record.created),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = f"{span_context.trace_id:032x}"
            entry["span_id"] = f"{span_context.span_id:016x}"
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def rfc3339(created: float) -> str:
    """RFC 3339 in UTC with milliseconds and the zone: 2026-12-07T18:04:05.123Z."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """For people: time, service, level, logger, message, and the trace id while there is a span."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line = f"{rfc3339(record.created)} {self._service} {record.levelname} {record.name}: {record.getMessage()}"
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            line += f" trace_id={span_context.trace_id:032x} span_id={span_context.span_id:016x}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(service: str, settings: TelemetrySettings, log_provider: LoggerProvider | None = None) -> None:
    # Standard output, where container runtimes and `clamor up`'s supervisor collect a process's log.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service) if settings.log_format == "json" else TextFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if log_provider is not None:
        # The OTLP handler takes the trace and span ids from the current context itself.
        root.addHandler(LoggingHandler(logger_provider=log_provider))
    root.setLevel(settings.log_level)
    # nats-py logs every reconnect attempt at ERROR; our own callbacks report them once.
    logging.getLogger("nats").setLevel(logging.CRITICAL)
