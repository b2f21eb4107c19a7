"""The ``notifier`` section of the config file."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

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


ChannelSettings = Annotated[ConsoleChannelSettings | FileChannelSettings, Field(discriminator="kind")]


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
