"""``clamor serve reputation``: the service's entry point; the wiring is in app.py."""

from __future__ import annotations

import sys

from services.reputation.app import NAME, run
from services.shared.lifecycle import service_main


def main(argv: list[str] | None = None) -> int:
    return service_main(NAME, run, argv)


if __name__ == "__main__":
    sys.exit(main())
