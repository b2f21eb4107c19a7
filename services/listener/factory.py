"""Builds the runner of one source, configured or added, from the parts every source shares.

The registry calls it for each source; ``__main__`` wires it once, and tests that run several
listener replicas in one process build theirs the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.listener.config import HttpSourceSettings, ReplaySourceSettings, WebhookSourceSettings
from services.listener.poller import ReplaySource
from services.listener.runner import PushedSource, SourceRunner
from services.listener.sources import build_source
from services.shared.clock import Clock, system_clock
from services.shared.outbound import FetchLimits, OutboundClient, OutboundPolicy

if TYPE_CHECKING:
    from collections.abc import Mapping

    from opentelemetry import trace

    from services.listener.clients import AlertPublisher, MentionPublisher, StateStore
    from services.listener.lease_keeper import LeaseKeeper
    from services.listener.registry import Runner
    from services.listener.watch import Watch
    from services.shared.status import Counters


class SourceFactory:
    """``factory(settings, dynamic)`` → the source's runner; polled and replayed sources get a lease."""

    def __init__(
        self,
        *,
        publisher: MentionPublisher,
        states: StateStore,
        alerts: AlertPublisher,
        leases: LeaseKeeper,
        watches: Mapping[str, Watch],
        tracer: trace.Tracer,
        counters: Counters,
        first_poll_within_s: float = 5.0,
        clock: Clock = system_clock,
    ) -> None:
        self._publisher = publisher
        self._states = states
        self._alerts = alerts
        self._leases = leases
        self._watches = watches
        self._tracer = tracer
        self._counters = counters
        self._first_poll_within_s = first_poll_within_s
        self._clock = clock
        self._clients: list[OutboundClient] = []

    def __call__(self, source: Any, dynamic: bool) -> Runner:
        watch = self._watches.get(source.watch) if source.watch else None
        if isinstance(source, ReplaySourceSettings):
            return ReplaySource(
                source,
                publisher=self._publisher,
                states=self._states,
                tracer=self._tracer,
                counters=self._counters,
                watches=self._watches,
                lease=self._leases.lease(source.name),
                clock=self._clock,
            )
        if isinstance(source, WebhookSourceSettings):
            # Pushed posts reach whichever replica the sender's request lands on: every replica serves them.
            return PushedSource(
                source,
                publisher=self._publisher,
                watch=watch,
                tracer=self._tracer,
                counters=self._counters,
                clock=self._clock,
            )
        assert isinstance(source, HttpSourceSettings)
        http = OutboundClient(
            OutboundPolicy(tuple(source.allow_hosts)),
            limits=FetchLimits(max_bytes=source.max_body_bytes, timeout_s=source.timeout_s),
            clock=self._clock,
            metrics=self._counters.metrics,
        )
        self._clients.append(http)
        return SourceRunner(
            source,
            build_source(source),
            http=http,
            states=self._states,
            publisher=self._publisher,
            alerts=self._alerts,
            watch=watch,
            tracer=self._tracer,
            counters=self._counters,
            dynamic=dynamic,
            first_poll_within_s=self._first_poll_within_s,
            lease=self._leases.lease(source.name),
            clock=self._clock,
        )

    async def aclose(self) -> None:
        """Close every source's HTTP connections (on shutdown, once the sources stopped)."""
        for client in self._clients:
            await client.aclose()
