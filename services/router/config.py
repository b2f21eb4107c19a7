"""The ``router`` section of the config file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from services.shared.config import CommonConfig, GrpcSettings, RelativePath, Section

SeverityName = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
TEAM_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class OutboxSettings(Section):
    """Append-only JSON lines, one line per case: the local stand-in for a CRM."""

    path: RelativePath = Field(default=Path("outbox.jsonl"), validate_default=True)


class RouterSettings(Section):
    grpc: GrpcSettings = GrpcSettings(port=50073)
    # Validated from {} so the default path resolves against the config file's folder.
    outbox: OutboxSettings = Field(default_factory=dict, validate_default=True)
    # Team that owns new cases.
    team: str = Field(default="care", pattern=TEAM_PATTERN)
    # Cases at or above this severity are escalated at once to `escalation_team`.
    escalate_at: SeverityName = "HIGH"
    escalation_team: str = Field(default="escalations", pattern=TEAM_PATTERN)


class RouterConfig(CommonConfig):
    router: RouterSettings = Field(default_factory=dict, validate_default=True)
