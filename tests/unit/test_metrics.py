"""The metrics face: held to the catalogue, and named on /metrics as the catalogue says."""

from __future__ import annotations

import functools
import urllib.request
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider

from services.shared import otel_env
from services.shared.config import TelemetrySettings
from services.shared.metric_catalogue import CATALOGUE, Kind
from services.shared.metrics import Attributes, Metrics, UnknownMetricError
from services.shared.metrics_server import MetricsServer
from tests.support.metrics import RecordedMetrics


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    running = MetricsServer("127.0.0.1", 0)
    yield running
    running.close()


def one_observation(attributes: Attributes) -> list[tuple[float, Attributes]]:
    return [(1.0, attributes)]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return str(answer.read().decode())


def test_a_name_or_attribute_outside_the_catalogue_is_refused() -> None:
    metrics = RecordedMetrics().metrics
    with pytest.raises(UnknownMetricError, match=r"not in services/shared/metric_catalogue\.py"):
        metrics.add("clamor.router.cases.openned")
    with pytest.raises(UnknownMetricError, match=r"no attribute clamor\.case\.id"):
        metrics.add("clamor.router.cases.opened", 1, {"clamor.case.id": "c-1"})
    with pytest.raises(UnknownMetricError, match="is a histogram"):
        metrics.add("messaging.process.duration", 1)


def test_counters_histograms_and_gauges_record_what_they_are_given() -> None:
    recorded = RecordedMetrics()
    recorded.metrics.add("clamor.router.cases.opened", 2, {"clamor.team": "care"})
    recorded.metrics.add("clamor.router.cases.opened", 1, {"clamor.team": "legal"})
    recorded.metrics.record("clamor.triage.batch.size", 16)
    recorded.metrics.observe("clamor.notifier.queue.depth", lambda: [(3, {})])
    recorded.metrics.observe("clamor.notifier.queue.depth", lambda: [(4, {})])
    assert recorded.value("clamor.router.cases.opened", {"clamor.team": "care"}) == 2
    assert recorded.value("clamor.router.cases.opened") == 3
    assert recorded.value("clamor.triage.batch.size") == 1
    # Two readers of one gauge with the same attributes add up to one series.
    assert [p.value for _, p in recorded.points("clamor.notifier.queue.depth")] == [7]


def test_without_a_meter_nothing_is_recorded_and_nothing_fails() -> None:
    Metrics().add("clamor.router.cases.opened", 1, {"clamor.team": "care"})


def test_every_catalogue_entry_appears_on_metrics_under_its_prometheus_name(server: MetricsServer) -> None:
    provider = MeterProvider(metric_readers=[server.reader])
    metrics = Metrics(provider.get_meter("test"))
    for spec in CATALOGUE:
        attributes = dict.fromkeys(spec.attributes, "x")
        if spec.kind in (Kind.COUNTER, Kind.UP_DOWN):
            metrics.add(spec.name, 1, attributes)
        elif spec.kind is Kind.HISTOGRAM:
            metrics.record(spec.name, 1, attributes)
        else:
            metrics.observe(spec.name, functools.partial(one_observation, attributes))
    text = scrape(server.port)
    series = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for spec in CATALOGUE:
        expected = f"{spec.prometheus_name}_count" if spec.kind is Kind.HISTOGRAM else spec.prometheus_name
        assert expected in series, spec.name
    # The process collector too: memory and CPU for sizing.
    assert "process_resident_memory_bytes" in series
    provider.shutdown()


def test_otlp_targets_follow_the_specification() -> None:
    settings = TelemetrySettings()
    assert otel_env.otlp_target(otel_env.Signal.TRACES, settings, {}) is None
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    target = otel_env.otlp_target(otel_env.Signal.METRICS, settings, base)
    assert target == otel_env.OtlpTarget("http/protobuf", "http://collector:4318/v1/metrics")
    # Logs only when asked for; "none" switches a signal off.
    assert otel_env.otlp_target(otel_env.Signal.LOGS, settings, base) is None
    assert otel_env.otlp_target(otel_env.Signal.LOGS, settings, {**base, "OTEL_LOGS_EXPORTER": "otlp"}) is not None
    assert otel_env.otlp_target(otel_env.Signal.TRACES, settings, {**base, "OTEL_TRACES_EXPORTER": "none"}) is None
    # Asked for without any endpoint: the specification's default.
    asked = otel_env.otlp_target(otel_env.Signal.TRACES, settings, {"OTEL_TRACES_EXPORTER": "otlp"})
    assert asked == otel_env.OtlpTarget("grpc", "http://localhost:4317")
    with pytest.raises(ValueError, match="http/json"):
        otel_env.otlp_target(otel_env.Signal.TRACES, settings, {**base, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
