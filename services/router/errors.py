"""Router errors, rooted in the shared tree."""

from __future__ import annotations

from services.shared.errors import ClamorError, PermanentError, TransientError


class RouterError(ClamorError):
    """Base of the router's own errors."""


class DestinationError(TransientError, RouterError):
    """A destination could not take a case now; the complaint is retried."""


class CaseConflictError(TransientError, RouterError):
    """Another replica changed the case first; retrying re-reads it."""


class CaseNotYetError(TransientError, RouterError):
    """A brand's reply came before its thread's case was written (both arrived together); it looks again."""


class PageTokenError(PermanentError, RouterError):
    """A page token this router did not hand out: the caller's mistake, not worth a retry."""
