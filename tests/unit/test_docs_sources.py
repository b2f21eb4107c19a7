"""The examples in docs/sources.md are configs that load, and sources that build."""

from __future__ import annotations

from pathlib import Path

from services.listener.config import FivechSourceSettings, ListenerConfig
from services.listener.sources import build_source
from services.listener.watch import Query, Watch
from services.shared.config import load_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "sources.md"


def yaml_block_after(heading: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    start = section.index("```yaml") + len("```yaml")
    return section[start : section.index("```", start)]


def test_the_fivech_example_loads_and_its_watch_matches_a_half_width_brand(tmp_path: Path) -> None:
    path = tmp_path / "clamor.yaml"
    path.write_text(yaml_block_after("## fivech"), encoding="utf-8")

    listener = load_config(ListenerConfig, path, environ={}).listener

    [source] = listener.sources
    assert isinstance(source, FivechSourceSettings)
    assert build_source(source).platform == "5ch"
    [settings] = listener.watches
    assert settings.name == source.watch == "midori"
    watch = Watch(settings.name, terms=tuple(settings.terms), query=Query.parse(settings.query))
    assert watch.matches("ミドリ運輸の荷物が届かない")
    assert watch.matches("ﾐﾄﾞﾘ運輸、返金まだ？")
    assert not watch.matches("ミドリ運輸の新しい倉庫")
