"""Which OTLP exporter each signal gets: the ``OTEL_*`` variables as the specification reads them.

The config file's ``telemetry`` section gives defaults; the environment wins, as the OpenTelemetry
SDK configuration specification says, so a platform team can point every service at its collector
with ``OTEL_EXPORTER_OTLP_ENDPOINT`` alone. Pure: reads the mapping it is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.shared.config import TelemetrySettings

GRPC = "grpc"
HTTP = "http/protobuf"
# The specification's defaults, used when an exporter is asked for by OTEL_<SIGNAL>_EXPORTER=otlp
# and no endpoint is named anywhere.
DEFAULT_ENDPOINTS = {GRPC: "http://localhost:4317", HTTP: "http://localhost:4318"}


class Signal(StrEnum):
    TRACES = "traces"
    METRICS = "metrics"
    LOGS = "logs"


@dataclass(frozen=True)
class OtlpTarget:
    protocol: str
    endpoint: str


def _first(env: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return ""


def sdk_disabled(env: Mapping[str, str]) -> bool:
    return env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def otlp_target(signal: Signal, settings: TelemetrySettings, env: Mapping[str, str]) -> OtlpTarget | None:
    """The OTLP exporter for ``signal``, or None when nothing asks for one."""
    if sdk_disabled(env):
        return None
    upper = signal.value.upper()
    chosen = env.get(f"OTEL_{upper}_EXPORTER", "").strip().lower()
    if chosen:
        # A comma-separated list (spec): "none" alone disables; "otlp" anywhere enables.
        exporters = {part.strip() for part in chosen.split(",")}
        if "otlp" not in exporters:
            return None
    elif signal is Signal.LOGS and not settings.otlp_logs:
        # Logs go to standard output by default; OTLP only when asked (config or environment).
        return None
    protocol = _first(env, f"OTEL_EXPORTER_OTLP_{upper}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = protocol or settings.otlp_protocol
    if protocol not in (GRPC, HTTP):
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: Clamor supports {GRPC} and {HTTP}")
    own = _first(env, f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT")
    if own:
        # A per-signal endpoint is used as it is (the specification).
        return OtlpTarget(protocol, own)
    shared = _first(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
    if shared:
        return OtlpTarget(protocol, _signal_url(shared, protocol, signal))
    if settings.otlp_endpoint:
        return OtlpTarget(protocol, _signal_url(settings.otlp_endpoint, protocol, signal))
    if chosen:
        return OtlpTarget(protocol, _signal_url(DEFAULT_ENDPOINTS[protocol], protocol, signal))
    return None


def _signal_url(base: str, protocol: str, signal: Signal) -> str:
    if protocol == GRPC:
        return base
    # Over HTTP a base endpoint gets the signal's path, as the environment variable would.
    return f"{base.rstrip('/')}/v1/{signal.value}"
