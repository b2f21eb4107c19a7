"""What the schema validators and the policy scan cannot see in a rendered overlay.

``kubernetes-validate`` knows the shape of each object and ``checkov`` its security posture; neither
knows Clamor. This reads the output of ``kubectl kustomize`` and checks that the objects agree with
each other and with the code:

- ``clamor.yaml`` in ConfigMap clamor-config validates for every service through the service's own
  config model, with the environment its Deployment gives it (the dev overlay's overrides included);
  each Deployment runs ``clamor serve <service>`` and its ports, probes and Service use the gRPC (and
  HTTP) ports that the config binds, on every interface;
- every server in ``nats.url`` is a pod of StatefulSet nats, and streams have no more replicas than
  there are servers;
- ``nats.conf`` in ConfigMap nats-config passes ``nats-server -t`` with the StatefulSet's environment,
  and its routes name only pods that exist;
- each KEDA ScaledObject reads a stream and durable that services/shared/subjects.py declares and
  scales a Deployment of the same overlay, from the replicas that Deployment starts with;
- each service's container has port ``metrics`` at ``telemetry.metrics_port`` of clamor.yaml, bound on
  every interface, and the NATS pods have the exporter sidecar's ``metrics`` port;
- each PodMonitor selects the pods of one workload and scrapes a port those pods name, which a
  NetworkPolicy opens to another namespace; with PodMonitors, every service and NATS has one;
- the PrometheusRule holds exactly the groups of deploy/observability/prometheus/clamor-rules.yaml.

    python scripts/check_rendered_manifests.py rendered.yaml [more.yaml...]

Prints one line per check; exits 1 when any fails.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from services.listener.config import ListenerConfig
from services.notifier.config import NotifierConfig
from services.reputation.config import ReputationConfig
from services.router.config import RouterConfig
from services.shared import subjects
from services.shared.config import CommonConfig, load_config
from services.shared.errors import ConfigError
from services.shared.nats_server import nats_server_binary
from services.triage.config import TriageConfig

MODELS: dict[str, type[CommonConfig]] = {
    "listener": ListenerConfig,
    "triage": TriageConfig,
    "router": RouterConfig,
    "reputation": ReputationConfig,
    "notifier": NotifierConfig,
}
REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "observability" / "prometheus" / "clamor-rules.yaml"
# Values Kubernetes fills in at run time (Secrets, the downward API); the checks need only their presence.
FILLED_AT_RUN_TIME = "filled-in-by-kubernetes"
NATS_POD = re.compile(r"^nats-(\d+)\.nats-headless$")
NATS_ROUTE = re.compile(r"nats://nats-(\d+)\.nats-headless:6222")

Resource = dict[str, Any]


@dataclass
class Report:
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str, problem: str = "") -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {what}{'' if ok else ': ' + problem}")
        if not ok:
            self.failures.append(what)


class Rendered:
    """The objects of one rendered overlay, by kind and name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.objects: dict[tuple[str, str], Resource] = {}
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                self.objects[(document["kind"], document["metadata"]["name"])] = document

    def get(self, kind: str, name: str) -> Resource:
        """The object named ``name``, or the generated one named ``name-<content hash>``."""
        found = self.objects.get((kind, name))
        if found is None:
            hashed = [
                obj for (k, n), obj in self.objects.items() if k == kind and re.fullmatch(rf"{name}-[a-z0-9]{{10}}", n)
            ]
            if len(hashed) == 1:
                found = hashed[0]
        if found is None:
            raise LookupError(f"{self.path.name} has no {kind} {name}")
        return found

    def of_kind(self, kind: str) -> list[Resource]:
        return [obj for (k, _), obj in self.objects.items() if k == kind]


def container(workload: Resource) -> Resource:
    containers: list[Resource] = workload["spec"]["template"]["spec"]["containers"]
    return containers[0]


def environment(spec: Resource, *, pod_name: str) -> dict[str, str]:
    """The container's environment as the process would see it, run-time values stood in for."""
    env: dict[str, str] = {}
    for item in spec.get("env", []):
        source = item.get("valueFrom", {})
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[item["name"]] = pod_name
        else:
            env[item["name"]] = FILLED_AT_RUN_TIME
    return env


def grpc_ports(spec: Resource) -> set[int]:
    probes = [spec.get(name, {}) for name in ("startupProbe", "readinessProbe", "livenessProbe")]
    return {probe["grpc"]["port"] for probe in probes if "grpc" in probe}


def named_ports(spec: Resource) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in spec.get("ports", [])}


def service_ports(service: Resource) -> dict[str, tuple[int, Any]]:
    return {port["name"]: (port["port"], port.get("targetPort")) for port in service["spec"]["ports"]}


# opentelemetry-exporter-otlp's default export timeout (OTEL_EXPORTER_OTLP_TIMEOUT).
OTLP_EXPORT_TIMEOUT_S = 10.0


def check_service(rendered: Rendered, name: str, config_text: str, report: Report) -> CommonConfig | None:
    deployment = rendered.get("Deployment", f"clamor-{name}")
    spec = container(deployment)
    what = f"clamor-{name} runs `clamor serve {name}` with clamor.yaml"
    runs = spec["name"] == name and spec.get("command") == ["clamor"] and spec.get("args") == ["serve", name]
    env = environment(spec, pod_name=f"clamor-{name}-0")
    mount = next((m for m in spec.get("volumeMounts", []) if m["name"] == "config"), None)
    mounted = (
        mount is not None
        and mount.get("readOnly") is True
        and env.get("CLAMOR_CONFIG") == (f"{mount['mountPath']}/clamor.yaml")
    )
    if not (runs and mounted):
        report.check(False, what, f"container {spec['name']!r} runs {spec.get('command')} {spec.get('args')}")
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clamor.yaml"
        path.write_text(config_text, encoding="utf-8")
        try:
            config = load_config(MODELS[name], path, environ=env)
        except ConfigError as exc:
            report.check(False, what, str(exc))
            return None
    report.check(True, what)
    settings = getattr(config, name)
    port = settings.grpc.port
    service = service_ports(rendered.get("Service", name))
    report.check(
        settings.grpc.host == "0.0.0.0"
        and named_ports(spec).get("grpc") == port
        and grpc_ports(spec) == {port}
        and service.get("grpc") == (port, "grpc"),
        f"clamor-{name} serves, probes and exposes gRPC on {port}",
        f"config {settings.grpc.host}:{port}, container {named_ports(spec)}, probes {grpc_ports(spec)},"
        f" Service {service}",
    )
    # The drain waits up to shutdown_grace_s three times (in-flight work, the gRPC server, the NATS
    # drain), then flushes spans (the OTLP exporter gives up after 10 s): all before the kubelet's SIGKILL.
    drain_s = 3 * settings.grpc.shutdown_grace_s + OTLP_EXPORT_TIMEOUT_S
    grace_s = deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    report.check(
        grace_s > drain_s,
        f"clamor-{name} drains within its terminationGracePeriodSeconds",
        f"{grace_s} s is not more than the drain's {drain_s:g} s",
    )
    if name == "listener":
        http = settings.webhook_server
        report.check(
            http.host == "0.0.0.0"
            and named_ports(spec).get("http") == http.port
            and service.get("http") == (http.port, "http"),
            f"clamor-listener serves and exposes webhooks on {http.port}",
            f"config {http.host}:{http.port}, container {named_ports(spec)}, Service {service}",
        )
    return config


def check_nats_url(rendered: Rendered, name: str, config: CommonConfig, report: Report) -> None:
    servers = rendered.get("StatefulSet", "nats")["spec"]["replicas"]
    nats = config.nats
    hosts = [urlparse(url.strip()).hostname or "" for url in nats.url.split(",")]
    pods = [NATS_POD.match(host) for host in hosts]
    report.check(
        all(pod is not None and int(pod.group(1)) < servers for pod in pods) and nats.stream_replicas <= servers,
        f"clamor-{name} connects to the {servers} NATS server(s) with R{nats.stream_replicas} streams",
        f"nats.url {nats.url}, stream_replicas {nats.stream_replicas}",
    )


def check_nats_config(rendered: Rendered, report: Report) -> None:
    statefulset = rendered.get("StatefulSet", "nats")
    servers = statefulset["spec"]["replicas"]
    text = rendered.get("ConfigMap", "nats-config")["data"]["nats.conf"]
    routes = {int(index) for index in NATS_ROUTE.findall(text)}
    report.check(
        routes == set(range(servers)) if servers > 1 else not routes,
        f"nats.conf routes to each of the {servers} NATS server(s)",
        f"routes to pods {sorted(routes)}",
    )
    # Only the container's own environment: a variable set on this machine must not hide a missing one.
    env = {"PATH": os.environ.get("PATH", ""), **environment(container(statefulset), pod_name="nats-0")}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "nats.conf"
        path.write_text(text, encoding="utf-8")
        result = subprocess.run(
            [str(nats_server_binary()), "-t", "-c", str(path)], env=env, capture_output=True, text=True, check=False
        )
    report.check(result.returncode == 0, "nats.conf passes nats-server -t", (result.stderr or result.stdout).strip())


def check_scaled_objects(rendered: Rendered, report: Report) -> None:
    consumers = {(spec.stream, spec.durable) for spec in subjects.ALL_CONSUMERS}
    for scaled in rendered.of_kind("ScaledObject"):
        spec = scaled["spec"]
        target = spec["scaleTargetRef"]["name"]
        deployment = rendered.objects.get(("Deployment", target))
        problems = []
        if deployment is None:
            problems.append(f"no Deployment {target}")
        elif spec.get("minReplicaCount") != deployment["spec"].get("replicas"):
            starts = deployment["spec"].get("replicas")
            problems.append(f"minReplicaCount {spec.get('minReplicaCount')}, but {target} starts {starts}")
        for trigger in spec["triggers"]:
            metadata = trigger["metadata"]
            if trigger["type"] != "nats-jetstream":
                problems.append(f"trigger {trigger['type']}")
            elif (metadata.get("stream"), metadata.get("consumer")) not in consumers:
                problems.append(f"no durable {metadata.get('consumer')!r} on stream {metadata.get('stream')!r}")
            if not all(isinstance(value, str) for value in metadata.values()):
                problems.append("trigger metadata values must be strings")
        report.check(
            not problems,
            f"ScaledObject {scaled['metadata']['name']} scales {target} on its durable",
            "; ".join(problems),
        )


def pod_labels(workload: Resource) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"].get("labels", {})
    return labels


def selects(selector: Resource, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and In/NotIn/Exists matchExpressions) selects ``labels``."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        matched = {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def pod_ports(workload: Resource) -> dict[str, int]:
    """Every named port of every container of the pod (names are unique across a pod's containers)."""
    ports: dict[str, int] = {}
    for spec in workload["spec"]["template"]["spec"]["containers"]:
        ports.update(named_ports(spec))
    return ports


def ingress_from_other_namespaces(rendered: Rendered, labels: dict[str, str]) -> set[int]:
    """The ports that NetworkPolicies open to pods of another namespace, for pods with ``labels``."""
    opened: set[int] = set()
    for policy in rendered.of_kind("NetworkPolicy"):
        spec = policy["spec"]
        if "Ingress" not in spec.get("policyTypes", []) or not selects(spec["podSelector"], labels):
            continue
        for rule in spec.get("ingress", []):
            if any("namespaceSelector" in peer for peer in rule.get("from", [])):
                opened |= {port["port"] for port in rule.get("ports", []) if isinstance(port.get("port"), int)}
    return opened


def check_metrics_ports(rendered: Rendered, config_text: str, report: Report) -> None:
    telemetry = (yaml.safe_load(config_text) or {}).get("telemetry", {})
    port, host = telemetry.get("metrics_port"), telemetry.get("metrics_host")
    for name in MODELS:
        spec = container(rendered.get("Deployment", f"clamor-{name}"))
        report.check(
            port is not None and host == "0.0.0.0" and named_ports(spec).get("metrics") == port,
            f"clamor-{name} serves /metrics on port metrics ({port}) on every interface",
            f"telemetry.metrics_host {host!r}, metrics_port {port!r}; container ports {named_ports(spec)}",
        )
    nats = rendered.get("StatefulSet", "nats")
    sidecar = next((c for c in nats["spec"]["template"]["spec"]["containers"] if c["name"] == "metrics"), None)
    report.check(
        sidecar is not None
        and "prometheus-nats-exporter" in sidecar["image"]
        and named_ports(sidecar).get("metrics") == 7777
        and "http://localhost:8222" in sidecar.get("args", [])
        and named_ports(container(nats)).get("monitor") == 8222,
        "nats runs the exporter sidecar on port metrics (7777), reading the monitor port (8222)",
        f"sidecar {sidecar}",
    )


def check_pod_monitors(rendered: Rendered, report: Report) -> None:
    monitors = rendered.of_kind("PodMonitor")
    workloads = rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet")
    monitored: set[str] = set()
    for monitor in monitors:
        name = monitor["metadata"]["name"]
        selected = [w for w in workloads if selects(monitor["spec"]["selector"], pod_labels(w))]
        problems = []
        if len(selected) != 1:
            problems.append(f"selects {[w['metadata']['name'] for w in selected]}, not one workload")
        for workload in selected:
            monitored.add(workload["metadata"]["name"])
            ports = pod_ports(workload)
            opened = ingress_from_other_namespaces(rendered, pod_labels(workload))
            for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                port = ports.get(endpoint.get("port", ""))
                if port is None:
                    problems.append(f"{workload['metadata']['name']} has no port {endpoint.get('port')!r}")
                elif port not in opened:
                    problems.append(f"no NetworkPolicy opens {port} to another namespace")
                if endpoint.get("path", "/metrics") != "/metrics":
                    problems.append(f"path {endpoint['path']}")
        report.check(not problems, f"PodMonitor {name} scrapes /metrics on a port its pods open", "; ".join(problems))
    if monitors:
        expected = {f"clamor-{name}" for name in MODELS} | {"nats"}
        report.check(
            expected <= monitored,
            "every service and NATS has a PodMonitor",
            f"none for {sorted(expected - monitored)}",
        )


def check_prometheus_rules(rendered: Rendered, report: Report) -> None:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    for rule in rendered.of_kind("PrometheusRule"):
        report.check(
            rule["spec"]["groups"] == groups,
            f"PrometheusRule {rule['metadata']['name']} holds the groups of {RULES.name}",
            "run python scripts/generate_prometheus_rule.py",
        )


def check(path: Path) -> list[str]:
    print(f"== {path}")
    report = Report()
    rendered = Rendered(path)
    config_text = rendered.get("ConfigMap", "clamor-config")["data"]["clamor.yaml"]
    for name in MODELS:
        config = check_service(rendered, name, config_text, report)
        if config is not None:
            check_nats_url(rendered, name, config, report)
    check_nats_config(rendered, report)
    check_scaled_objects(rendered, report)
    check_metrics_ports(rendered, config_text, report)
    check_pod_monitors(rendered, report)
    check_prometheus_rules(rendered, report)
    return report.failures


def main() -> int:
    parser = argparse.ArgumentParser(description="Check rendered Clamor manifests against the code.")
    parser.add_argument("rendered", nargs="+", type=Path, help="output of kubectl kustomize")
    options = parser.parse_args()
    failures = [failure for path in options.rendered for failure in check(path)]
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
