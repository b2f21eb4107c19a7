"""Recording metrics: a narrow face over an OpenTelemetry meter, held to the catalogue.

A part records by catalogue name (``metrics.add("clamor.router.cases.opened", 1, {TEAM: team})``);
a name or attribute key that is not in :mod:`services.shared.metric_catalogue` raises at once, so
a typo never ships a series nobody's alert reads. Gauges are observed when a reader collects
(a Prometheus scrape, an OTLP export): their readers must be cheap and must not block, so they
read values a periodic task refreshed (consumer lag) or in-process state (queue depth).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from opentelemetry.metrics import CallbackOptions, Meter, NoOpMeter, Observation

from services.shared.errors import ClamorError
from services.shared.metric_catalogue import BY_NAME, Kind, MetricSpec

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, UpDownCounter

AttributeValue = str | int | float | bool
Attributes = Mapping[str, AttributeValue]
# One observation per attribute set; called on the reader's thread.
GaugeReader = Callable[[], Iterable[tuple[float, Attributes]]]

METER_NAME = "clamor"


class UnknownMetricError(ClamorError):
    """A name or attribute the catalogue does not list: a programming error, caught by tests."""


class Metrics:
    """Instruments by catalogue name, created on first use."""

    def __init__(self, meter: Meter | None = None) -> None:
        # A no-op meter by default: parts built in unit tests record without a provider.
        self._meter = meter or NoOpMeter(METER_NAME)
        self._lock = threading.Lock()
        self._instruments: dict[str, Counter | UpDownCounter | Histogram] = {}
        self._gauges: dict[str, list[GaugeReader]] = {}

    def add(self, name: str, amount: float = 1, attributes: Attributes | None = None) -> None:
        """Add to a counter (or an up-down counter, where ``amount`` may be negative)."""
        spec = _spec(name, attributes, Kind.COUNTER, Kind.UP_DOWN)
        instrument = self._instrument(spec)
        instrument.add(amount, attributes=dict(attributes or {}))  # type: ignore[union-attr]

    def record(self, name: str, value: float, attributes: Attributes | None = None) -> None:
        """Record one value of a histogram (a duration, a batch size)."""
        spec = _spec(name, attributes, Kind.HISTOGRAM)
        instrument = self._instrument(spec)
        instrument.record(value, attributes=dict(attributes or {}))  # type: ignore[union-attr]

    def observe(self, name: str, read: GaugeReader) -> None:
        """Report what ``read`` returns as gauge ``name`` at every collection; several readers add up."""
        spec = _spec(name, None, Kind.GAUGE)
        with self._lock:
            readers = self._gauges.get(name)
            if readers is not None:
                readers.append(read)
                return
            self._gauges[name] = readers = [read]
        self._meter.create_observable_gauge(
            spec.name, callbacks=[_gauge_callback(spec, readers)], unit=spec.unit, description=spec.description
        )

    def _instrument(self, spec: MetricSpec) -> Counter | UpDownCounter | Histogram:
        found = self._instruments.get(spec.name)
        if found is not None:
            return found
        with self._lock:
            found = self._instruments.get(spec.name)
            if found is None:
                found = self._create(spec)
                self._instruments[spec.name] = found
            return found

    def _create(self, spec: MetricSpec) -> Counter | UpDownCounter | Histogram:
        if spec.kind is Kind.COUNTER:
            return self._meter.create_counter(spec.name, unit=spec.unit, description=spec.description)
        if spec.kind is Kind.UP_DOWN:
            return self._meter.create_up_down_counter(spec.name, unit=spec.unit, description=spec.description)
        return self._meter.create_histogram(
            spec.name,
            unit=spec.unit,
            description=spec.description,
            explicit_bucket_boundaries_advisory=list(spec.buckets) if spec.buckets else None,
        )


def _spec(name: str, attributes: Attributes | None, *kinds: Kind) -> MetricSpec:
    spec = BY_NAME.get(name)
    if spec is None:
        raise UnknownMetricError(f"metric {name!r} is not in services/shared/metric_catalogue.py")
    if spec.kind not in kinds:
        raise UnknownMetricError(f"metric {name!r} is a {spec.kind}, not a {' or '.join(kinds)}")
    unknown = set(attributes or {}) - set(spec.attributes)
    if unknown:
        raise UnknownMetricError(f"metric {name!r} has no attribute {', '.join(sorted(unknown))}")
    return spec


def _gauge_callback(spec: MetricSpec, readers: list[GaugeReader]) -> Callable[[CallbackOptions], list[Observation]]:
    def collect(options: CallbackOptions) -> list[Observation]:
        # Readers that report the same attributes add up (a gauge keeps one value per series).
        totals: dict[frozenset[tuple[str, AttributeValue]], float] = {}
        for read in list(readers):
            for value, attributes in read():
                _spec(spec.name, attributes, Kind.GAUGE)
                key = frozenset(attributes.items())
                totals[key] = totals.get(key, 0.0) + value
        return [Observation(value, dict(key)) for key, value in totals.items()]

    return collect
