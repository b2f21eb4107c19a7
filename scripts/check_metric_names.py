"""Every series and label that the alert rules and the dashboard name is one that Clamor exports.

A rule or a panel that names a series nobody exports never fires and never draws: Prometheus and
Grafana both take it silently. This reads each PromQL expression of the rules files and the dashboard
and checks, against ``services/shared/metric_catalogue.py``:

- each series is a catalogue metric's ``prometheus_name`` (a histogram's only with ``_bucket``,
  ``_sum`` or ``_count``), ``up``, ``target_info``, a series the rules record, a threshold an operator
  records (``OPERATOR_SERIES``), or one of the NATS exporter's series listed in ``NATS_EXPORTER``;
- each label in a selector (``{label="..."}``) is one that series carries: its attributes, with dots
  as underscores, ``le`` on a ``_bucket``, and the labels the scrape adds;
- each label in ``by``/``without``/``on``/``ignoring``/``group_left``/``group_right``, in a
  dashboard legend (``{{label}}``), in a ``label_values`` variable and in an annotation
  (``$labels.label``) is one that some series carries;
- each name followed by ``(`` is a PromQL function or aggregation.

The PromQL reading is a tokenizer, not a full parser: it knows strings, durations, Grafana's
``$variables``, selectors, label lists and function calls, and refuses anything else it meets (a
selector without a metric name, an unknown function), so that a query it cannot read fails the
check instead of passing it.

    python scripts/check_metric_names.py [--rules FILE ...] [--dashboard FILE ...]

Prints what it checked, one line per problem; exits 1 when there is any.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from services.shared.metric_catalogue import CATALOGUE, Kind

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "observability" / "prometheus" / "clamor-rules.yaml"
DASHBOARD = REPO / "deploy" / "observability" / "grafana" / "clamor-mesh.json"

# What the scrape adds to every series: Prometheus (job, instance) and the Prometheus Operator's
# PodMonitor (namespace, pod, container, endpoint).
SCRAPE_LABELS = frozenset({"job", "instance", "namespace", "pod", "container", "endpoint"})
# What opentelemetry-exporter-prometheus adds to every Clamor series: the instrumentation scope.
SCOPE_LABELS = frozenset({"otel_scope_name", "otel_scope_version", "otel_scope_schema_url"})
# The OpenTelemetry resource, as opentelemetry-exporter-prometheus exports it.
TARGET_INFO_LABELS = frozenset(
    {
        "service_name", "service_namespace", "service_version", "service_instance_id", "deployment_environment_name",
        "telemetry_sdk_language", "telemetry_sdk_name", "telemetry_sdk_version",
    }
)  # fmt: skip
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# prometheus-nats-exporter's series that the dashboard reads (-varz), labelled by the server's id.
NATS_EXPORTER = {
    name: frozenset({"server_id"})
    for name in (
        "gnatsd_varz_connections",
        "gnatsd_varz_in_msgs",
        "gnatsd_varz_out_msgs",
        "gnatsd_varz_slow_consumers",
    )
}
# Recorded by the operator, not by clamor-rules.yaml (docs/observability.md, "ClamorSourceSilent").
OPERATOR_SERIES = {"clamor:listener_silence_threshold:seconds": frozenset({"clamor_source"})}

AGGREGATIONS = frozenset(
    {
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
        "quantile", "limitk", "limit_ratio",
    }
)  # fmt: skip
FUNCTIONS = AGGREGATIONS | frozenset(
    {
        "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
        "count_over_time", "day_of_month", "day_of_week", "days_in_month", "delta", "deriv", "exp", "floor",
        "histogram_quantile", "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace",
        "last_over_time", "ln", "log10", "log2", "max_over_time", "min_over_time", "minute", "month",
        "predict_linear", "present_over_time", "quantile_over_time", "rate", "resets", "round", "scalar", "sgn",
        "sort", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time", "time", "timestamp",
        "vector", "year",
    }
)  # fmt: skip
LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
OPERATOR_WORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2"})

TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<comment>\#[^\n]*)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<variable>\$\{[^}]+\}|\$\w+)
    | (?P<number>[0-9][0-9a-zA-Z.]*)
    | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=(){}\[\],@:])
    """,
    re.VERBOSE,
)
LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
ANNOTATION_LABEL = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)")
LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<selector>.*),\s*)?(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$")


def _label(attribute: str) -> str:
    return attribute.replace(".", "_")


def exported_series() -> dict[str, frozenset[str]]:
    """Each series name Clamor exports → the labels it may carry."""
    series: dict[str, frozenset[str]] = {
        "up": SCRAPE_LABELS,
        "target_info": SCRAPE_LABELS | TARGET_INFO_LABELS,
        **{name: labels | SCRAPE_LABELS for name, labels in NATS_EXPORTER.items()},
        **OPERATOR_SERIES,
    }
    for spec in CATALOGUE:
        labels = SCRAPE_LABELS | SCOPE_LABELS | {_label(a) for a in spec.attributes}
        if spec.kind is Kind.HISTOGRAM:
            series[spec.prometheus_name + "_bucket"] = labels | {"le"}
            series[spec.prometheus_name + "_sum"] = labels
            series[spec.prometheus_name + "_count"] = labels
        else:
            series[spec.prometheus_name] = labels
    return series


@dataclass
class Checker:
    """The known series; the problems found, each with where it was found."""

    series: dict[str, frozenset[str]]
    problems: list[str] = field(default_factory=list)
    seen_series: set[str] = field(default_factory=set)
    seen_labels: set[str] = field(default_factory=set)
    expressions: int = 0

    @property
    def any_label(self) -> frozenset[str]:
        return frozenset().union(*self.series.values())

    def label(self, name: str, where: str) -> None:
        self.seen_labels.add(name)
        if name not in self.any_label:
            self.problems.append(f"{where}: label {name!r} is on no series Clamor exports")

    def expression(self, expr: str, where: str) -> None:
        """Check one PromQL expression (Grafana variables allowed)."""
        self.expressions += 1
        try:
            tokens = list(_tokens(expr))
        except ValueError as exc:
            self.problems.append(f"{where}: {exc}")
            return
        i = 0
        while i < len(tokens):
            kind, text = tokens[i]
            following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
            if kind == "op" and text == "[":
                i = _closing(tokens, i, "[", "]", where)
            elif kind == "op" and text == "{":
                self.problems.append(f"{where}: a selector without a metric name is not checked; name the metric")
                i = _closing(tokens, i, "{", "}", where)
            elif kind != "name":
                i += 1
            elif text in LABEL_LISTS:
                i = self._label_list(tokens, i + 1, where)
            elif text in OPERATOR_WORDS or (text in AGGREGATIONS and following in {"by", "without"}):
                i += 1
            elif following == "(":
                if text not in FUNCTIONS:
                    self.problems.append(f"{where}: {text}() is no PromQL function")
                i += 1
            else:
                i = self._selector(tokens, i, where)

    def _label_list(self, tokens: list[tuple[str, str]], i: int, where: str) -> int:
        if i >= len(tokens) or tokens[i][1] != "(":
            return i  # group_left without a list
        end = _closing(tokens, i, "(", ")", where)
        for kind, text in tokens[i + 1 : end - 1]:
            if kind == "name":
                self.label(text, where)
            elif text != ",":
                self.problems.append(f"{where}: {text!r} in a label list")
        return end

    def _selector(self, tokens: list[tuple[str, str]], i: int, where: str) -> int:
        name = tokens[i][1]
        self.seen_series.add(name)
        labels = self.series.get(name)
        if labels is None:
            self.problems.append(f"{where}: series {name!r} is not one Clamor exports")
            labels = frozenset()
        i += 1
        if i >= len(tokens) or tokens[i][1] != "{":
            return i
        end = _closing(tokens, i, "{", "}", where)
        matchers = tokens[i + 1 : end - 1]
        for start in range(0, len(matchers), 4):
            matcher = matchers[start : start + 3]
            shape_ok = (
                len(matcher) == 3
                and matcher[0][0] == "name"
                and matcher[1][1] in {"=", "!=", "=~", "!~"}
                and matcher[2][0] in {"string", "variable"}
                and (start + 3 == len(matchers) or matchers[start + 3][1] == ",")
            )
            if not shape_ok:
                self.problems.append(f"{where}: cannot read the matchers of {name}")
                break
            label = matcher[0][1]
            self.seen_labels.add(label)
            if labels and label not in labels:
                self.problems.append(f"{where}: {name} has no label {label!r}")
        return end

    def legend(self, text: str, where: str) -> None:
        for label in LEGEND_LABEL.findall(text):
            self.label(label, where)

    def annotation(self, text: str, where: str) -> None:
        for label in ANNOTATION_LABEL.findall(text):
            self.label(label, where)


def _tokens(expr: str) -> Iterator[tuple[str, str]]:
    position = 0
    while position < len(expr):
        match = TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot read {expr[position : position + 20]!r}")
        position = match.end()
        kind = match.lastgroup or ""
        if kind not in {"space", "comment"}:
            yield kind, match.group()


def _closing(tokens: list[tuple[str, str]], i: int, opening: str, closing: str, where: str) -> int:
    """The index after the bracket that closes the one at ``i``."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j][1] == opening:
            depth += 1
        elif tokens[j][1] == closing:
            depth -= 1
            if depth == 0:
                return j + 1
    raise ValueError(f"{where}: unclosed {opening!r}")


def check_rules(checker: Checker, path: Path) -> None:
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    rules = [rule for group in groups for rule in group.get("rules") or []]
    for rule in rules:
        if "record" in rule:
            checker.series[rule["record"]] = checker.any_label
    for rule in rules:
        where = f"{path.name}: {rule.get('alert') or rule.get('record')}"
        checker.expression(str(rule["expr"]), where)
        for label in rule.get("labels", {}):
            checker.seen_labels.add(label)
        for text in rule.get("annotations", {}).values():
            checker.annotation(str(text), where)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def check_dashboard(checker: Checker, path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        where = f"{path.name}: variable {variable['name']}"
        found = LABEL_VALUES.match(text)
        if found is None:
            checker.problems.append(f"{where}: only label_values(...) variables are checked, not {text!r}")
            continue
        if found.group("selector"):
            checker.expression(found.group("selector"), where)
        checker.label(found.group("label"), where)
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            where = f"{path.name}: panel {panel.get('title')!r} query {target.get('refId')}"
            checker.expression(target["expr"], where)
            checker.legend(target.get("legendFormat", ""), where)


def main() -> int:
    parser = argparse.ArgumentParser(description="Check the series and labels that rules and dashboards name.")
    parser.add_argument("--rules", nargs="*", type=Path, default=[RULES], help="Prometheus rules files")
    parser.add_argument("--dashboard", nargs="*", type=Path, default=[DASHBOARD], help="Grafana dashboard JSON")
    options = parser.parse_args()
    checker = Checker(exported_series())
    for path in options.rules:
        check_rules(checker, path)
    for path in options.dashboard:
        check_dashboard(checker, path)
    for problem in checker.problems:
        print(f"FAIL {problem}")
    print(
        f"{'ok  ' if not checker.problems else 'FAIL'} {checker.expressions} expressions name"
        f" {len(checker.seen_series)} series and {len(checker.seen_labels)} labels"
        f" ({len(checker.problems)} problems)"
    )
    return 1 if checker.problems else 0


if __name__ == "__main__":
    sys.exit(main())
