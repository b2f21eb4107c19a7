"""The router section: its outbox path is relative to the config file like every other path."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.router.config import RouterConfig
from services.shared.config import load_config

if TYPE_CHECKING:
    from pathlib import Path


def test_outbox_path_given_in_the_file_resolves_against_the_config_folder(tmp_path: Path) -> None:
    path = tmp_path / "clamor.yaml"
    path.write_text("router:\n  outbox: {path: cases.jsonl}\n", encoding="utf-8")
    config = load_config(RouterConfig, path, environ={})
    assert config.router.outbox.path == tmp_path.resolve() / "cases.jsonl"


def test_default_outbox_path_resolves_when_the_outbox_block_is_present(tmp_path: Path) -> None:
    path = tmp_path / "clamor.yaml"
    path.write_text("router:\n  outbox: {}\n", encoding="utf-8")
    assert load_config(RouterConfig, path, environ={}).router.outbox.path.is_absolute()


def test_default_outbox_path_resolves_against_the_config_folder(tmp_path: Path) -> None:
    path = tmp_path / "clamor.yaml"
    path.write_text("router:\n  team: care\n", encoding="utf-8")
    assert load_config(RouterConfig, path, environ={}).router.outbox.path.parent == tmp_path.resolve()
