"""Listener errors, rooted in the shared tree."""

from __future__ import annotations

from services.shared.errors import ClamorError, PermanentError


class ListenerError(ClamorError):
    """Base of the listener's own errors."""


class MalformedPostError(PermanentError, ListenerError):
    """A post from a source cannot become a Mention; the message names the field."""


class SourceFormatError(PermanentError, ListenerError):
    """A source answered with a body that is not what its documented format promises."""


class NotHolderError(ListenerError):
    """Another listener replica holds the source's lease and polls it; the message names that replica."""
