"""Pages of a List RPC: ``page_size`` in, ``next_page_token`` out, the same rules for every service.

A page token is opaque to clients (they pass back what they were given) and names where the next
page starts: a stream sequence or a sort key, never an offset, so items added or removed between
two calls do not shift the pages. It is base64 so that nobody mistakes it for a number to compute.
"""

from __future__ import annotations

import base64
import binascii

from services.shared.errors import ClamorError


class InvalidPageError(ClamorError):
    """A negative page size, or a page token this service did not hand out."""


def page_size(requested: int, *, default: int, maximum: int) -> int:
    """The size a request asks for: 0 means ``default``; more than ``maximum`` is cut to it."""
    if requested < 0:
        raise InvalidPageError(f"page_size must be 0 (the default) or more, not {requested}")
    return min(requested or default, maximum)


def encode_token(cursor: str) -> str:
    """The token for a page that starts at ``cursor``."""
    return base64.urlsafe_b64encode(cursor.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    """The cursor in a token from :func:`encode_token`; empty for the first page."""
    if not token:
        return ""
    try:
        # validate: a character outside the alphabet is an error, not silently dropped.
        return base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidPageError("page_token is not one this service handed out") from exc


def decode_sequence(token: str) -> int:
    """A stream sequence cursor; 0 for the first page."""
    cursor = decode_token(token)
    if not cursor:
        return 0
    if not cursor.isdigit():
        raise InvalidPageError("page_token is not one this service handed out")
    return int(cursor)
