"""The ``router`` section of the config file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from services.router.delivery.destinations.settings import NAME_PATTERN, HttpDestinationSettings
from services.router.rules import TEAM_PATTERN, Rule, SeverityName, check_references
from services.router.sla import SlaPolicy
from services.shared.config import CommonConfig, GrpcSettings, RelativePath, Section

OUTBOX = "outbox"
DAY_S = 24 * 3600.0


class OutboxSettings(Section):
    """Append-only JSON lines, one line per case and one per update: the local stand-in for a CRM."""

    path: RelativePath = Field(default=Path("outbox.jsonl"), validate_default=True)
    # How long a delivery to the outbox is retried (a full disk) before it is dead-lettered.
    retry_for_s: float = Field(default=DAY_S, gt=0)


class NatsDestinationSettings(Section):
    """Cases published to ``clamor.routed.<name>`` for a CRM that consumes the stream itself."""

    kind: Literal["nats"]
    name: str = Field(pattern=NAME_PATTERN)
    rate_per_s: float = Field(default=500.0, gt=0, le=100_000)
    burst: int = Field(default=50, ge=1, le=10_000)
    retry_for_s: float = Field(default=DAY_S, gt=0)


DestinationSettings = Annotated[HttpDestinationSettings | NatsDestinationSettings, Field(discriminator="kind")]


class GroupingSettings(Section):
    """How posts become one case: one customer's posts on one watch, or one thread."""

    by_author: bool = True
    by_thread: bool = True
    # A post joins an open case whose last post is at most this old (a sliding window).
    window_s: float = Field(default=DAY_S, gt=0, le=30 * DAY_S)
    # A case holds at most this many posts; later ones start a new case.
    max_posts: int = Field(default=50, ge=1, le=1000)


class DeliverySettings(Section):
    """The delivery worker: retries with jittered exponential backoff, bounded by each destination's period."""

    first_retry_s: float = Field(default=2.0, gt=0)
    max_retry_s: float = Field(default=600.0, gt=0)
    # Redelivery of a delivery held by a crashed router; in_progress heartbeats keep slow ones alive.
    ack_wait_s: float = Field(default=30.0, ge=1, le=600)
    concurrency: int = Field(default=8, ge=1, le=256)

    @model_validator(mode="after")
    def _ordered(self) -> DeliverySettings:
        if self.max_retry_s < self.first_retry_s:
            raise ValueError("max_retry_s must be at least first_retry_s")
        return self


class CallbackSettings(Section):
    """An HTTP endpoint where a CRM that can only call webhooks acknowledges or resolves cases."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    # Standard Webhooks secrets ("whsec_…"); several while a secret is being rotated.
    secrets: list[str] = Field(default_factory=list)
    # Signatures older or newer than this are refused (replays).
    tolerance_s: float = Field(default=300.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _secret_when_enabled(self) -> CallbackSettings:
        if self.enabled and not self.secrets:
            raise ValueError("an enabled callback endpoint needs at least one secret (Standard Webhooks, whsec_…)")
        return self


class RouterSettings(Section):
    grpc: GrpcSettings = GrpcSettings(port=50073)
    # Validated from {} so the default path resolves against the config file's folder.
    outbox: OutboxSettings = Field(default_factory=dict, validate_default=True)
    # Team that owns new cases when no rule names one.
    team: str = Field(default="care", pattern=TEAM_PATTERN)
    # Where complaints go when no rule names a destination ("outbox", or a configured destination).
    default_destinations: list[str] = Field(default_factory=lambda: [OUTBOX])
    default_priority: Literal["urgent", "high", "normal", "low"] = "normal"
    # SLA policy of cases no rule gives one ("" for none).
    default_sla: str = ""
    # Cases at or above this severity are escalated at once to `escalation_team` (hierarchical escalation).
    escalate_at: SeverityName = "HIGH"
    escalation_team: str = Field(default="escalations", pattern=TEAM_PATTERN)
    rules: list[Rule] = Field(default_factory=list)
    sla_policies: list[SlaPolicy] = Field(default_factory=list)
    destinations: list[DestinationSettings] = Field(default_factory=list)
    grouping: GroupingSettings = GroupingSettings()
    delivery: DeliverySettings = DeliverySettings()
    callback: CallbackSettings = CallbackSettings()
    # The triage service, told about "not a complaint" answers through its Feedback RPC ("" to skip).
    triage_address: str = "127.0.0.1:50072"
    # Complaints placed at once (a batch of the router's consumer).
    concurrency: int = Field(default=16, ge=1, le=256)
    # How often SLA clocks are checked.
    tick_s: float = Field(default=1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _references(self) -> RouterSettings:
        names = [d.name for d in self.destinations]
        if OUTBOX in names:
            raise ValueError(f"destinations: {OUTBOX!r} is built in; give yours another name")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"destinations: names must be unique, repeated: {', '.join(duplicates)}")
        known = {OUTBOX, *names}
        unknown = [d for d in self.default_destinations if d not in known]
        if unknown:
            raise ValueError(f"default_destinations: unknown {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        policies = [p.name for p in self.sla_policies]
        if self.default_sla and self.default_sla not in policies:
            raise ValueError(f"default_sla: no SLA policy named {self.default_sla!r}")
        problems = check_references(self.rules, destinations=known, sla_policies=policies)
        if problems:
            raise ValueError("rules: " + "; ".join(str(p) for p in problems))
        return self

    def retry_for_s(self, destination: str) -> float:
        if destination == OUTBOX:
            return self.outbox.retry_for_s
        return next((d.retry_for_s for d in self.destinations if d.name == destination), DAY_S)


class RouterConfig(CommonConfig):
    router: RouterSettings = Field(default_factory=dict, validate_default=True)
