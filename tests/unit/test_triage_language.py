"""detect_language: a script-based guess for en, zh, ja and ru; a platform's tag wins."""

from __future__ import annotations

import pytest

from services.triage.language import detect_language


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("My refund never arrived", "en"),
        ("退款到现在还没到账", "zh"),
        ("返金がまだ届いていません", "ja"),
        ("Возврат до сих пор не пришёл", "ru"),
    ],
)
def test_script_decides_the_language(text: str, expected: str) -> None:
    assert detect_language(text) == expected


def test_kana_makes_kanji_text_japanese() -> None:
    assert detect_language("東京駅の店舗で注文した商品が届かない") == "ja"


def test_cyrillic_text_with_a_latin_brand_name_is_russian() -> None:
    assert detect_language("Приложение Nimbus снова не работает") == "ru"


def test_chinese_text_with_a_latin_brand_name_is_chinese() -> None:
    assert detect_language("Nimbus 的客服太差了") == "zh"


def test_text_without_letters_is_undetermined() -> None:
    assert detect_language("🙃 12315 !!!") == "und"


def test_hint_wins_over_the_script() -> None:
    assert detect_language("My refund never arrived", hint="ja") == "ja"


def test_hint_region_and_case_are_dropped() -> None:
    assert detect_language("whatever", hint="ZH-Hant-TW") == "zh"
