"""Metrics a test can read back: a real SDK meter provider with an in-memory reader."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint

from services.shared.metrics import Metrics
from services.shared.status import Counters


@dataclass
class RecordedMetrics:
    """``metrics`` (or ``counters``) to hand to the part under test; ``points`` to read what it recorded."""

    reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)

    def __post_init__(self) -> None:
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.metrics = Metrics(self.provider.get_meter("test"))
        self.counters = Counters(self.metrics)

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, data point) of every series of ``name`` collected now."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data is not None else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found += [(dict(p.attributes or {}), p) for p in metric.data.data_points]
        return found

    def value(self, name: str, attributes: Mapping[str, Any] | None = None) -> float:
        """Sum of a counter or gauge over the series whose attributes include ``attributes``
        (a histogram: its count of recorded values)."""
        total = 0.0
        for attrs, point in self.points(name):
            if attributes and any(attrs.get(k) != v for k, v in attributes.items()):
                continue
            if isinstance(point, HistogramDataPoint):
                total += point.count
            elif isinstance(point, NumberDataPoint):
                total += point.value
        return total

    def series(self, name: str) -> list[dict[str, Any]]:
        return [attrs for attrs, _ in self.points(name)]
