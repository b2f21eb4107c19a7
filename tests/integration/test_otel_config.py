"""The standard OTEL_* variables alone send traces, metrics and logs, over gRPC and over HTTP.

A real OTLP receiver on loopback decodes what the SDK's own exporters send; the process's telemetry
is set up exactly as a service's is (``setup_telemetry``), with an empty config section.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from services.shared.config import TelemetrySettings
from services.shared.nats_server import free_port
from services.shared.telemetry import Telemetry, package_version, setup_telemetry
from tests.support.otlp_receiver import OtlpReceiver

OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_LOGS_EXPORTER",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_SAMPLER",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    handlers = logging.getLogger().handlers[:]
    level = logging.getLogger().level
    yield
    # setup_telemetry configures the root logger; give the next test the one it had.
    logging.getLogger().handlers[:] = handlers
    logging.getLogger().setLevel(level)


def exercise(telemetry: Telemetry) -> str:
    """A span with a log line inside it, a counter and a histogram; then flush. Returns the trace id."""
    with telemetry.tracer.start_as_current_span("handle mention") as span:
        logging.getLogger("clamor.test").warning("could not route this mention")
        trace_id = f"{span.get_span_context().trace_id:032x}"
    telemetry.metrics.add("clamor.router.cases.opened", 2, {"clamor.team": "care"})
    telemetry.metrics.record("messaging.process.duration", 0.25, {"messaging.consumer.group.name": "router"})
    telemetry.shutdown()
    return trace_id


def test_the_endpoint_variable_alone_exports_traces_and_metrics_over_grpc(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.port}")
    trace_id = exercise(setup_telemetry("router", TelemetrySettings(), install_global=False))

    assert [(s.service, s.name, s.trace_id) for s in receiver.spans] == [("router", "handle mention", trace_id)]
    assert receiver.protocols["grpc"] >= {("traces", "router"), ("metrics", "router")}
    assert receiver.protocols["http"] == set()
    opened = [m for m in receiver.metrics if m.name == "clamor.router.cases.opened"]
    assert [(m.unit, m.kind, m.monotonic, m.attributes, m.value) for m in opened] == [
        ("{case}", "sum", True, {"clamor.team": "care"}, 2.0)
    ]
    durations = [m for m in receiver.metrics if m.name == "messaging.process.duration"]
    assert [(m.unit, m.kind, m.value) for m in durations] == [("s", "histogram", 1.0)]
    resource = opened[0].resource
    assert resource["service.name"] == "router"
    assert resource["service.namespace"] == "clamor"
    assert resource["service.version"] == package_version()
    assert resource["deployment.environment.name"] == "development"
    assert resource["service.instance.id"].startswith(socket.gethostname() + "-")
    # Logs stay on standard output unless asked for.
    assert receiver.logs == []


def test_http_protobuf_carries_traces_metrics_and_logs_with_the_trace_id(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.http_port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging,k8s.pod.name=notifier-7f9")
    trace_id = exercise(setup_telemetry("notifier", TelemetrySettings(), install_global=False))

    assert receiver.protocols["http"] == {("traces", "notifier"), ("metrics", "notifier"), ("logs", "notifier")}
    assert receiver.protocols["grpc"] == set()
    assert [s.trace_id for s in receiver.spans] == [trace_id]
    logged = [r for r in receiver.logs if r.body == "could not route this mention"]
    assert [(r.severity, r.trace_id) for r in logged] == [("WARN", trace_id)]
    resource = receiver.metrics[0].resource
    # The environment's resource attributes win over the config's and add to ours.
    assert resource["deployment.environment.name"] == "staging"
    assert resource["k8s.pod.name"] == "notifier-7f9"
    assert resource["service.name"] == "notifier"


def test_per_signal_variables_split_the_protocols_and_the_service_name_can_be_renamed(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{receiver.port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"http://127.0.0.1:{receiver.http_port}/v1/metrics")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "clamor-triage-eu")
    exercise(setup_telemetry("triage", TelemetrySettings(), install_global=False))

    assert receiver.protocols == {"grpc": {("traces", "clamor-triage-eu")}, "http": {("metrics", "clamor-triage-eu")}}


def test_the_environment_wins_over_the_config_file_which_is_only_a_default(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens there: had anything been sent to the config's endpoint, the receiver would lack it.
    settings = TelemetrySettings(otlp_endpoint=f"http://127.0.0.1:{free_port()}", environment="production")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.port}")
    exercise(setup_telemetry("listener", settings, install_global=False))
    assert receiver.metrics[0].resource["deployment.environment.name"] == "production"
    assert {s.service for s in receiver.spans} == {"listener"}


def test_the_config_endpoint_is_used_when_the_environment_names_none(receiver: OtlpReceiver) -> None:
    settings = TelemetrySettings(otlp_endpoint=f"http://127.0.0.1:{receiver.http_port}", otlp_protocol="http/protobuf")
    exercise(setup_telemetry("reputation", settings, install_global=False))
    assert receiver.protocols["http"] >= {("traces", "reputation"), ("metrics", "reputation")}


def test_sampler_off_drops_spans_but_not_metrics_and_sdk_disabled_drops_everything(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.port}")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    exercise(setup_telemetry("router", TelemetrySettings(), install_global=False))
    assert receiver.spans == []
    assert any(m.name == "clamor.router.cases.opened" for m in receiver.metrics)

    before = len(receiver.metrics)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    exercise(setup_telemetry("router", TelemetrySettings(), install_global=False))
    assert len(receiver.metrics) == before


def test_every_process_gets_its_own_instance_id(receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.port}")
    for _ in range(2):
        exercise(setup_telemetry("router", TelemetrySettings(), install_global=False))
    assert len({m.resource["service.instance.id"] for m in receiver.metrics}) == 2
