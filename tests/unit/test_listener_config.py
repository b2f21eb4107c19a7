"""The listener's settings: a watch's own handles, from the config file to the built Watch; the lease TTL."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from services.listener.__main__ import build_watches
from services.listener.config import ListenerConfig
from services.shared.config import load_config
from services.shared.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

CONFIG = """\
listener:
  watches:
    - name: skylark
      terms: ["Skylark Airways"]
      own_handles: ["@SkylarkAir", "skylark@mastodon.example"]
    - name: lumo
      terms: [Lumo]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "clamor.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_own_handles_in_the_config_reach_the_built_watch(tmp_path: Path) -> None:
    watches = build_watches(load_config(ListenerConfig, write(tmp_path, CONFIG), environ={}).listener)
    assert watches["skylark"].is_own("skylarkair")
    assert watches["skylark"].is_own("@Skylark@Mastodon.Example")
    assert not watches["lumo"].is_own("SkylarkAir")


def test_an_empty_own_handle_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    text = CONFIG.replace('"skylark@mastodon.example"', '" @"')
    with pytest.raises(ConfigError, match=r"listener\.watches\[0\]\.own_handles .*handle 1 \(' @'\) is empty"):
        load_config(ListenerConfig, write(tmp_path, text), environ={})


def test_the_lease_ttl_defaults_to_15_s_and_a_ttl_too_short_to_renew_in_is_refused(tmp_path: Path) -> None:
    assert load_config(ListenerConfig, write(tmp_path, CONFIG), environ={}).listener.lease_ttl_s == 15
    text = CONFIG + "  lease_ttl_s: 1\n"
    with pytest.raises(ConfigError, match=r"listener\.lease_ttl_s"):
        load_config(ListenerConfig, write(tmp_path, text), environ={})
    environ = {"CLAMOR__LISTENER__LEASE_TTL_S": "30"}
    assert load_config(ListenerConfig, write(tmp_path, CONFIG), environ=environ).listener.lease_ttl_s == 30
