"""Triage errors, rooted in the shared tree."""

from __future__ import annotations

from services.shared.errors import ClamorError, PermanentError


class TriageError(ClamorError):
    """Base of triage's own errors."""


class UnclassifiableError(PermanentError, TriageError):
    """A mention that cannot be classified (no text): dead-lettered, not retried."""


class ModelError(TriageError):
    """The model directory is missing, unreadable or from another feature layout."""
