"""The operator artifacts (alert rules, dashboard, PrometheusRule, metric table) agree with the catalogue.

The scripts under scripts/ are the checks; these tests run them as CI does, and check that they
refuse what they should, so a check that passes everything cannot go unnoticed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "observability" / "prometheus" / "clamor-rules.yaml"
RULE_TESTS = REPO / "deploy" / "observability" / "prometheus" / "tests"
DASHBOARD = REPO / "deploy" / "observability" / "grafana" / "clamor-mesh.json"
DOC = REPO / "docs" / "observability.md"


def _script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *args], capture_output=True, text=True, check=False, cwd=REPO
    )


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group.get("rules") or [] if "alert" in rule]


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the document's headings."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_rules_and_dashboard_name_only_exported_series_and_labels() -> None:
    result = _script("check_metric_names.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(0 problems)" in result.stdout


def test_metric_name_check_refuses_unknown_series_labels_and_functions(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "wrong",
                        "rules": [
                            {
                                "alert": "Wrong",
                                "expr": 'sum by (clamor_stag) (rate(clamor_nothing_total{job="x"}[5m]))'
                                ' + messaging_process_duration_seconds{job="x"}'
                                ' + clamor_dead_letters_depth{clamor_team="care"} + fancy(up)',
                                "annotations": {"summary": "{{ $labels.nobody }}"},
                            }
                        ],
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    result = _script("check_metric_names.py", "--rules", str(rules), "--dashboard")
    assert result.returncode == 1
    for problem in (
        "label 'clamor_stag' is on no series",
        "series 'clamor_nothing_total' is not one Clamor exports",
        # A histogram is only its _bucket, _sum and _count series.
        "series 'messaging_process_duration_seconds' is not one Clamor exports",
        "clamor_dead_letters_depth has no label 'clamor_team'",
        "fancy() is no PromQL function",
        "label 'nobody' is on no series",
    ):
        assert problem in result.stdout, result.stdout


def test_metric_name_check_reads_dashboard_queries_and_legends(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panel = next(p for p in dashboard["panels"] if p.get("targets"))
    panel["targets"][0]["expr"] = "rate(clamor_listener_polls_total[5m])"
    panel["targets"][0]["legendFormat"] = "{{clamor_sauce}}"
    broken = tmp_path / "dashboard.json"
    broken.write_text(json.dumps(dashboard), encoding="utf-8")
    result = _script("check_metric_names.py", "--rules", "--dashboard", str(broken))
    assert result.returncode == 1
    assert "label 'clamor_sauce' is on no series" in result.stdout, result.stdout


def test_every_alert_has_a_severity_and_a_runbook_section() -> None:
    anchors = _anchors(DOC.read_text(encoding="utf-8"))
    for alert in _alerts():
        assert alert["labels"]["severity"] in {"critical", "warning"}, alert["alert"]
        annotations = alert["annotations"]
        assert annotations["summary"], alert["alert"]
        assert annotations["description"], alert["alert"]
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page == "docs/observability.md", alert["alert"]
        assert anchor == alert["alert"].lower(), alert["alert"]
        assert anchor in anchors, alert["alert"]


def test_every_alert_has_a_promtool_test_where_it_fires() -> None:
    fired = set()
    for path in RULE_TESTS.glob("*.yaml"):
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            fired |= {case["alertname"] for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert {alert["alert"] for alert in _alerts()} <= fired


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool: apt-get install prometheus")
def test_promtool_unit_tests_pass() -> None:
    tests = sorted(str(path) for path in RULE_TESTS.glob("*.yaml"))
    result = subprocess.run(["promtool", "test", "rules", *tests], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_has_the_datasource_namespace_and_job_variables() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"namespace", "job"} <= set(variables)
    queries = [t for p in dashboard["panels"] for t in p.get("targets", [])]
    assert queries
    for query in queries:
        assert query["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert 'namespace=~"$namespace"' in query["expr"], query["expr"]
        assert 'job=~"$job"' in query["expr"], query["expr"]


@pytest.mark.parametrize(
    "script", ["generate_dashboard.py", "generate_prometheus_rule.py", "metrics_table.py"], ids=lambda s: s[:-3]
)
def test_generated_artifact_is_up_to_date(script: str) -> None:
    result = _script(script, "--check")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(not (REPO / "node_modules" / ".bin" / "tsc").exists(), reason="npm ci installs tsc")
def test_dashboard_passes_grafana_schema_and_a_wrong_field_does_not(tmp_path: Path) -> None:
    assert _script("check_dashboard_schema.py").returncode == 0
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panel = next(p for p in dashboard["panels"] if p["type"] == "timeseries")
    panel["options"]["legend"]["displayMode"] = "tabular"
    broken = tmp_path / "dashboard.json"
    broken.write_text(json.dumps(dashboard), encoding="utf-8")
    result = _script("check_dashboard_schema.py", str(broken))
    assert result.returncode == 1
    assert "'\"tabular\"' is not assignable" in result.stdout, result.stdout
