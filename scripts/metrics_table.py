"""Writes the metric table of docs/observability.md from services/shared/metric_catalogue.py.

The table sits between the ``<!-- metrics-table:start -->`` and ``<!-- metrics-table:end -->``
markers; ``--check`` fails when it differs from the catalogue (tests/unit/test_observability_artifacts.py
and scripts/check_observability.sh run it).

    python scripts/metrics_table.py [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.shared.metric_catalogue import CATALOGUE, Kind, MetricSpec

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "observability.md"
START = "<!-- metrics-table:start -->"
END = "<!-- metrics-table:end -->"


def _series(spec: MetricSpec) -> str:
    if spec.kind is Kind.HISTOGRAM:
        return f"`{spec.prometheus_name}_bucket`, `_sum`, `_count`"
    return f"`{spec.prometheus_name}`"


def table() -> str:
    rows = [
        "| Prometheus series | kind | unit | labels | what it counts (OpenTelemetry name) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for spec in CATALOGUE:
        labels = ", ".join(f"`{a.replace('.', '_')}`" for a in spec.attributes) or "none"
        rows.append(
            f"| {_series(spec)} | {spec.kind.value} | `{spec.unit}` | {labels}"
            f" | {spec.description.replace('|', '/')} (`{spec.name}`) |"
        )
    return "\n".join(rows)


def render(document: str) -> str:
    """``document`` with the text between the markers replaced by the table."""
    before, found_start, rest = document.partition(START)
    _, found_end, after = rest.partition(END)
    if not (found_start and found_end):
        raise ValueError(f"{DOC.name} lacks the {START} and {END} markers")
    return f"{before}{START}\n{table()}\n{END}{after}"


def main() -> int:
    parser = argparse.ArgumentParser(description="Write (or check) the metric table in docs/observability.md.")
    parser.add_argument("--check", action="store_true", help="fail if the table differs from the catalogue")
    options = parser.parse_args()
    current = DOC.read_text(encoding="utf-8")
    text = render(current)
    target = DOC.relative_to(REPO)
    if options.check:
        if current != text:
            print(f"FAIL the metric table in {target} is out of date: run python scripts/metrics_table.py")
            return 1
        print(f"ok   the metric table in {target} matches the catalogue ({len(CATALOGUE)} metrics)")
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote the metric table in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
