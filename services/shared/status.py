"""Readiness conditions, counters and gauges: what health and ``clamor status`` report.

Health is SERVING only while every readiness condition holds (NATS connected, consumers
bound, model loaded...), never hard-coded.
"""

from __future__ import annotations

import time
from collections import Counter as _Tally
from collections.abc import Awaitable, Callable

from clamor.v1 import status_pb2
from services.shared.metrics import Metrics

ReadinessListener = Callable[[bool], Awaitable[None]]
# Reads a level when a status is asked for; it must be cheap (no I/O): a status answers at once.
GaugeReader = Callable[[], int]

# Work a service holds outside any JetStream consumer (the notifier's groups): a client adds it to
# consumer lag to tell whether the mesh is idle.
QUEUED_GAUGE = "queued"


class Counters:
    """Monotonic per-process counters, by name, for ``clamor status``; and the process's metrics.

    Every part that counts already holds the counters, so they carry the :class:`Metrics` too:
    one thing to hand around, and a part built without a meter records to a no-op one.
    """

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._values: _Tally[str] = _Tally()
        self.metrics = metrics or Metrics()

    def inc(self, name: str, amount: int = 1) -> None:
        self._values[name] += amount

    def get(self, name: str) -> int:
        return self._values[name]

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self._values.items()))


class Readiness:
    """A set of named conditions; ready when all hold. Listeners hear every change of the total."""

    def __init__(self, *conditions: str) -> None:
        self._conditions: dict[str, bool] = dict.fromkeys(conditions, False)
        self._listeners: list[ReadinessListener] = []

    async def require(self, condition: str) -> None:
        """Add a condition (not yet met); listeners hear it if that ends a ready state."""
        if condition not in self._conditions:
            await self.mark(condition, False)

    def add_listener(self, listener: ReadinessListener) -> None:
        self._listeners.append(listener)

    @property
    def ready(self) -> bool:
        return all(self._conditions.values())

    @property
    def not_ready(self) -> list[str]:
        return sorted(name for name, ok in self._conditions.items() if not ok)

    async def mark(self, condition: str, ok: bool) -> None:
        before = self.ready
        self._conditions[condition] = ok
        if self.ready != before:
            for listener in self._listeners:
                await listener(self.ready)

    async def mark_all_down(self) -> None:
        """The first step of shutdown: stop being SERVING before anything else stops."""
        for name in self._conditions:
            await self.mark(name, False)


class StatusReporter:
    """Builds the ServiceStatus message from readiness, counters and gauges."""

    def __init__(self, service: str, readiness: Readiness, counters: Counters) -> None:
        self.service = service
        self.readiness = readiness
        self.counters = counters
        self._gauges: dict[str, GaugeReader] = {}
        self._started = time.monotonic()

    def add_gauge(self, name: str, read: GaugeReader) -> None:
        """Report ``read()`` as the gauge ``name`` in every status from now on."""
        self._gauges[name] = read

    def status(self) -> status_pb2.ServiceStatus:
        return status_pb2.ServiceStatus(
            service=self.service,
            ready=self.readiness.ready,
            not_ready=self.readiness.not_ready,
            counters=[status_pb2.Counter(name=k, value=v) for k, v in self.counters.snapshot().items()],
            uptime_seconds=time.monotonic() - self._started,
            gauges=[status_pb2.Gauge(name=name, value=read()) for name, read in sorted(self._gauges.items())],
        )
