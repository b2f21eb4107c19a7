"""Reputation errors, rooted in the shared tree."""

from __future__ import annotations

from services.shared.errors import ClamorError, TransientError


class ReputationError(ClamorError):
    """Base of the reputation service's own errors."""


class CountingOrderError(TransientError, ReputationError):
    """A batch came before posts another replica still holds; counted once those are, in stream order."""
