"""OpenTelemetry setup, trace-context propagation through NATS headers, and JSON logs.

One trace per mention: the listener starts it, every hop continues it through the
``traceparent`` header. Spans go to an OTLP collector when an endpoint is configured and, in
``clamor up``, to a JSON-lines file per service that ``clamor trace`` reads without a backend.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

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
    """The process's tracer and the handle that flushes it on shutdown."""

    service: str
    provider: TracerProvider

    @property
    def tracer(self) -> trace.Tracer:
        return self.provider.get_tracer(f"{SERVICE_NAMESPACE}.{self.service}")

    def shutdown(self) -> None:
        """Flush and close every exporter; the last step of a graceful shutdown."""
        self.provider.force_flush()
        self.provider.shutdown()


def setup_telemetry(service: str, settings: TelemetrySettings, *, install_global: bool = True) -> Telemetry:
    """Create the tracer provider for ``service`` and its exporters; configure logging too."""
    resource = Resource.create(
        {"service.name": service, "service.namespace": SERVICE_NAMESPACE, "service.instance.id": str(os.getpid())}
    )
    provider = TracerProvider(resource=resource)
    if settings.otlp_endpoint:
        # Imported here: the exporter pulls in grpc channel setup that file-only runs never need.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    if settings.span_dir is not None:
        exporter = JsonlSpanExporter(settings.span_dir / f"{service}.jsonl", service)
        # A short delay so `clamor trace` sees a mention's spans within a second.
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    if install_global:
        trace.set_tracer_provider(provider)
    configure_logging(service, settings)
    return Telemetry(service=service, provider=provider)


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
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
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


def configure_logging(service: str, settings: TelemetrySettings) -> None:
    # Standard output, where container runtimes and `clamor up`'s supervisor collect a process's log.
    handler = logging.StreamHandler(sys.stdout)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # nats-py logs every reconnect attempt at ERROR; our own callbacks report them once.
    logging.getLogger("nats").setLevel(logging.CRITICAL)
