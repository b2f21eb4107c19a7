"""Listener errors, rooted in the shared tree."""

from __future__ import annotations

from services.shared.errors import ClamorError, PermanentError, TransientError


class ListenerError(ClamorError):
    """Base of the listener's own errors."""


class MalformedPostError(PermanentError, ListenerError):
    """A post from a source cannot become a Mention; the message names the field."""


class SourceFormatError(PermanentError, ListenerError):
    """A source answered with a body that is not what its documented format promises."""


class ApiRefusedError(PermanentError, ListenerError):
    """A platform answered with an error of its own in the body (VK's ``error`` object) that asking again
    will not cure: a bad token, a bad parameter. The message names the source, the code and the setting."""


class ApiThrottledError(TransientError, ListenerError):
    """A platform said in the body, not the status, to slow down or that it failed for now;
    ``retry_after_s`` is how long to wait."""


class NotHolderError(ListenerError):
    """Another listener replica holds the source's lease and polls it; the message names that replica."""
