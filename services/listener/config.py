"""The ``listener`` section of the config file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.shared.config import CommonConfig, GrpcSettings, RelativePath, Section

SOURCE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class ReplaySourceSettings(Section):
    """Publishes posts from a JSON-lines file at a set rate (demos, load tests, backfills)."""

    kind: Literal["replay"] = "replay"
    # Lowercase letters, digits, '-' and '_': the name is part of mention ids and KV keys.
    name: str = Field(pattern=SOURCE_NAME_PATTERN)
    path: RelativePath
    rate_per_second: float = Field(default=20.0, gt=0, le=10_000)
    # Watch to tag posts with; empty keeps each post's own "watch" field.
    watch: str = ""


class ListenerSettings(Section):
    grpc: GrpcSettings = GrpcSettings(port=50071)
    sources: list[ReplaySourceSettings] = Field(default_factory=list)


class ListenerConfig(CommonConfig):
    listener: ListenerSettings = Field(default_factory=dict, validate_default=True)
