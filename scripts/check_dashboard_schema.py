"""Checks a Grafana dashboard JSON against Grafana's own dashboard schema, with the TypeScript compiler.

Grafana publishes its dashboard model as the TypeScript types of the npm package ``@grafana/schema``
(generated from the CUE kinds Grafana itself validates with): the dashboard (``raw/dashboard/x``),
each panel plugin's options and field config (``raw/composable/<panel>/panelcfg/x``) and the query
base ``DataQuery``. This writes the dashboard as TypeScript object literals, each declared to
``satisfy`` its type, and runs ``tsc --noEmit --strict``: a missing required field, a wrong type, an
unknown enum value or a field the schema does not have (excess-property checks) is a compile error.

Panels other than rows and time series, and datasources other than Prometheus, are refused: only
what the check knows is let through. ``@grafana/schema`` 13 has no Prometheus query type, so
``PrometheusQuery`` below declares the fields Grafana's Prometheus datasource reads.

    python scripts/check_dashboard_schema.py [dashboard.json ...]

Needs ``npm ci`` (package.json: @grafana/schema and typescript). Exits 1 on any error.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "observability" / "grafana" / "clamor-mesh.json"
TSC = REPO / "node_modules" / ".bin" / "tsc"
SCHEMA = "@grafana/schema/dist/types"

PRELUDE = f"""\
import type {{ DataQuery }} from "@grafana/schema";
import type {{ Dashboard, FieldConfig, FieldConfigSource, Panel, RowPanel }} from "{SCHEMA}/raw/dashboard/x/types.gen";
import type {{
  FieldConfig as TimeSeriesFieldConfig,
  Options as TimeSeriesOptions,
}} from "{SCHEMA}/raw/composable/timeseries/panelcfg/x/types.gen";

// JSON has no enums: a string enum stands for its values (LegendDisplayMode -> "list" | "table" | ...).
type Json<T> = T extends string
  ? `${{T}}`
  : T extends Array<infer U>
    ? Array<Json<U>>
    : T extends object
      ? {{ [K in keyof T]: Json<T[K]> }}
      : T;

// The fields Grafana's Prometheus datasource reads from a query.
type PrometheusQuery = Omit<DataQuery, "datasource"> & {{
  datasource: {{ type: "prometheus"; uid: string }};
  expr: string;
  legendFormat?: string;
  range?: boolean;
  instant?: boolean;
  format?: "time_series" | "table" | "heatmap";
  interval?: string;
}};

type TimeSeriesPanel = Omit<Panel, "type" | "options" | "fieldConfig" | "targets"> & {{
  type: "timeseries";
  options: Json<TimeSeriesOptions>;
  fieldConfig: {{
    defaults: Omit<Json<FieldConfig>, "custom"> & {{ custom?: Json<TimeSeriesFieldConfig> }};
    overrides: Json<FieldConfigSource["overrides"]>;
  }};
  targets: PrometheusQuery[];
}};
"""


def typescript(dashboard: dict[str, Any]) -> tuple[str, list[str]]:
    """The dashboard as TypeScript to compile, and the problems found before compiling."""
    problems: list[str] = []
    lines = [PRELUDE, f"export const dashboard = {json.dumps(dashboard)} satisfies Json<Dashboard>;"]
    panels: list[dict[str, Any]] = list(dashboard.get("panels", []))
    for panel in list(panels):
        panels.extend(panel.get("panels", []))
    for n, panel in enumerate(panels):
        kind = {"row": "Json<RowPanel>", "timeseries": "TimeSeriesPanel"}.get(panel.get("type", ""))
        if kind is None:
            problems.append(f"panel {panel.get('title')!r}: type {panel.get('type')!r} is not checked here")
            continue
        lines.append(f"export const panel{n} = {json.dumps(panel)} satisfies {kind};")
    return "\n".join(lines) + "\n", problems


def check(path: Path) -> list[str]:
    text, problems = typescript(json.loads(path.read_text(encoding="utf-8")))
    if not TSC.exists():
        return [*problems, f"{TSC.relative_to(REPO)} is missing: run npm ci"]
    # Inside the repository, so that the compiler finds node_modules/@grafana/schema.
    with tempfile.TemporaryDirectory(dir=REPO, prefix=".dashboard-schema-") as folder:
        source = Path(folder) / "dashboard.ts"
        source.write_text(text, encoding="utf-8")
        result = subprocess.run(
            [
                str(TSC),
                "--noEmit",
                "--strict",
                "--target",
                "es2022",
                "--module",
                "commonjs",
                "--moduleResolution",
                "node10",
                "--ignoreDeprecations",
                "5.0",
                "--skipLibCheck",
                str(source),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        problems.extend(line for line in (result.stdout + result.stderr).splitlines() if line.strip())
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description="Check Grafana dashboards against @grafana/schema.")
    parser.add_argument("dashboards", nargs="*", type=Path, default=[DASHBOARD])
    options = parser.parse_args()
    failed = False
    for path in options.dashboards:
        problems = check(path)
        for problem in problems:
            print(f"      {problem[:400]}")
        print(f"{'FAIL' if problems else 'ok  '} {path.name} against @grafana/schema ({len(problems)} problems)")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
