"""detect_language: the script, then lingua within Latin and Cyrillic; a platform's tag wins."""

from __future__ import annotations

import json
from pathlib import Path

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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Meine Bestellung ist seit zwei Wochen nicht angekommen und niemand antwortet mir", "de"),
        ("Ma commande n'est jamais arrivée et le service client ne répond pas du tout", "fr"),
        ("Mi pedido nunca llegó y nadie del servicio al cliente me responde nada", "es"),
        ("Моє замовлення досі не доставили, а служба підтримки мовчить уже тиждень", "uk"),
        ("Мой заказ до сих пор не доставили, а поддержка молчит уже неделю", "ru"),
    ],
)
def test_lingua_tells_languages_apart_within_a_script(text: str, expected: str) -> None:
    assert detect_language(text) == expected


def test_a_short_latin_post_stays_english() -> None:
    assert detect_language("modem STILL not here 🙃") == "en"


def test_english_posts_are_almost_never_taken_for_another_language() -> None:
    corpus = Path(__file__).resolve().parents[2] / "services" / "triage_data" / "corpus"
    lines = [line for f in sorted(corpus.glob("en_*.jsonl")) for line in f.read_text(encoding="utf-8").splitlines()]
    texts = [json.loads(line)["text"] for line in lines if line.strip()]
    other = [t for t in texts if detect_language(t) != "en"]
    assert len(texts) > 2000
    assert len(other) / len(texts) < 0.005
