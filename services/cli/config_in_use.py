"""The config file a command works with: the ``--config`` option, and loading it with one clear error.

Every command that talks to a running mesh finds the services' addresses in the same file
``clamor up`` wrote (``.clamor/clamor.yaml``), unless ``--config`` names another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from services.cli.mesh import MeshConfig, default_config_path, load_mesh_config
from services.shared.errors import ConfigError

errors = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Config file (default: .clamor/clamor.yaml).", show_default=False)
]


def load_or_exit(path: Path) -> MeshConfig:
    """``path`` loaded; an invalid file is printed with its errors and ends the command with exit code 2."""
    try:
        return load_mesh_config(path)
    except ConfigError as exc:
        errors.print(f"[red]invalid configuration[/red]\n{escape(str(exc))}")
        raise typer.Exit(2) from exc


def existing_config(config: Path | None) -> Path:
    """``config``, or the default file; exit code 2 when it does not exist."""
    path = config or default_config_path()
    if not path.exists():
        errors.print(f"[red]no config at {escape(str(path))}[/red]: run [bold]clamor up[/bold] once, or pass --config")
        raise typer.Exit(2)
    return path


def mesh_in_use(config: Path | None) -> MeshConfig:
    """The config file in use, loaded; a missing or invalid one ends the command with exit code 2."""
    return load_or_exit(existing_config(config))
