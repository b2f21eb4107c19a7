"""Consumer lag and dead-letter depth, from the service that owns each durable.

A gauge is read on the collector's thread, where no NATS request can be made; so a periodic task
asks JetStream (consumer info, the dead-letter stream's per-subject counts) and keeps the last
answers here, and both the metrics and ``GetStatus`` read them: one set of numbers for
``/metrics``, OTLP and ``clamor status``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nats.errors import Error as NatsLibraryError
from nats.js.errors import NotFoundError

from services.shared import metric_catalogue as m
from services.shared import subjects

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.js import JetStreamContext

    from services.shared.metrics import Attributes, Metrics
    from services.shared.status import StatusReporter

log = logging.getLogger(__name__)

# GetStatus gauge names: "lag:<durable>" (pending plus unacknowledged), "dead_letters:<durable>".
LAG_GAUGE_PREFIX = "lag:"
DEAD_LETTERS_GAUGE_PREFIX = "dead_letters:"


@dataclass
class ConsumerReading:
    pending: int = 0
    ack_pending: int = 0
    dead_letters: int = 0


class ConsumerGauges:
    """The last reading of each durable this process consumes from."""

    def __init__(self, metrics: Metrics, reporter: StatusReporter | None = None) -> None:
        self._specs: list[subjects.ConsumerSpec] = []
        self._readings: dict[str, ConsumerReading] = {}
        self._reporter = reporter
        metrics.observe("clamor.jetstream.consumer.pending", lambda: self._each(lambda r: r.pending))
        metrics.observe("clamor.jetstream.consumer.ack_pending", lambda: self._each(lambda r: r.ack_pending))
        metrics.observe(
            "clamor.dead_letters.depth",
            lambda: [(r.dead_letters, {m.STAGE: durable}) for durable, r in list(self._readings.items())],
        )

    def add(self, spec: subjects.ConsumerSpec) -> None:
        """Watch one more durable (and report it in GetStatus)."""
        self._specs.append(spec)
        if self._reporter is not None:
            durable = spec.durable
            self._reporter.add_gauge(LAG_GAUGE_PREFIX + durable, lambda: self._lag(durable))
            self._reporter.add_gauge(DEAD_LETTERS_GAUGE_PREFIX + durable, lambda: self._dead(durable))

    async def refresh(self, js: JetStreamContext) -> None:
        """Ask JetStream again; a durable that does not answer keeps its last reading."""
        if not self._specs:
            return
        depth = await _dead_letter_depth(js)
        for spec in list(self._specs):
            try:
                info = await js.consumer_info(spec.stream, spec.durable)
            except (TimeoutError, NotFoundError, NatsLibraryError) as exc:
                log.debug("no consumer info for %s: %s", spec.durable, exc)
                continue
            reading = ConsumerReading(int(info.num_pending or 0), int(info.num_ack_pending or 0))
            if depth is not None:
                reading.dead_letters = depth.get(spec.dead_letter_subject, 0)
            elif spec.durable in self._readings:
                reading.dead_letters = self._readings[spec.durable].dead_letters
            self._readings[spec.durable] = reading

    def _each(self, value: Callable[[ConsumerReading], int]) -> list[tuple[float, Attributes]]:
        streams = {spec.durable: spec.stream for spec in self._specs}
        return [
            (value(reading), {m.STAGE: durable, m.DESTINATION: streams.get(durable, "")})
            for durable, reading in list(self._readings.items())
        ]

    def _lag(self, durable: str) -> int:
        reading = self._readings.get(durable)
        return reading.pending + reading.ack_pending if reading is not None else 0

    def _dead(self, durable: str) -> int:
        reading = self._readings.get(durable)
        return reading.dead_letters if reading is not None else 0


async def _dead_letter_depth(js: JetStreamContext) -> dict[str, int] | None:
    """Messages held per dead-letter subject, or None when the stream does not answer."""
    try:
        info = await js.stream_info(subjects.DEAD_LETTERS.name, subjects_filter=">")
    except (TimeoutError, NotFoundError, NatsLibraryError) as exc:
        log.debug("no dead-letter counts: %s", exc)
        return None
    return {str(subject): int(count) for subject, count in (info.state.subjects or {}).items()}
