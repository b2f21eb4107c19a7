"""Standard Webhooks signing and verification, checked against HMACs computed here by hand."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

import pytest

from services.shared.standard_webhooks import (
    WebhookVerificationError,
    new_secret,
    secret_key,
    sign,
    verify,
)

OLD_KEY = bytes(range(32))
NEW_KEY = bytes(range(100, 132))
OLD_SECRET = "whsec_" + base64.b64encode(OLD_KEY).decode()
NEW_SECRET = "whsec_" + base64.b64encode(NEW_KEY).decode()
MSG_ID = "msg_2hBq0vJm7Xk"
TIMESTAMP = 1_772_366_400
BODY = b'{"type":"io.clamor.notification.escalation","data":{"text":"caf\xc3\xa9"}}'


def by_hand(key: bytes, msg_id: str = MSG_ID, timestamp: int = TIMESTAMP, body: bytes = BODY) -> str:
    digest = hmac.new(key, msg_id.encode() + b"." + str(timestamp).encode() + b"." + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers_signed_by(*keys: bytes, body: bytes = BODY) -> dict[str, str]:
    return {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TIMESTAMP),
        "webhook-signature": " ".join(by_hand(key, body=body) for key in keys),
    }


def test_sign_gives_id_timestamp_and_a_v1_hmac_of_id_timestamp_and_body() -> None:
    assert sign([OLD_SECRET], MSG_ID, TIMESTAMP, BODY) == headers_signed_by(OLD_KEY)


def test_sign_signs_with_every_secret_so_receivers_holding_either_accept() -> None:
    assert sign([OLD_SECRET, NEW_SECRET], MSG_ID, TIMESTAMP, BODY) == headers_signed_by(OLD_KEY, NEW_KEY)


def test_sign_accepts_bare_and_unpadded_base64_secrets() -> None:
    key = b"k" * 25  # 25 bytes: base64 with padding, which the bare form drops.
    bare = base64.b64encode(key).decode().rstrip("=")
    assert sign([bare], MSG_ID, TIMESTAMP, BODY)["webhook-signature"] == by_hand(key)


def test_sign_matches_the_specs_published_vector() -> None:
    headers = sign(
        ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign_refuses_an_id_with_whitespace() -> None:
    with pytest.raises(ValueError, match="webhook id"):
        sign([OLD_SECRET], "msg 1", TIMESTAMP, BODY)


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_", ""])
def test_a_secret_that_is_not_base64_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="secret") as caught:
        secret_key(secret)
    assert not isinstance(caught.value, WebhookVerificationError)


def test_new_secret_is_whsec_with_a_key_of_the_asked_length() -> None:
    secret = new_secret(32)
    assert secret.startswith("whsec_")
    assert len(secret_key(secret)) == 32


def test_verify_accepts_a_valid_signature() -> None:
    verify([OLD_SECRET], headers_signed_by(OLD_KEY), BODY, now=TIMESTAMP + 10)


def test_verify_accepts_a_request_signed_only_by_the_rotated_in_secret() -> None:
    verify([OLD_SECRET, NEW_SECRET], headers_signed_by(NEW_KEY), BODY, now=TIMESTAMP)


def test_verify_accepts_the_new_secret_among_old_and_new_signatures() -> None:
    verify([NEW_SECRET], headers_signed_by(OLD_KEY, NEW_KEY), BODY, now=TIMESTAMP)


def test_verify_rejects_a_tampered_body() -> None:
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify([OLD_SECRET], headers_signed_by(OLD_KEY), BODY.replace(b"caf", b"cab"), now=TIMESTAMP)


def test_verify_rejects_a_signature_by_an_unknown_secret() -> None:
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify([NEW_SECRET], headers_signed_by(OLD_KEY), BODY, now=TIMESTAMP)


def test_verify_rejects_a_stale_timestamp() -> None:
    with pytest.raises(WebhookVerificationError, match="stale"):
        verify([OLD_SECRET], headers_signed_by(OLD_KEY), BODY, now=TIMESTAMP + 301)


def test_verify_accepts_a_timestamp_at_the_edge_of_the_tolerance() -> None:
    verify([OLD_SECRET], headers_signed_by(OLD_KEY), BODY, now=TIMESTAMP + 300)


def test_verify_rejects_a_timestamp_in_the_future() -> None:
    with pytest.raises(WebhookVerificationError, match="future"):
        verify([OLD_SECRET], headers_signed_by(OLD_KEY), BODY, now=TIMESTAMP - 301)


def test_verify_honours_a_custom_tolerance() -> None:
    with pytest.raises(WebhookVerificationError, match="stale"):
        verify([OLD_SECRET], headers_signed_by(OLD_KEY), BODY, now=TIMESTAMP + 31, tolerance_s=30)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_names_a_missing_header(missing: str) -> None:
    headers = headers_signed_by(OLD_KEY)
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match=f"missing {missing} header"):
        verify([OLD_SECRET], headers, BODY, now=TIMESTAMP)


@pytest.mark.parametrize("timestamp", ["soon", "1_772_366_400", "-1772366400", "1772366400.5"])
def test_verify_rejects_a_timestamp_that_is_not_unix_seconds(timestamp: str) -> None:
    headers = headers_signed_by(OLD_KEY) | {"webhook-timestamp": timestamp}
    with pytest.raises(WebhookVerificationError, match="not unix seconds"):
        verify([OLD_SECRET], headers, BODY, now=TIMESTAMP)


@pytest.mark.parametrize("spell", [str.upper, str.title], ids=["upper", "title"])
def test_verify_finds_headers_whatever_their_case(spell: Callable[[str], str]) -> None:
    headers = {spell(name): value for name, value in headers_signed_by(OLD_KEY).items()}
    verify([OLD_SECRET], headers, BODY, now=TIMESTAMP)


def test_verify_skips_other_versions_and_malformed_entries() -> None:
    valid = by_hand(OLD_KEY)
    headers = headers_signed_by(OLD_KEY) | {"webhook-signature": f"v1a,{valid[3:]} junk v1,%%% {valid}"}
    verify([OLD_SECRET], headers, BODY, now=TIMESTAMP)


def test_verify_does_not_accept_a_valid_digest_under_another_version() -> None:
    headers = headers_signed_by(OLD_KEY) | {"webhook-signature": "v2," + by_hand(OLD_KEY)[3:]}
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify([OLD_SECRET], headers, BODY, now=TIMESTAMP)


def test_verify_round_trips_with_sign() -> None:
    verify([NEW_SECRET], sign([OLD_SECRET, NEW_SECRET], MSG_ID, TIMESTAMP, BODY), BODY, now=TIMESTAMP)
