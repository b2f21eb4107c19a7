"""The ``reputation`` section of the config file."""

from __future__ import annotations

from pydantic import Field

from services.reputation.spikes import KeywordSettings, SpikeSettings
from services.shared.config import CommonConfig, GrpcSettings, Section


class ReputationSettings(Section):
    """Hourly counters, spike detection over them, and the reputation alerts it raises."""

    grpc: GrpcSettings = GrpcSettings(port=50075)
    # Spike detection and alerts; the counters (and GetTrends) work either way.
    enabled: bool = True
    # How often every watch is tested; the window itself is `spikes.window_s`.
    tick_s: float = Field(default=60.0, gt=0, le=3600)
    spikes: SpikeSettings = SpikeSettings()
    keywords: KeywordSettings = KeywordSettings()
    # Test each category of a watch on its own too: a surge in one category that the watch's total hides
    # (a wave of "tastes odd" on a busy brand). While the watch's own alert fires, its categories raise none.
    per_category: bool = True


class ReputationConfig(CommonConfig):
    reputation: ReputationSettings = Field(default_factory=dict, validate_default=True)
