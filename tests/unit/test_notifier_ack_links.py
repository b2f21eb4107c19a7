"""Signed, expiring acknowledgement links."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime, timedelta

import pytest

from services.notifier.ack_links import AckLinkExpired, AckLinkInvalid, AckLinks

SECRET = "a-secret-of-at-least-16-chars"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TTL_S = 3600.0
CASE = "c_0123abcd4567ef89"
B64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
URL_SAFE = re.compile(r"[A-Za-z0-9_.-]+")


def links(secret: str = SECRET) -> AckLinks:
    return AckLinks(secret=secret, public_url="https://clamor.example.com/", ttl_s=TTL_S)


def test_token_round_trips_to_its_case_id() -> None:
    token = links().token_for(CASE, now=NOW)

    assert links().verify(token, now=NOW + timedelta(seconds=TTL_S - 1)) == CASE


def test_url_is_the_public_url_then_ack_then_the_token() -> None:
    url = links().url_for(CASE, now=NOW)

    assert url == "https://clamor.example.com/ack/" + links().token_for(CASE, now=NOW)


def test_token_past_its_ttl_is_expired_and_still_names_its_case() -> None:
    token = links().token_for(CASE, now=NOW)

    with pytest.raises(AckLinkExpired) as caught:
        links().verify(token, now=NOW + timedelta(seconds=TTL_S))

    assert caught.value.case_id == CASE
    assert caught.value.expired_at == NOW + timedelta(seconds=TTL_S)


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_token_with_one_character_changed_is_invalid(position: int) -> None:
    token = links().token_for(CASE, now=NOW)
    changed = "A" if token[position] != "A" else "B"
    tampered = token[:position] + changed + token[position + 1 :] if position >= 0 else token[:-1] + changed

    with pytest.raises(AckLinkInvalid):
        links().verify(tampered, now=NOW)


def test_token_for_another_case_cannot_be_grafted_onto_a_signature() -> None:
    payload, _, _ = links().token_for("c_other", now=NOW).partition(".")
    _, _, mac = links().token_for(CASE, now=NOW).partition(".")

    with pytest.raises(AckLinkInvalid):
        links().verify(f"{payload}.{mac}", now=NOW)


def test_token_spelled_with_other_spare_bits_is_invalid() -> None:
    token = links().token_for(CASE, now=NOW)
    # 32 MAC bytes fill 43 base64 characters with 2 bits to spare: flipping them keeps the bytes.
    respelled = token[:-1] + B64URL[B64URL.index(token[-1]) ^ 1]

    with pytest.raises(AckLinkInvalid):
        links().verify(respelled, now=NOW)


def test_token_signed_with_another_secret_is_invalid() -> None:
    token = links(secret="another-secret-of-16-chars").token_for(CASE, now=NOW)

    with pytest.raises(AckLinkInvalid):
        links().verify(token, now=NOW)


@pytest.mark.parametrize("token", ["", "nodot", ".", "abc.def", "a b.c", "x" * 5000, "%%%.%%%", "é.é"])
def test_malformed_token_is_invalid(token: str) -> None:
    with pytest.raises(AckLinkInvalid):
        links().verify(token, now=NOW)


def test_case_id_with_unicode_round_trips() -> None:
    case_id = "c_日本語-émoji-🙂-" + "ß" * 150

    token = links().token_for(case_id, now=NOW)

    assert links().verify(token, now=NOW) == case_id


@pytest.mark.parametrize("case_id", [CASE, "c_日本語/../?#&= 🙂", "x" * 200, "🙂" * 200])
def test_tokens_use_only_url_safe_characters(case_id: str) -> None:
    token = links().token_for(case_id, now=NOW)

    assert URL_SAFE.fullmatch(token)
    assert "=" not in token


@pytest.mark.parametrize("case_id", ["", "x" * 201])
def test_case_id_outside_1_to_200_characters_is_refused(case_id: str) -> None:
    with pytest.raises(ValueError, match="case id"):
        links().token_for(case_id, now=NOW)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        links().token_for(CASE, now=datetime(2025, 3, 1, 12, 0))
