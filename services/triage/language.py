"""Offline language guess by script: enough to choose risk terms for en, zh, ja and ru.

Kana means Japanese (Japanese text mixes kana with kanji; Chinese has none), Han without
kana means Chinese, Cyrillic means Russian, Latin letters mean English. A platform's own
language tag wins when it is present.
"""

from __future__ import annotations

import re

_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff]")
_HAN = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[A-Za-z]")


def detect_language(text: str, *, hint: str = "") -> str:
    if hint:
        return hint.split("-", maxsplit=1)[0].lower()
    if _KANA.search(text):
        return "ja"
    han = len(_HAN.findall(text))
    cyrillic = len(_CYRILLIC.findall(text))
    latin = len(_LATIN.findall(text))
    if han and han >= cyrillic:
        return "zh"
    if cyrillic and cyrillic >= latin:
        return "ru"
    if latin:
        return "en"
    return "und"
