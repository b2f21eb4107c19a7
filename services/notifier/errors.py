"""Notifier errors, rooted in the shared tree."""

from __future__ import annotations

from services.shared.errors import ClamorError, TransientError


class NotifierError(ClamorError):
    """Base of the notifier's own errors."""


class ChannelError(TransientError, NotifierError):
    """A channel could not deliver now; the escalation is retried."""
