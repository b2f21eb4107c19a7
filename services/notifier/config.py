"""The ``notifier`` section of the config file."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from services.shared.config import CommonConfig, GrpcSettings, RelativePath, Section

CHANNEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class ConsoleChannelSettings(Section):
    """Prints one line per notification on the notifier's standard output."""

    kind: Literal["console"]
    name: str = Field(pattern=CHANNEL_NAME_PATTERN)


class FileChannelSettings(Section):
    """Appends one JSON line per notification, idempotent on notification id."""

    kind: Literal["file"]
    name: str = Field(pattern=CHANNEL_NAME_PATTERN)
    path: RelativePath


class HttpChannelSettings(Section):
    """Channels that call an HTTP API, through the SSRF-guarded outbound client."""

    name: str = Field(pattern=CHANNEL_NAME_PATTERN)
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


class EmailChannelSettings(Section):
    """E-mail over SMTP, STARTTLS by default, with HTML and plain-text parts."""

    kind: Literal["email"]
    name: str = Field(pattern=CHANNEL_NAME_PATTERN)
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


def _console_only() -> list[ChannelSettings]:
    return [ConsoleChannelSettings(kind="console", name="console")]


class NotifierSettings(Section):
    grpc: GrpcSettings = GrpcSettings(port=50074)
    channels: list[ChannelSettings] = Field(default_factory=_console_only)
    # Characters of post text quoted in a notification.
    quote_chars: int = Field(default=280, ge=20, le=4000)
    # Notifications kept in memory for ListNotifications.
    log_size: int = Field(default=1000, ge=10, le=100_000)


class NotifierConfig(CommonConfig):
    notifier: NotifierSettings = Field(default_factory=dict, validate_default=True)
