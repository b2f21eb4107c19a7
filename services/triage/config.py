"""The ``triage`` section of the config file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from services.shared.config import CommonConfig, GrpcSettings, RelativePath, Section


class CategorySettings(Section):
    """A complaint category added by description and example phrases, without retraining the model."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    description: str = ""
    examples: list[str] = Field(min_length=2)
    # Cosine similarity (0–1) from which a complaint goes to this category rather than the model's;
    # unset: the encoder's own default (0.9 for e5-small, whose cosines are compressed).
    min_similarity: float | None = Field(default=None, gt=0, lt=1)


class TriageSettings(Section):
    grpc: GrpcSettings = GrpcSettings(port=50072)
    # Messages fetched and classified together; larger batches amortise model calls.
    batch_size: int = Field(default=64, ge=1, le=1024)
    # How long a fetch waits to fill a batch before classifying what it has.
    batch_wait_ms: int = Field(default=200, ge=10, le=60_000)
    # "model": the trained model (MiniLM + heads) with the risk rules beside it; "rules": the rules alone.
    classifier: Literal["model", "rules"] = "model"
    # A directory written by `clamor triage train`; empty uses the model shipped with Clamor.
    model_dir: RelativePath | None = None
    # int8 dynamic quantization of the encoder's linear layers (see docs/triage-model.md for the trade-off).
    quantize: bool = False
    # Torch threads for inference; 0 lets torch choose (one per core).
    threads: int = Field(default=0, ge=0, le=64)
    # Complaint score at or above which the verdict is COMPLAINT; unset takes the model's own.
    threshold: float | None = Field(default=None, gt=0, lt=1)
    # Categories added by example phrases (e.g. a product recall); the model's nine stay as they are.
    categories: list[CategorySettings] = Field(default_factory=list)
    # Corrected labels from the Feedback RPC, one JSON line each, for `clamor triage train --data`.
    feedback_path: RelativePath = Path("triage-feedback.jsonl")
    # Followers from which reach alone raises severity one step, and two steps.
    reach_medium: int = Field(default=5_000, ge=0)
    reach_high: int = Field(default=100_000, ge=0)


class TriageConfig(CommonConfig):
    triage: TriageSettings = Field(default_factory=dict, validate_default=True)
