"""The Prometheus ``/metrics`` endpoint: the OpenTelemetry Prometheus reader on its own registry.

Its own registry (not prometheus_client's global one) so that several services in one process
(tests) never clash; the process collector adds memory, CPU and open files, which the sizing in
docs/deploy.md reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer


class MetricsServer:
    """Serves ``/metrics`` on ``host:port`` (0 picks a free port) from a background thread."""

    def __init__(self, host: str, port: int) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.reader = PrometheusMetricReader(registry=self.registry)
        self._server: WSGIServer
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.port: int = self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
