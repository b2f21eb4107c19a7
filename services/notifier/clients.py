"""Every outbound call the notifier makes: its channels."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Protocol, TextIO

from google.protobuf.json_format import MessageToDict

from services.notifier.config import ChannelSettings, ConsoleChannelSettings
from services.notifier.errors import ChannelError
from services.shared.jsonl import IdempotentJsonlFile

if TYPE_CHECKING:
    from pathlib import Path

    from clamor.v1 import notification_pb2


class Channel(Protocol):
    name: str

    def send(self, notification: notification_pb2.Notification) -> bool:
        """Deliver; returns False when this notification id was delivered before."""


class ConsoleChannel:
    def __init__(self, name: str, stream: TextIO | None = None) -> None:
        self.name = name
        self._stream = stream or sys.stdout

    def send(self, notification: notification_pb2.Notification) -> bool:
        body = "\n".join(f"    {line}" for line in notification.body.splitlines())
        self._stream.write(f"{notification.title}\n{body}\n")
        self._stream.flush()
        return True


class FileChannel:
    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self._file = IdempotentJsonlFile(path)

    def send(self, notification: notification_pb2.Notification) -> bool:
        record = MessageToDict(notification, preserving_proto_field_name=True)
        try:
            return self._file.append(record)
        except OSError as exc:
            raise ChannelError(f"file channel {self.name}: {exc.strerror or exc}") from exc


def build_channel(settings: ChannelSettings) -> Channel:
    if isinstance(settings, ConsoleChannelSettings):
        return ConsoleChannel(settings.name)
    return FileChannel(settings.name, settings.path)
