"""The ``clamor`` command."""

from __future__ import annotations

from services.cli.app import main

__all__ = ["main"]
