"""The vk and dvach examples in docs/sources.md are configs that load: documentation that cannot drift."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from services.listener.config import DvachSourceSettings, ListenerConfig, VkSourceSettings
from services.shared.config import load_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "sources.md"
_SECTION = re.compile(r"^## (?P<kind>\S+)\n(?P<body>.*?)(?=^## |\Z)", re.MULTILINE | re.DOTALL)
_YAML = re.compile(r"^```yaml\n(?P<block>.*?)^```", re.MULTILINE | re.DOTALL)
WATCHES = "listener:\n  watches:\n    - name: skylark\n      terms: [Skylark]\n  sources:\n"


def examples(kind: str) -> list[str]:
    sections = {m["kind"]: m["body"] for m in _SECTION.finditer(DOC.read_text(encoding="utf-8"))}
    return [m["block"] for m in _YAML.finditer(sections[kind])]


@pytest.mark.parametrize(("kind", "model"), [("vk", VkSourceSettings), ("dvach", DvachSourceSettings)])
def test_every_example_of_the_kind_loads_as_a_source(tmp_path: Path, kind: str, model: type[object]) -> None:
    blocks = examples(kind)
    assert blocks, f"no yaml example under ## {kind}"
    for block in blocks:
        path = tmp_path / "clamor.yaml"
        path.write_text(WATCHES + textwrap.indent(block, "    "), encoding="utf-8")
        config = load_config(ListenerConfig, path, environ={"VK_SERVICE_TOKEN": "vk1.a.example"})
        [source] = config.listener.sources
        assert isinstance(source, model)
