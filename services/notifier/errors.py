"""Notifier errors, rooted in the shared tree."""

from __future__ import annotations

from services.shared.errors import ClamorError, PermanentError, TransientError


class NotifierError(ClamorError):
    """Base of the notifier's own errors."""


class ChannelError(TransientError, NotifierError):
    """A channel could not deliver now; the escalation is retried (after ``retry_after_s`` when set)."""


class ChannelConfigError(PermanentError, NotifierError):
    """The channel's service refused the request as wrong (bad token, unknown channel): fix the config."""
