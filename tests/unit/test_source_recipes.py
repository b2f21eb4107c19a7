"""Every source definition in docs/sources.md loads through the config model and builds its adapter."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from services.listener.config import ListenerConfig, RsshubSourceSettings
from services.listener.sources import build_source
from services.listener.sources.rsshub_routes import ROUTE_PLATFORMS
from services.shared.config import load_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "sources.md"
_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
ENVIRON = {"RSSHUB_ACCESS_KEY": "recipe-test-key"}


def section(title: str) -> str:
    """The text under ``## <title>`` up to the next second-level heading."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    following = text.find("\n## ", start + 1)
    return text[start : following if following != -1 else len(text)]


def source_blocks(title: str) -> list[str]:
    """The YAML blocks of a section that define sources (lists of mappings with a kind)."""
    blocks = _YAML_BLOCK.findall(section(title))
    return [block for block in blocks if block.startswith("- name:")]


def load_sources(block: str, tmp_path: Path) -> ListenerConfig:
    indented = "".join(f"    {line}\n" for line in block.splitlines())
    path = tmp_path / "clamor.yaml"
    path.write_text(
        f"listener:\n  watches:\n    - name: skylark\n      terms: [云雀航空]\n  sources:\n{indented}", "utf-8"
    )
    return load_config(ListenerConfig, path, environ=ENVIRON)


RECIPES = source_blocks("Recipes")
RSSHUB_EXAMPLES = source_blocks("rsshub")


def test_the_docs_have_recipes_for_feeds_and_rsshub_routes() -> None:
    kinds = {source["kind"] for block in RECIPES for source in yaml.safe_load(block)}
    assert kinds == {"rss", "rsshub"}
    assert len(RECIPES) >= 5
    assert RSSHUB_EXAMPLES


@pytest.mark.parametrize("block", RECIPES + RSSHUB_EXAMPLES, ids=lambda block: block.split("\n", 1)[0][8:])
def test_recipe_loads_through_the_config_model_and_builds_its_source(block: str, tmp_path: Path) -> None:
    config = load_sources(block, tmp_path)

    assert len(config.listener.sources) == len(yaml.safe_load(block))
    for settings in config.listener.sources:
        source = build_source(settings)  # type: ignore[arg-type]
        if isinstance(settings, RsshubSourceSettings):
            assert source.platform != "rsshub", f"{settings.route}: platform not in the route table"
            if "access_key" in block:
                assert settings.access_key == "recipe-test-key"


def test_the_documented_platform_table_matches_the_code() -> None:
    rows = {
        match.group("platform"): match.group("routes")
        for match in re.finditer(r"^\| (?P<routes>`/[^|]*) \| `(?P<platform>[a-z0-9_-]+)` \|", section("rsshub"), re.M)
    }
    for entry in ROUTE_PLATFORMS:
        assert f"`/{'/'.join(entry.prefix)}" in rows.get(entry.platform, ""), entry
    assert set(rows) == {entry.platform for entry in ROUTE_PLATFORMS}
