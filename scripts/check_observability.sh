#!/usr/bin/env bash
# Checks the operator artifacts of deploy/observability against each other and the metric catalogue:
#   - promtool check rules and promtool test rules (the alert unit tests);
#   - the PrometheusRule of deploy/k8s/components/monitoring holds the rules file's groups;
#   - the Grafana dashboard is what scripts/generate_dashboard.py writes, and passes Grafana's schema
#     (@grafana/schema, with tsc: scripts/check_dashboard_schema.py);
#   - every series and label the rules and the dashboard name is exported (scripts/check_metric_names.py);
#   - the metric table of docs/observability.md matches the catalogue.
# Prints one line per check and exits 1 if any failed. Needs promtool (Debian: apt-get install
# prometheus), `npm ci` (@grafana/schema, typescript) and the project installed.
set -uo pipefail
cd "$(dirname "$0")/.."

RULES=deploy/observability/prometheus/clamor-rules.yaml
TESTS=deploy/observability/prometheus/tests
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# shellcheck source=scripts/check_report.sh
. scripts/check_report.sh

if command -v promtool >/dev/null; then
  version=$(promtool --version 2>&1 | head -n 1 | awk '{print $3}')
  promtool check rules "$RULES" >"$work/check.log" 2>&1
  result $? "promtool $version check rules: $(grep -o '[0-9]* rules found' "$work/check.log" || echo "$RULES")" \
    "$work/check.log"
  promtool test rules "$TESTS"/*.yaml >"$work/test.log" 2>&1
  result $? "promtool $version test rules: $(ls "$TESTS"/*.yaml | wc -l) files, $(grep -c '^  - name:' "$TESTS"/*.yaml | awk -F: '{n += $2} END {print n}') tests" \
    "$work/test.log"
else
  echo "promtool is not installed: apt-get install --no-install-recommends prometheus (Debian), or put it on PATH" \
    >"$work/promtool.log"
  result 1 "promtool check rules and test rules" "$work/promtool.log"
fi

run() { # run <check> <command...>: the command's own last line names what it checked
  local name=$1
  shift
  "$@" >"$work/$name.log" 2>&1
  result $? "$name: $(tail -n 1 "$work/$name.log" | sed 's/^[a-zA-Z]* *//')" "$work/$name.log"
}

run prometheusrule python scripts/generate_prometheus_rule.py --check
run dashboard python scripts/generate_dashboard.py --check
run dashboard-schema python scripts/check_dashboard_schema.py
run metric-names python scripts/check_metric_names.py
run metrics-table python scripts/metrics_table.py --check

exit "$failed"
