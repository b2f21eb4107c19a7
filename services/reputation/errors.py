"""Reputation errors, rooted in the shared tree."""

from __future__ import annotations

from services.shared.errors import ClamorError, TransientError


class ReputationError(ClamorError):
    """Base of the reputation service's own errors."""


class IndexUnavailableError(TransientError, ReputationError):
    """The router's mention → case index could not be read now; the tick tries again."""


class CountingOrderError(TransientError, ReputationError):
    """A batch came before posts another replica still holds; counted once those are, in stream order."""
