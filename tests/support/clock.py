"""A clock the test turns, and a tracer that exports nowhere: what every in-process harness needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@dataclass
class ManualClock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def tracer() -> trace.Tracer:
    return TracerProvider().get_tracer("test")
