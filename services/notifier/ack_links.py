"""Signed, expiring acknowledgement links: whoever holds the link may acknowledge that one case.

A token is ``<payload>.<mac>``, both base64url without padding, so it sits in a URL path as is.
The payload is a version byte, the expiry (unix seconds, 8 bytes big-endian) and the case id in
UTF-8; the MAC is HMAC-SHA256 over a purpose label and the payload. The label keeps a secret
that is shared with another signer from turning this into a way to forge that signer's messages,
and the version byte lets the format change without old links being read the new way.

Nothing is stored: a link is valid until it expires or the secret changes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from datetime import datetime, timedelta

from services.notifier.errors import NotifierError

MAX_CASE_ID_CHARS = 200
VERSION = 1
_PURPOSE = b"clamor.ack-link\x00"
_EXPIRY_BYTES = 8
_MAC_BYTES = 32
# Above the longest honest token (200 four-byte characters, the header and the MAC in base64,
# about 1,120 characters); anything longer is refused before it is decoded.
MAX_TOKEN_CHARS = 2048


class AckLinkError(NotifierError, ValueError):
    """An acknowledgement token cannot be honoured."""


class AckLinkExpired(AckLinkError):  # noqa: N818 - reads as the state of a link, like AckLinkInvalid
    """The token is authentic but its time is over; it still names its case."""

    def __init__(self, case_id: str, expired_at: datetime) -> None:
        super().__init__(f"acknowledgement link for case {case_id!r} expired at {expired_at.isoformat()}")
        self.case_id = case_id
        self.expired_at = expired_at


class AckLinkInvalid(AckLinkError):  # noqa: N818 - reads as the state of a link
    """The token was not made by us with this secret: tampered, truncated, malformed or re-keyed."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    # Only the URL-safe alphabet: b64decode would otherwise skip stray characters silently.
    if not text or not all(c.isascii() and (c.isalnum() or c in "-_") for c in text):
        raise AckLinkInvalid("token is not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise AckLinkInvalid("token is not base64url") from exc
    # The decoder ignores a last character's spare bits; without this, one link would have several
    # spellings, and each would count as a different press.
    if _b64encode(data) != text:
        raise AckLinkInvalid("token is not in canonical base64url")
    return data


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now


class AckLinks:
    """Makes and checks the links that messages carry to acknowledge a case."""

    def __init__(self, *, secret: str, public_url: str, ttl_s: float) -> None:
        if not secret:
            raise ValueError("an acknowledgement link secret is required")
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._key = secret.encode()
        self._public_url = public_url.rstrip("/")
        self._ttl = timedelta(seconds=ttl_s)

    def token_for(self, case_id: str, *, now: datetime) -> str:
        if not case_id or len(case_id) > MAX_CASE_ID_CHARS:
            raise ValueError(f"case id must be 1 to {MAX_CASE_ID_CHARS} characters")
        # Rounded up, so a link never lives shorter than promised.
        expires = math.ceil((_aware(now) + self._ttl).timestamp())
        payload = bytes([VERSION]) + expires.to_bytes(_EXPIRY_BYTES, "big") + case_id.encode()
        return f"{_b64encode(payload)}.{_b64encode(self._mac(payload))}"

    def url_for(self, case_id: str, *, now: datetime) -> str:
        return f"{self._public_url}/ack/{self.token_for(case_id, now=now)}"

    def verify(self, token: str, *, now: datetime) -> str:
        """The case id the token was made for; AckLinkExpired or AckLinkInvalid otherwise."""
        if len(token) > MAX_TOKEN_CHARS:
            raise AckLinkInvalid("token is too long")
        encoded_payload, dot, encoded_mac = token.partition(".")
        if not dot:
            raise AckLinkInvalid("token has no signature")
        payload, mac = _b64decode(encoded_payload), _b64decode(encoded_mac)
        # The MAC is checked before anything in the payload is believed.
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise AckLinkInvalid("token signature does not match")
        if len(payload) <= 1 + _EXPIRY_BYTES or payload[0] != VERSION:
            raise AckLinkInvalid("token format is not known")
        expires = int.from_bytes(payload[1 : 1 + _EXPIRY_BYTES], "big")
        try:
            case_id = payload[1 + _EXPIRY_BYTES :].decode()
        except UnicodeDecodeError as exc:
            raise AckLinkInvalid("token case id is not UTF-8") from exc
        if len(case_id) > MAX_CASE_ID_CHARS:
            raise AckLinkInvalid("token case id is too long")
        if _aware(now).timestamp() >= expires:
            raise AckLinkExpired(case_id, datetime.fromtimestamp(expires, tz=now.tzinfo))
        return case_id

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, _PURPOSE + payload, hashlib.sha256).digest()
