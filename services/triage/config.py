"""The ``triage`` section of the config file."""

from __future__ import annotations

from pydantic import Field

from services.shared.config import CommonConfig, GrpcSettings, Section


class TriageSettings(Section):
    grpc: GrpcSettings = GrpcSettings(port=50072)
    # Messages fetched and classified together; larger batches amortise model calls.
    batch_size: int = Field(default=32, ge=1, le=1024)
    # How long a fetch waits to fill a batch before classifying what it has.
    batch_wait_ms: int = Field(default=200, ge=10, le=60_000)
    # Complaint score at or above which the verdict is COMPLAINT.
    threshold: float = Field(default=0.5, gt=0, lt=1)
    # Followers from which reach alone raises severity one step, and two steps.
    reach_medium: int = Field(default=5_000, ge=0)
    reach_high: int = Field(default=100_000, ge=0)


class TriageConfig(CommonConfig):
    triage: TriageSettings = Field(default_factory=dict, validate_default=True)
