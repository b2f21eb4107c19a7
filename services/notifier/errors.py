"""Notifier errors, rooted in the shared tree."""

from __future__ import annotations

from services.shared.errors import ClamorError, PermanentError, TransientError


class NotifierError(ClamorError):
    """Base of the notifier's own errors."""


class ChannelError(TransientError, NotifierError):
    """A channel could not deliver now; the escalation is retried (after ``retry_after_s`` when set)."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ChannelConfigError(PermanentError, NotifierError):
    """The channel's service refused the request as wrong (bad token, unknown channel): fix the config."""
