"""Signing and verifying webhooks per the Standard Webhooks spec (https://www.standardwebhooks.com/).

A signed request carries three headers: ``webhook-id`` (the message's id, the same on every
retry, so receivers can drop repeats), ``webhook-timestamp`` (unix seconds) and
``webhook-signature``: space-separated ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``,
one per secret. Several secrets let a key be rotated without downtime: the sender signs with
old and new, and a receiver accepts a request that any of its secrets signed.

Secrets are written ``whsec_<base64 of the key bytes>``; the bare base64 is accepted as well.
The timestamp binds the signature to a moment, so a captured request cannot be replayed once
it falls outside the tolerance (five minutes either way by default).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
from typing import TYPE_CHECKING

from services.shared.errors import PermanentError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

SECRET_PREFIX = "whsec_"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300
# The spec asks for keys of 24 to 64 random bytes.
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64


class WebhookVerificationError(PermanentError, ValueError):
    """The request is not one a holder of the secrets signed just now; the message says why.

    Still a ValueError, as callers written against the Standard Webhooks libraries expect.
    """


def new_secret(nbytes: int = 32) -> str:
    """A fresh ``whsec_`` secret of ``nbytes`` random bytes."""
    if not MIN_KEY_BYTES <= nbytes <= MAX_KEY_BYTES:
        raise ValueError(f"a webhook key has {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes, not {nbytes}")
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(nbytes)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The key bytes of ``whsec_<base64>`` (or bare base64); ValueError when it is not base64 or empty."""
    encoded = secret.strip().removeprefix(SECRET_PREFIX).rstrip("=")
    try:
        # Secrets are often written without their base64 padding.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"a webhook secret is {SECRET_PREFIX}<base64>; this one is not base64") from exc
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def _keys(secrets: Iterable[str]) -> list[bytes]:
    # A lone string is one secret, not a sequence of one-character secrets.
    return [secret_key(secrets)] if isinstance(secrets, str) else [secret_key(secret) for secret in secrets]


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``body`` under ``key``."""
    return f"{SIGNATURE_VERSION},{base64.b64encode(_digest(key, msg_id, timestamp, body)).decode('ascii')}"


def _offered(header: str) -> list[bytes]:
    """The v1 signatures in a ``webhook-signature`` header; other versions and garbage are skipped."""
    digests = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            digests.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return digests


def sign(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers for ``body``, with one signature per secret (all of them, for rotation)."""
    keys = _keys(secrets)
    if not keys:
        raise ValueError("signing needs at least one secret")
    if not msg_id or any(c.isspace() for c in msg_id):
        raise ValueError(f"a webhook id must be non-empty without whitespace: {msg_id!r}")
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: " ".join(signature(key, msg_id, timestamp, body) for key in keys),
    }


def verify(
    secrets: Iterable[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Return when any of ``secrets`` signed ``body`` within ``tolerance_s`` of ``now``; raise otherwise.

    ``headers`` may spell the names in any case. Signatures of versions other than v1 are
    skipped, as the spec asks, so a sender may add new schemes beside v1. Secrets that are
    not base64 raise a plain ValueError: that is the receiver's configuration, not the request.
    """
    keys = _keys(secrets)
    if not keys:
        raise ValueError("verifying needs at least one secret")
    lowered = {name.lower(): value for name, value in headers.items()}
    values: dict[str, str] = {}
    for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
        value = lowered.get(name, "").strip()
        if not value:
            raise WebhookVerificationError(f"missing {name} header")
        values[name] = value
    if not (values[TIMESTAMP_HEADER].isascii() and values[TIMESTAMP_HEADER].isdigit()):
        raise WebhookVerificationError(f"{TIMESTAMP_HEADER} is not unix seconds")
    timestamp = int(values[TIMESTAMP_HEADER])
    if now - timestamp > tolerance_s:
        raise WebhookVerificationError(f"{TIMESTAMP_HEADER} is stale: {now - timestamp:.0f}s old")
    if timestamp - now > tolerance_s:
        raise WebhookVerificationError(f"{TIMESTAMP_HEADER} is {timestamp - now:.0f}s in the future")
    offered = _offered(values[SIGNATURE_HEADER])
    for key in keys:
        expected = _digest(key, values[ID_HEADER], timestamp, body)
        # Constant-time comparison: how long a mismatch takes reveals nothing about the digest.
        if any(hmac.compare_digest(expected, digest) for digest in offered):
            return
    raise WebhookVerificationError("no matching signature")
