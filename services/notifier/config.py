"""The ``notifier`` section of the config file."""

from __future__ import annotations

from datetime import time
from typing import Annotated, Literal

from pydantic import Field, model_validator

from services.shared.config import CommonConfig, GrpcSettings, RelativePath, Section, TimeZoneName

CHANNEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"

# What a group key may be made of (Alertmanager's group_by, over a notification's fields).
GroupField = Literal["kind", "team", "severity", "case", "topic"]


def _default_group_by() -> list[GroupField]:
    return ["kind", "team", "severity"]


class GroupingSettings(Section):
    """Alertmanager's noise control: what is sent together, and how often.

    The first item of a new group waits ``group_wait_s`` for company; later items wait until
    ``group_interval_s`` after the group's last message. An item already sent unchanged is not
    sent again within ``repeat_interval_s``.
    """

    group_by: list[GroupField] = Field(default_factory=_default_group_by)
    group_wait_s: float = Field(default=30.0, ge=0, le=3600)
    group_interval_s: float = Field(default=300.0, ge=0, le=24 * 3600)
    repeat_interval_s: float = Field(default=4 * 3600.0, ge=60, le=7 * 24 * 3600)
    # Items per message; a larger group is sent as several messages, each within the rate budget.
    max_items_per_message: int = Field(default=25, ge=1, le=200)


class QuietHours(Section):
    """A recipient's night: non-CRITICAL messages are held until it ends, then sent (never dropped)."""

    start: time
    end: time
    timezone: TimeZoneName = "UTC"

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end are equal: the quiet hours would be empty")
        return self


class ChannelCommonSettings(Section):
    """What every channel has: a name, quiet hours, a rate budget, optional grouping of its own."""

    name: str = Field(pattern=CHANNEL_NAME_PATTERN)
    quiet_hours: QuietHours | None = None
    # Messages per second this channel may send (a token bucket); unset takes the kind's default.
    rate_per_s: float | None = Field(default=None, gt=0, le=1000)
    # Messages that may go at once after a quiet spell.
    burst: int = Field(default=1, ge=1, le=100)
    # Overrides the notifier-wide grouping for this channel.
    grouping: GroupingSettings | None = None


class ConsoleChannelSettings(ChannelCommonSettings):
    """Prints one line per notification on the notifier's standard output."""

    kind: Literal["console"]


class FileChannelSettings(ChannelCommonSettings):
    """Appends one JSON line per notification, idempotent on notification id."""

    kind: Literal["file"]
    path: RelativePath


class HttpChannelSettings(ChannelCommonSettings):
    """Channels that call an HTTP API, through the SSRF-guarded outbound client."""

    # Hosts, IPs or CIDRs this channel may reach although they are private or loopback.
    allow_hosts: list[str] = Field(default_factory=list)
    timeout_s: float = Field(default=10.0, gt=0, le=120)


class SlackChannelSettings(HttpChannelSettings):
    """Slack: an incoming webhook URL, or chat.postMessage with a bot token and a channel id."""

    kind: Literal["slack"]
    webhook_url: str = ""
    token: str = ""
    channel: str = ""
    api_base_url: str = "https://slack.com/api"


class TeamsChannelSettings(HttpChannelSettings):
    """Microsoft Teams: a Workflows webhook that posts an Adaptive Card."""

    kind: Literal["teams"]
    webhook_url: str


class EmailChannelSettings(ChannelCommonSettings):
    """E-mail over SMTP, STARTTLS by default, with HTML and plain-text parts."""

    kind: Literal["email"]
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    # STARTTLS on a submission port (587), or TLS from the first byte (implicit_tls, port 465).
    starttls: bool = True
    implicit_tls: bool = False
    username: str = ""
    password: str = ""
    sender: str
    recipients: list[str] = Field(min_length=1)
    # A CA bundle to trust for the server's certificate (private CAs); the system store otherwise.
    ca_file: RelativePath | None = None
    timeout_s: float = Field(default=20.0, gt=0, le=120)

    @model_validator(mode="after")
    def _password_only_over_tls(self) -> EmailChannelSettings:
        if self.starttls and self.implicit_tls:
            raise ValueError("choose one of starttls and implicit_tls")
        if self.username and not (self.starttls or self.implicit_tls):
            raise ValueError("a login needs starttls or implicit_tls: the password would cross the network in clear")
        return self


class SmsChannelSettings(HttpChannelSettings):
    """SMS through the Twilio Messages API."""

    kind: Literal["sms"]
    account_sid: str
    auth_token: str
    from_number: str
    to_numbers: list[str] = Field(min_length=1)
    api_base_url: str = "https://api.twilio.com"


class DingTalkChannelSettings(HttpChannelSettings):
    """A DingTalk group robot; with ``secret`` set, requests use the signed-timestamp mode."""

    kind: Literal["dingtalk"]
    webhook_url: str
    secret: str = ""


class PagerDutyChannelSettings(HttpChannelSettings):
    """PagerDuty Events API v2: trigger, acknowledge and resolve, one incident per case (dedup_key)."""

    kind: Literal["pagerduty"]
    routing_key: str
    api_base_url: str = "https://events.pagerduty.com"
    source: str = "clamor"


class WebhookChannelSettings(HttpChannelSettings):
    """Any HTTP endpoint: a CloudEvents 1.0 JSON body signed per the Standard Webhooks spec."""

    kind: Literal["webhook"]
    url: str
    # "whsec_<base64>" secrets; several allow rotation (each signs, receivers accept any).
    secrets: list[str] = Field(min_length=1)


ChannelSettings = Annotated[
    ConsoleChannelSettings
    | FileChannelSettings
    | SlackChannelSettings
    | TeamsChannelSettings
    | EmailChannelSettings
    | SmsChannelSettings
    | DingTalkChannelSettings
    | PagerDutyChannelSettings
    | WebhookChannelSettings,
    Field(discriminator="kind"),
]


# Messages per second by channel kind, from each service's documented limits: Slack posts about
# one message per second per channel, Twilio long codes send one SMS per second, a DingTalk robot
# takes 20 messages a minute, PagerDuty throttles an integration key at about 2 events a second.
DEFAULT_RATE_PER_S: dict[str, float] = {
    "console": 1000.0,
    "file": 1000.0,
    "slack": 1.0,
    "teams": 1.0,
    "email": 5.0,
    "sms": 1.0,
    "dingtalk": 20 / 60,
    "pagerduty": 2.0,
    "webhook": 10.0,
}


def rate_per_s(channel: ChannelSettings) -> float:
    return channel.rate_per_s or DEFAULT_RATE_PER_S[channel.kind]


def _console_only() -> list[ChannelSettings]:
    return [ConsoleChannelSettings(kind="console", name="console")]


class PolicyStep(Section):
    """One rung of an escalation policy: who hears, and how long they have to acknowledge."""

    notify: list[str] = Field(min_length=1)
    # Without an acknowledgement within this time, the next step is notified.
    timeout_s: float = Field(default=600.0, gt=0, le=7 * 24 * 3600)


class EscalationPolicy(Section):
    """Who is told about an escalation, and who next when nobody acknowledges (on-call → lead → manager)."""

    name: str = Field(pattern=CHANNEL_NAME_PATTERN)
    # Escalation teams this policy serves; empty serves every team no other policy names.
    teams: list[str] = Field(default_factory=list)
    steps: list[PolicyStep] = Field(min_length=1)
    # How many more times the whole ladder runs after its last step: the loop limit.
    repeat: int = Field(default=0, ge=0, le=10)


class AckSettings(Section):
    """The acknowledgement endpoint: signed, expiring links in messages, and PagerDuty's webhooks."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8074, ge=0, le=65535)
    # How responders reach the endpoint, e.g. https://clamor.example.com; links start with it.
    public_url: str = ""
    # Signs acknowledgement links; use a ${ENV} reference. Rotating it invalidates links already sent.
    secret: str = ""
    link_ttl_s: float = Field(default=7 * 24 * 3600.0, ge=60, le=90 * 24 * 3600)
    # Signing secrets of PagerDuty V3 webhook subscriptions; several allow rotation.
    pagerduty_webhook_secrets: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> AckSettings:
        if not self.enabled:
            return self
        if not self.public_url.startswith("https://"):
            # Channels link only to https URLs (a link is the one thing a hostile post cannot forge).
            raise ValueError("public_url must be the endpoint's https address when acknowledgement is enabled")
        if len(self.secret) < 16:
            raise ValueError("secret must be at least 16 characters when acknowledgement is enabled")
        return self


class NotifierSettings(Section):
    grpc: GrpcSettings = GrpcSettings(port=50074)
    channels: list[ChannelSettings] = Field(default_factory=_console_only)
    # Escalation policies; without any, every escalation goes to every channel, with no re-escalation.
    policies: list[EscalationPolicy] = Field(default_factory=list)
    # Channels that receive alerts (reputation, source health); empty sends them to every channel.
    alert_channels: list[str] = Field(default_factory=list)
    grouping: GroupingSettings = GroupingSettings()
    ack: AckSettings = AckSettings()
    # Characters of post text quoted in a notification.
    quote_chars: int = Field(default=280, ge=20, le=4000)
    # How often due groups and unanswered steps are looked at.
    tick_s: float = Field(default=1.0, gt=0, le=60)

    @model_validator(mode="after")
    def _names_resolve(self) -> NotifierSettings:
        names = [channel.name for channel in self.channels]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"channel names must be unique: {', '.join(duplicates)}")
        policy_names = [policy.name for policy in self.policies]
        if len(set(policy_names)) != len(policy_names):
            raise ValueError("policy names must be unique")
        known = set(names)
        for policy in self.policies:
            for number, step in enumerate(policy.steps, start=1):
                unknown = [name for name in step.notify if name not in known]
                if unknown:
                    raise ValueError(f"policy {policy.name!r} step {number} names unknown channels: {unknown}")
        for channel in self.channels:
            if channel.kind == "pagerduty" and channel.grouping is not None and "case" not in channel.grouping.group_by:
                # Acknowledging finds a case's incident by its dedup_key: one incident must hold one case.
                raise ValueError(f"channel {channel.name!r}: a pagerduty channel's grouping.group_by must include case")
        unknown = [name for name in self.alert_channels if name not in known]
        if unknown:
            raise ValueError(f"alert_channels names unknown channels: {unknown}")
        return self

    def grouping_for(self, channel: ChannelSettings) -> GroupingSettings:
        if channel.grouping is not None:
            return channel.grouping
        if channel.kind == "pagerduty":
            # One PagerDuty incident per case (its dedup_key), so an acknowledgement finds its incident.
            return self.grouping.model_copy(update={"group_by": ["case"]})
        return self.grouping


class NotifierConfig(CommonConfig):
    notifier: NotifierSettings = Field(default_factory=dict, validate_default=True)
