"""The vk and dvach source settings: what a config file may set, and the errors that name the field."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from services.listener.config import DvachSourceSettings, ListenerConfig, VkSourceSettings
from services.shared.config import load_config
from services.shared.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

CONFIG = """\
listener:
  sources:
    - kind: vk
      name: vk-fjord
      access_token: ${VK_SERVICE_TOKEN}
      query: Фьорд
    - kind: dvach
      name: dvach-po
      board: po
      threads: [500, 501]
"""


def load(tmp_path: Path, text: str, **environ: str) -> ListenerConfig:
    path = tmp_path / "clamor.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(ListenerConfig, path, environ=environ)


def test_both_kinds_load_with_their_defaults(tmp_path: Path) -> None:
    vk, dvach = load(tmp_path, CONFIG, VK_SERVICE_TOKEN="vk1.a.secret").listener.sources
    assert isinstance(vk, VkSourceSettings)
    assert (vk.base_url, vk.api_version, vk.count, vk.access_token) == (
        "https://api.vk.com",
        "5.199",
        200,
        "vk1.a.secret",
    )
    assert isinstance(dvach, DvachSourceSettings)
    assert (dvach.base_url, dvach.threads, dvach.max_threads_per_poll, dvach.interval_s) == (
        "https://2ch.hk",
        [500, 501],
        5,
        300.0,
    )


def test_vk_without_a_token_names_access_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"listener\.sources\[0\]\.access_token"):
        load(tmp_path, CONFIG, VK_SERVICE_TOKEN="")


def test_vk_count_above_what_vk_answers_is_refused_without_showing_the_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources\[0\]\.count") as refused:
        load(tmp_path, CONFIG.replace("query: Фьорд", "query: Фьорд\n      count: 500"), VK_SERVICE_TOKEN="vk1.a.s3")
    assert "vk1.a.s3" not in str(refused.value)


def test_dvach_polls_a_board_no_more_than_once_a_minute(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources\[1\]\.interval_s"):
        load(tmp_path, CONFIG + "      interval_s: 30\n", VK_SERVICE_TOKEN="t")


def test_dvach_board_is_a_board_name_not_a_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources\[1\]\.board"):
        load(tmp_path, CONFIG.replace("board: po", "board: ../po"), VK_SERVICE_TOKEN="t")


def test_dvach_threads_may_be_one_comma_separated_text() -> None:
    settings = DvachSourceSettings(kind="dvach", name="d", board="po", threads="500, 501")  # type: ignore[arg-type]
    assert settings.threads == [500, 501]
