"""Page sizes and page tokens: the rules every List RPC shares."""

from __future__ import annotations

import pytest

from services.shared.paging import InvalidPageError, decode_sequence, decode_token, encode_token, page_size


@pytest.mark.parametrize(("requested", "expected"), [(0, 100), (7, 7), (1000, 1000), (5000, 1000)])
def test_zero_means_the_default_and_too_many_means_the_maximum(requested: int, expected: int) -> None:
    assert page_size(requested, default=100, maximum=1000) == expected


def test_a_negative_page_size_is_refused() -> None:
    with pytest.raises(InvalidPageError, match="page_size"):
        page_size(-1, default=100, maximum=1000)


@pytest.mark.parametrize("cursor", ["broken", "sources/ä b", "12345"])
def test_a_token_gives_back_its_cursor(cursor: str) -> None:
    assert decode_token(encode_token(cursor)) == cursor


def test_no_token_is_the_first_page() -> None:
    assert (decode_token(""), decode_sequence("")) == ("", 0)


@pytest.mark.parametrize("token", ["%%%", "a", encode_token("not a number")])
def test_a_token_this_service_did_not_hand_out_is_refused(token: str) -> None:
    with pytest.raises(InvalidPageError):
        decode_sequence(token)
