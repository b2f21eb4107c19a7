"""MeshConfig and the bundled default config."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from services.cli.mesh import CONFIG_NAME, SAMPLE_NAME, SERVICES, MeshConfig, ensure_default_config, load_mesh_config
from services.listener.__main__ import build_watches
from services.listener.config import ReplaySourceSettings
from services.shared.config import load_config


@pytest.fixture
def bundled_config() -> Path:
    return Path(str(resources.files("services.cli_data").joinpath(CONFIG_NAME)))


def test_bundled_config_validates(bundled_config: Path) -> None:
    config = load_config(MeshConfig, bundled_config, environ={})
    assert config.listener.sources, "the bundled config replays the sample posts"


def test_bundled_config_replays_the_bundled_sample(bundled_config: Path) -> None:
    config = load_config(MeshConfig, bundled_config, environ={})
    replay = config.listener.sources[0]
    assert isinstance(replay, ReplaySourceSettings)
    assert replay.path == bundled_config.parent.resolve() / SAMPLE_NAME
    assert replay.path.is_file()


def test_bundled_watches_own_every_brand_reply_in_the_sample_and_nothing_else(bundled_config: Path) -> None:
    watches = build_watches(load_config(MeshConfig, bundled_config, environ={}).listener)
    lines = (bundled_config.parent / SAMPLE_NAME).read_text(encoding="utf-8").splitlines()
    posts = [json.loads(line) for line in lines if line.strip()]
    assert {post["watch"] for post in posts} <= set(watches)
    own = {post["id"] for post in posts if watches[post["watch"]].is_own(post["author"]["handle"])}
    brand_replies = {"p0020", "p0237", "p0253", "p0274", "p0349"}  # the brands answering in customers' threads
    assert brand_replies <= own
    assert all(post["label"] == "noise" for post in posts if post["id"] in own)
    # Look-alike scam accounts are not the brand's.
    assert not own & {"p0046", "p0169", "p0180", "p0344"}


def test_bundled_config_gives_each_service_its_own_port(bundled_config: Path) -> None:
    config = load_config(MeshConfig, bundled_config, environ={})
    ports = [config.grpc(service).port for service in SERVICES]
    assert len(set(ports)) == len(SERVICES)


def test_ensure_default_config_writes_a_loadable_config_and_the_sample(tmp_path: Path) -> None:
    boot = ensure_default_config(tmp_path / "data")
    assert boot.created
    config = load_mesh_config(boot.config_path)
    replay = config.listener.sources[0]
    assert isinstance(replay, ReplaySourceSettings)
    assert replay.path == (tmp_path / "data").resolve() / SAMPLE_NAME
    assert replay.path.is_file()


def test_ensure_default_config_keeps_an_existing_config(tmp_path: Path) -> None:
    existing = tmp_path / CONFIG_NAME
    existing.write_text("triage:\n  batch_size: 3\n", encoding="utf-8")
    boot = ensure_default_config(tmp_path)
    assert not boot.created
    assert existing.read_text(encoding="utf-8") == "triage:\n  batch_size: 3\n"
