"""Writes the Grafana dashboard deploy/observability/grafana/clamor-mesh.json from the panels below.

The panels are data here (title, unit, queries), so that their layout, datasource and variables are
the same everywhere and a new panel is one line. ``--check`` fails when the JSON file differs from
what this would write (CI and tests/unit/test_observability_artifacts.py run it).

    python scripts/generate_dashboard.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "deploy" / "observability" / "grafana" / "clamor-mesh.json"

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Every Clamor series carries the scrape's job; in Kubernetes also the namespace (an empty one,
# outside Kubernetes, matches ".*").
SEL = 'namespace=~"$namespace", job=~"$job"'
RATE = "[$__rate_interval]"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    queries: tuple[Query, ...]
    description: str = ""
    stack: bool = False


def _rate(series: str, by: str, matchers: str = "") -> str:
    selector = f"{{{SEL}{', ' + matchers if matchers else ''}}}"
    return f"sum by ({by}) (rate({series}{selector}{RATE}))"


def _quantiles(series: str, by: str, matchers: str = "") -> tuple[Query, ...]:
    selector = f"{{{SEL}{', ' + matchers if matchers else ''}}}"
    legend = " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(",")) if by else ""
    group = f"{by}, le" if by else "le"
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by ({group}) (rate({series}_bucket{selector}{RATE})))",
            f"p{int(q * 100)} {legend}".strip(),
        )
        for q in (0.5, 0.95)
    )


ROWS: tuple[tuple[str, tuple[Chart, ...]], ...] = (
    (
        "Flow per stage",
        (
            Chart(
                "Messages handled per stage",
                "msg/s",
                (
                    Query(
                        _rate("messaging_client_consumed_messages_total", "messaging_consumer_group_name"),
                        "{{messaging_consumer_group_name}}",
                    ),
                ),
                "Messages each stage's durable consumer finished handling, failed ones included.",
            ),
            Chart(
                "Failed messages per stage",
                "msg/s",
                (
                    Query(
                        _rate(
                            "messaging_client_consumed_messages_total",
                            "messaging_consumer_group_name, error_type",
                            'error_type!=""',
                        ),
                        "{{messaging_consumer_group_name}} {{error_type}}",
                    ),
                ),
                "Messages a stage failed on (redelivered later); alert ClamorStageErrorRate.",
                stack=True,
            ),
            Chart(
                "Dead-lettered per stage",
                "msg/s",
                (
                    Query(
                        _rate("clamor_messages_dead_lettered_total", "clamor_stage, error_type"),
                        "{{clamor_stage}} {{error_type}}",
                    ),
                ),
                "Messages a stage gave up on; alert ClamorMessagesDeadLettered.",
                stack=True,
            ),
            Chart(
                "Dead letters waiting",
                "short",
                (Query(f"max by (clamor_stage) (clamor_dead_letters_depth{{{SEL}}})", "{{clamor_stage}}"),),
                "Messages in each stage's dead-letter stream; alert ClamorDeadLettersWaiting.",
            ),
            Chart(
                "Published per subject",
                "msg/s",
                (
                    Query(
                        _rate("messaging_client_sent_messages_total", "messaging_destination_name, error_type"),
                        "{{messaging_destination_name}} {{error_type}}",
                    ),
                ),
                "Messages published to JetStream; error_type is set on a publish that failed.",
            ),
            Chart(
                "Targets up",
                "short",
                (Query(f"sum by (job) (up{{{SEL}}})", "{{job}}"),),
                "Scrape targets answering per job; alerts ClamorTargetDown and ClamorServiceDown.",
            ),
        ),
    ),
    (
        "Lag",
        (
            Chart(
                "Pending per stage (lag)",
                "short",
                (
                    Query(
                        "max by (clamor_stage, messaging_destination_name)"
                        f" (clamor_jetstream_consumer_pending{{{SEL}}})",
                        "{{clamor_stage}} on {{messaging_destination_name}}",
                    ),
                ),
                "Messages the stage's consumer has not been given yet; alert ClamorConsumerLagGrowing.",
            ),
            Chart(
                "Ack pending per stage",
                "short",
                (
                    Query(
                        "max by (clamor_stage, messaging_destination_name)"
                        f" (clamor_jetstream_consumer_ack_pending{{{SEL}}})",
                        "{{clamor_stage}} on {{messaging_destination_name}}",
                    ),
                ),
                "Messages given to the stage and not yet acknowledged (in flight, or stuck).",
            ),
        ),
    ),
    (
        "Processing latency",
        (
            Chart(
                "Processing time per message, p50 and p95",
                "s",
                _quantiles("messaging_process_duration_seconds", "messaging_consumer_group_name"),
                "Time a stage spent on one message (a batch's time over its messages).",
            ),
        ),
    ),
    (
        "Triage",
        (
            Chart(
                "Verdicts by label and language",
                "short",
                (
                    Query(
                        _rate("clamor_triage_verdicts_total", "clamor_label, clamor_language"),
                        "{{clamor_label}} ({{clamor_language}})",
                    ),
                ),
                "Posts per second by verdict label and detected language.",
                stack=True,
            ),
            Chart(
                "Model time per batch, p50 and p95",
                "s",
                _quantiles("clamor_triage_model_duration_seconds", ""),
                "Time the encoder and heads took for one batch.",
            ),
            Chart(
                "Batch size, p50 and p95",
                "short",
                _quantiles("clamor_triage_batch_size", ""),
                "Posts per triage batch.",
            ),
            Chart(
                "Posts reaching the encoder",
                "short",
                (Query(f"sum(rate(clamor_triage_encoder_posts_total{{{SEL}}}{RATE}))", "encoded"),),
                "Posts per second the encoder saw (the rest were decided before it).",
            ),
        ),
    ),
    (
        "Cases and SLAs",
        (
            Chart(
                "SLA warnings by team and policy",
                "short",
                (
                    Query(
                        "sum by (clamor_team, clamor_sla_policy)"
                        f" (increase(clamor_router_sla_warnings_total{{{SEL}}}{RATE}))",
                        "{{clamor_team}} {{clamor_sla_policy}}",
                    ),
                ),
                "SLA clocks that reached their warning.",
                stack=True,
            ),
            Chart(
                "SLA breaches by team and policy",
                "short",
                (
                    Query(
                        "sum by (clamor_team, clamor_sla_policy)"
                        f" (increase(clamor_router_sla_breaches_total{{{SEL}}}{RATE}))",
                        "{{clamor_team}} {{clamor_sla_policy}}",
                    ),
                ),
                "SLA clocks that ran out (the case escalates); alert ClamorSlaBreached.",
                stack=True,
            ),
            Chart(
                "Cases by team",
                "short",
                (
                    Query(_rate("clamor_router_cases_opened_total", "clamor_team"), "opened {{clamor_team}}"),
                    Query(_rate("clamor_router_cases_grouped_total", "clamor_team"), "grouped {{clamor_team}}"),
                    Query(_rate("clamor_router_cases_escalated_total", "clamor_team"), "escalated {{clamor_team}}"),
                ),
                "Cases opened, complaints grouped into an open case, and cases escalated, per second.",
            ),
        ),
    ),
    (
        "CRM deliveries",
        (
            Chart(
                "CRM requests by destination and outcome",
                "reqps",
                (
                    Query(
                        _rate("clamor_router_crm_requests_total", "clamor_destination, clamor_outcome"),
                        "{{clamor_destination}} {{clamor_outcome}}",
                    ),
                ),
                "Deliveries to each CRM: delivered, retried, failed; alert ClamorCrmFailing.",
                stack=True,
            ),
            Chart(
                "CRM latency, p50 and p95",
                "s",
                _quantiles("clamor_router_crm_duration_seconds", "clamor_destination"),
                "Time one delivery to a CRM took.",
            ),
            Chart(
                "Dead-lettered deliveries by destination",
                "short",
                (
                    Query(
                        f"sum by (clamor_destination) (increase(clamor_router_dead_letters_total{{{SEL}}}{RATE}))",
                        "{{clamor_destination}}",
                    ),
                ),
                "Deliveries the router gave up on; alert ClamorCrmDeadLetters.",
            ),
        ),
    ),
    (
        "Notifications and reputation",
        (
            Chart(
                "Notifications by channel and outcome",
                "short",
                (
                    Query(
                        _rate("clamor_notifier_notifications_total", "clamor_channel, clamor_outcome"),
                        "{{clamor_channel}} {{clamor_outcome}}",
                    ),
                ),
                "Notifications per second: sent, failed; alert ClamorChannelFailing.",
                stack=True,
            ),
            Chart(
                "Notifications waiting",
                "short",
                (Query(f"sum(clamor_notifier_queue_depth{{{SEL}}})", "waiting"),),
                "Held in groups, quiet hours or throttles.",
            ),
            Chart(
                "Pages",
                "short",
                (
                    Query(
                        _rate("clamor_notifier_pages_acknowledged_total", "clamor_channel"),
                        "acknowledged {{clamor_channel}}",
                    ),
                    Query(
                        f"sum(rate(clamor_notifier_pages_reescalated_total{{{SEL}}}{RATE}))",
                        "re-escalated",
                    ),
                    Query(
                        _rate("clamor_notifier_rate_limit_pauses_total", "clamor_channel"),
                        "paused {{clamor_channel}}",
                    ),
                ),
                "Pages acknowledged and escalated again, and rate-limit pauses, per second.",
            ),
            Chart(
                "Time to acknowledge a page, p50 and p95",
                "s",
                _quantiles("clamor_notifier_ack_duration_seconds", ""),
                "From a page being sent to its acknowledgement.",
            ),
            Chart(
                "Reputation alerts by topic kind",
                "short",
                (
                    Query(
                        f"sum by (clamor_topic_kind) (increase(clamor_reputation_alerts_total{{{SEL}}}{RATE}))",
                        "{{clamor_topic_kind}}",
                    ),
                ),
                "Surges of complaints about a topic.",
            ),
        ),
    ),
    (
        "Listener",
        (
            Chart(
                "Polls and poll errors by source",
                "short",
                (
                    Query(_rate("clamor_listener_polls_total", "clamor_source"), "polls {{clamor_source}}"),
                    Query(
                        _rate("clamor_listener_poll_errors_total", "clamor_source, error_type"),
                        "errors {{clamor_source}} {{error_type}}",
                    ),
                ),
                "Polls per second, and those that failed by error class.",
            ),
            Chart(
                "Posts seen and new by source",
                "short",
                (
                    Query(_rate("clamor_listener_posts_seen_total", "clamor_source"), "seen {{clamor_source}}"),
                    Query(_rate("clamor_listener_posts_new_total", "clamor_source"), "new {{clamor_source}}"),
                ),
                "Posts a source returned, and those published as new mentions.",
            ),
            Chart(
                "Silence per source",
                "s",
                (
                    Query(
                        f"min by (clamor_source) (clamor_listener_newest_post_age_seconds{{{SEL}}})",
                        "{{clamor_source}}",
                    ),
                ),
                "Time since each source's newest post; alert ClamorSourceSilent (6 h unless set per source).",
            ),
            Chart(
                "Rate-limit waits by source",
                "short",
                (Query(_rate("clamor_listener_rate_limit_waits_total", "clamor_source"), "{{clamor_source}}"),),
                "Times a source waited for its rate limit or a Retry-After, per second.",
            ),
        ),
    ),
    (
        "gRPC, HTTP and NATS",
        (
            Chart(
                "gRPC call latency, p95",
                "s",
                (
                    Query(
                        "histogram_quantile(0.95, sum by (rpc_service, rpc_method, le)"
                        f" (rate(rpc_server_call_duration_seconds_bucket{{{SEL}}}{RATE})))",
                        "{{rpc_service}}/{{rpc_method}}",
                    ),
                ),
                "Time to answer a gRPC call, per method (health and reflection excluded).",
            ),
            Chart(
                "gRPC calls by status",
                "reqps",
                (
                    Query(
                        _rate("rpc_server_call_duration_seconds_count", "rpc_method, rpc_grpc_status_code"),
                        "{{rpc_method}} {{rpc_grpc_status_code}}",
                    ),
                ),
                "Calls per second by method and gRPC status code (0 is OK).",
                stack=True,
            ),
            Chart(
                "Outbound HTTP latency, p95",
                "s",
                (
                    Query(
                        "histogram_quantile(0.95, sum by (server_address, le)"
                        f" (rate(http_client_request_duration_seconds_bucket{{{SEL}}}{RATE})))",
                        "{{server_address}}",
                    ),
                ),
                "Requests to sources, CRMs and channels, per host.",
            ),
            Chart(
                "Outbound HTTP by status",
                "reqps",
                (
                    Query(
                        _rate(
                            "http_client_request_duration_seconds_count",
                            "server_address, http_response_status_code, error_type",
                        ),
                        "{{server_address}} {{http_response_status_code}} {{error_type}}",
                    ),
                ),
                "Requests per second by host and status; error_type when no answer came.",
                stack=True,
            ),
            Chart(
                "NATS connections and messages",
                "short",
                (
                    Query(f"sum by (server_id) (gnatsd_varz_connections{{{SEL}}})", "connections {{server_id}}"),
                    Query(f"sum by (server_id) (rate(gnatsd_varz_in_msgs{{{SEL}}}{RATE}))", "in/s {{server_id}}"),
                    Query(f"sum by (server_id) (rate(gnatsd_varz_out_msgs{{{SEL}}}{RATE}))", "out/s {{server_id}}"),
                    Query(f"sum by (server_id) (gnatsd_varz_slow_consumers{{{SEL}}})", "slow consumers {{server_id}}"),
                ),
                "From the prometheus-nats-exporter sidecar of each NATS server (job clamor-nats).",
            ),
        ),
    ),
)


def _variables() -> list[dict[str, Any]]:
    def query(name: str, label: str, text: str, all_value: str) -> dict[str, Any]:
        return {
            "type": "query",
            "name": name,
            "label": label,
            "datasource": DATASOURCE,
            "query": {"query": text, "refId": f"{name}-variable"},
            "refresh": 2,
            "sort": 1,
            "multi": True,
            "includeAll": True,
            "allValue": all_value,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [],
        }

    return [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Data source",
            "query": "prometheus",
            "options": [],
            "refresh": 1,
        },
        query("namespace", "Namespace", 'label_values(target_info{service_namespace="clamor"}, namespace)', ".*"),
        query("job", "Job", 'label_values(up{namespace=~"$namespace", job=~"clamor-.+"}, job)', "clamor-.+"),
    ]


def _panel(chart: Chart, panel_id: int, x: int, y: int) -> dict[str, Any]:
    return {
        "type": "timeseries",
        "id": panel_id,
        "title": chart.title,
        "description": chart.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": query.expr,
                "legendFormat": query.legend,
                "range": True,
            }
            for i, query in enumerate(chart.queries)
        ],
        "fieldConfig": {
            "defaults": {
                "unit": chart.unit,
                "min": 0,
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 20 if chart.stack else 0,
                    "showPoints": "never",
                    "stacking": {"mode": "normal" if chart.stack else "none", "group": "A"},
                },
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    for title, charts in ROWS:
        panels.append(
            {
                "type": "row",
                "id": len(panels) + 1,
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        for i, chart in enumerate(charts):
            panels.append(_panel(chart, len(panels) + 1, x=12 * (i % 2), y=y + 8 * (i // 2)))
        y += 8 * ((len(charts) + 1) // 2)
    return {
        "uid": "clamor-mesh",
        "title": "Clamor mesh",
        "description": "Flow, lag, latency and outcomes of Clamor's five services (docs/observability.md).",
        "tags": ["clamor"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": _variables()},
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description="Write (or check) the Clamor Grafana dashboard.")
    parser.add_argument("--check", action="store_true", help="fail if the file differs from what would be written")
    options = parser.parse_args()
    text = render()
    if options.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"FAIL {OUTPUT.relative_to(REPO)} is out of date: run python scripts/generate_dashboard.py")
            return 1
        print(f"ok   {OUTPUT.relative_to(REPO)} is up to date")
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
