"""The whole mesh as the CLI sees it: the full config file, the services and where they listen."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import ConfigDict, Field

from services.listener.config import ListenerSettings
from services.notifier.config import NotifierSettings
from services.reputation.config import ReputationSettings
from services.router.config import RouterSettings
from services.shared.config import CommonConfig, GrpcSettings, load_config
from services.triage.config import TriageSettings

SERVICES = ("listener", "triage", "router", "reputation", "notifier")
DEFAULT_DATA_DIR = Path(".clamor")
CONFIG_NAME = "clamor.yaml"
SAMPLE_NAME = "sample_posts.jsonl"


class MeshConfig(CommonConfig):
    """Every section of the file; unknown top-level sections are errors here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Validated from {} so relative paths in defaults resolve against the config file's folder.
    listener: ListenerSettings = Field(default_factory=dict, validate_default=True)
    triage: TriageSettings = Field(default_factory=dict, validate_default=True)
    router: RouterSettings = Field(default_factory=dict, validate_default=True)
    reputation: ReputationSettings = Field(default_factory=dict, validate_default=True)
    notifier: NotifierSettings = Field(default_factory=dict, validate_default=True)

    def grpc(self, service: str) -> GrpcSettings:
        settings: ListenerSettings | TriageSettings | RouterSettings | ReputationSettings | NotifierSettings = getattr(
            self, service
        )
        return settings.grpc


def load_mesh_config(path: Path) -> MeshConfig:
    return load_config(MeshConfig, path)


@dataclass(frozen=True)
class Bootstrap:
    config_path: Path
    created: bool


def ensure_default_config(data_dir: Path) -> Bootstrap:
    """Write the bundled config and sample posts into ``data_dir`` unless a config is there."""
    config_path = data_dir / CONFIG_NAME
    if config_path.exists():
        return Bootstrap(config_path, created=False)
    data_dir.mkdir(parents=True, exist_ok=True)
    bundled = resources.files("services.cli_data")
    config_path.write_text(bundled.joinpath(CONFIG_NAME).read_text(encoding="utf-8"), encoding="utf-8")
    with resources.as_file(bundled.joinpath(SAMPLE_NAME)) as sample:
        shutil.copyfile(sample, data_dir / SAMPLE_NAME)
    return Bootstrap(config_path, created=True)


def default_config_path(data_dir: Path = DEFAULT_DATA_DIR) -> Path:
    return data_dir / CONFIG_NAME
