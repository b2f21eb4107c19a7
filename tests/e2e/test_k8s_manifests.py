"""The production overlay, run as written: every workload's own command, environment and files.

``kubectl kustomize`` renders ``deploy/k8s/overlays/production``; the test then does the kubelet's
part (tests/support/k8s_pods.py) and starts each Deployment's and StatefulSet's container as local
processes: the NATS StatefulSet as a 3-node JetStream cluster from its own ``nats.conf``, and each
Clamor service from its own ``clamor serve`` command with the generated ConfigMap. Cluster names and
ports become free loopback ports; Secret values come from the fixture below. Every probe the
manifests name must answer on the port it names, and posts replayed through this mesh must become
cases, one trace each, at a real OTLP receiver standing where the collector would be.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sysconfig
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clamor.v1 import router_service_pb2
from services.cli import clients
from services.shared.nats_server import free_port, nats_server_binary
from tests.e2e.mesh import SAMPLE
from tests.e2e.verdicts import expected_verdicts
from tests.support.eventually import eventually
from tests.support.k8s_pods import Cluster, Probe, Workload, dns_names, render, replace_all
from tests.support.otlp_receiver import OtlpReceiver

# The suite's 300 s hang guard is too short for three NATS nodes and every service, cold on a busy
# 2-core machine; the waits inside are the real limits, and they add up to more than that.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = REPO / "deploy" / "k8s" / "overlays" / "production"
SERVICES = ("listener", "triage", "router", "reputation", "notifier")
# What an operator creates with `kubectl create secret` (docs/deploy.md), here with test values.
SECRETS = {
    "clamor-nats": {"user": "clamor", "password": "k8s-test-nats-password"},
    "clamor-secrets": {},
}
POSTS = 60
SOURCE = "k8s-replay"
# A cold start loads the triage model on a busy machine.
STARTUP_S = 240.0


@dataclass
class Pod:
    workload: Workload
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    # Container port → the loopback port it became.
    ports: dict[int, int]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Deployment:
    """The rendered overlay, started: pods by name, the OTLP receiver, the replayed posts."""

    cluster: Cluster
    pods: dict[str, Pod]
    receiver: OtlpReceiver
    posts: Path
    folder: Path
    network: dict[str, str] = field(default_factory=dict)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log.read_text(errors='replace')[-3000:]}" for p in self.pods.values())

    def pod_of(self, component: str) -> Pod:
        return next(p for p in self.pods.values() if p.workload.component == component)


def _executable(argv0: str) -> str:
    """The container's program, as installed beside this interpreter (the image's PATH has it too)."""
    if argv0 == "nats-server":
        return str(nats_server_binary())
    candidate = Path(sysconfig.get_path("scripts")) / argv0
    if not candidate.exists():
        raise AssertionError(f"the container runs {argv0!r}, which is not installed here")
    return str(candidate)


def _network(
    cluster: Cluster, workloads: dict[str, Workload], receiver_port: int
) -> tuple[dict[str, str], dict[tuple[str, int], int]]:
    """Cluster names to loopback: each pod's container ports get free ports, each Service name its pods'.

    Returns (``host:port`` → ``127.0.0.1:port`` for every name a pod may use, (pod, container port) → local port).
    """
    local: dict[tuple[str, int], int] = {}
    network: dict[str, str] = {}
    nats = workloads["nats"]
    headless = nats.manifest["spec"]["serviceName"]
    for i in range(nats.replicas):
        pod = f"{nats.name}-{i}"
        for port in nats.ports.values():
            local[(pod, port)] = free_port()
            for host in dns_names(f"{pod}.{headless}"):
                network[f"{host}:{port}"] = f"127.0.0.1:{local[(pod, port)]}"
    for component in SERVICES:
        for port in workloads[component].ports.values():
            local[(f"{workloads[component].name}-0", port)] = free_port()
    for service, port, component, container_port in cluster.service_ports():
        if component == "otel-collector":
            target = receiver_port  # the collector's image is not here; the test's receiver stands in
        elif component == "nats":
            target = local[(f"{nats.name}-0", container_port)]  # a ClusterIP picks a pod; the first will do
        elif component in SERVICES:
            target = local[(f"{workloads[component].name}-0", container_port)]
        else:
            raise AssertionError(f"Service {service} selects {component!r}, which this test does not start")
        for host in dns_names(service):
            network.setdefault(f"{host}:{port}", f"127.0.0.1:{target}")
    return network, local


def _start_nats(
    cluster: Cluster, workload: Workload, folder: Path, network: dict[str, str], local: dict[tuple[str, int], int]
) -> list[Pod]:
    nodes = [f"{workload.name}-{i}" for i in range(workload.replicas)]
    ports = {node: {p: local[(node, p)] for p in workload.ports.values()} for node in nodes}
    named = workload.ports
    pods = []
    for node in nodes:
        root = folder / node
        mounts = cluster.write_mounts(workload, root, remap=network)
        remap = {**network, **mounts}
        env = {"PATH": os.environ["PATH"], **cluster.environment(workload, pod_name=node, secrets=SECRETS, remap=remap)}
        argv = [replace_all(a, remap) for a in workload.argv]
        # Flags override the file's listen addresses only: loopback, on this node's free ports.
        node_ports = ports[node]
        argv = [
            _executable(argv[0]),
            *argv[1:],
            "--addr",
            "127.0.0.1",
            "--port",
            str(node_ports[named["client"]]),
            "--http_port",
            str(node_ports[named["monitor"]]),
            "--cluster",
            f"nats://127.0.0.1:{node_ports[named['cluster']]}",
        ]
        pods.append(
            Pod(workload, node, argv, env, root, {c: node_ports[c] for c in node_ports}, folder / f"{node}.log")
        )
    return pods


def _service_overrides(component: str, pod: Pod, workload: Workload, posts: Path) -> dict[str, str]:
    """Listen on loopback at the pod's remapped ports; the listener also replays the test's posts."""
    prefix = f"CLAMOR__{component.upper()}__"
    env = {f"{prefix}GRPC__HOST": "127.0.0.1", f"{prefix}GRPC__PORT": str(pod.ports[workload.ports["grpc"]])}
    http = workload.ports.get("http")
    if http is not None:
        section = {"listener": "WEBHOOK_SERVER", "router": "CALLBACK", "notifier": "ACK"}[component]
        env[f"{prefix}{section}__HOST"] = "127.0.0.1"
        env[f"{prefix}{section}__PORT"] = str(pod.ports[http])
    metrics = workload.ports.get("metrics")
    if metrics is not None:
        # Every pod serves /metrics on 9464 in the cluster; here they share one host.
        env["CLAMOR__TELEMETRY__METRICS_HOST"] = "127.0.0.1"
        env["CLAMOR__TELEMETRY__METRICS_PORT"] = str(pod.ports[metrics])
    if component == "listener":
        source = {"name": SOURCE, "kind": "replay", "path": str(posts), "rate_per_second": 30}
        env[f"{prefix}SOURCES"] = json.dumps([source])
    return env


def _start_service(
    cluster: Cluster,
    workload: Workload,
    *,
    folder: Path,
    network: dict[str, str],
    local: dict[tuple[str, int], int],
    posts: Path,
) -> Pod:
    name = f"{workload.name}-0"
    root = folder / name
    mounts = cluster.write_mounts(workload, root, remap=network)
    remap = {**network, **mounts}
    pod_env = cluster.environment(workload, pod_name=name, secrets=SECRETS, remap=remap)
    ports = {p: local[(name, p)] for p in workload.ports.values()}
    argv = [replace_all(a, remap) for a in workload.argv]
    scratch = Path(mounts.get("/var/lib/clamor", str(root)))
    pod = Pod(workload, name, [_executable(argv[0]), *argv[1:]], {}, scratch, ports, folder / f"{name}.log")
    pod.env = {
        "PATH": os.environ["PATH"],
        "HOME": str(scratch),
        "HF_HUB_OFFLINE": "1",
        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
        **pod_env,
        **_service_overrides(workload.component, pod, workload, posts),
    }
    return pod


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("k8s")
    cluster = Cluster(render(PRODUCTION))
    workloads = {w.component: w for w in cluster.workloads()}
    missing = {"nats", *SERVICES} - set(workloads)
    assert not missing, f"the production overlay lacks {sorted(missing)}"
    posts = folder / "posts.jsonl"
    posts.write_text("\n".join(SAMPLE.read_text(encoding="utf-8").splitlines()[:POSTS]) + "\n", encoding="utf-8")
    with OtlpReceiver() as receiver:
        network, local = _network(cluster, workloads, receiver.port)
        pods = _start_nats(cluster, workloads["nats"], folder, network, local)
        pods += [
            _start_service(cluster, workloads[c], folder=folder, network=network, local=local, posts=posts)
            for c in SERVICES
        ]
        deployed = Deployment(cluster, {p.name: p for p in pods}, receiver, posts, folder, network)
        try:
            for pod in pods:
                pod.start()
            yield deployed
        finally:
            for pod in reversed(pods):
                pod.stop()


async def _grpc_serving(port: int, service: str) -> bool:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2
            )
        except grpc.aio.AioRpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def _http_ok(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


async def _answers(pod: Pod, probe: Probe, deployed: Deployment) -> bool:
    if pod.process is None or pod.process.poll() is not None:
        raise AssertionError(f"{pod.name} exited\n{deployed.logs()}")
    port = pod.ports[probe.port]
    if probe.kind == "grpc":
        return await _grpc_serving(port, probe.service)
    return await asyncio.to_thread(_http_ok, port, probe.path)


async def _all_probes_answer(deployed: Deployment) -> list[str]:
    answered = []
    for pod in deployed.pods.values():
        for probe in pod.workload.probes():
            await eventually(
                functools.partial(_answers, pod, probe, deployed),
                what=f"{pod.name} {probe.name} on port {probe.port}",
                within_s=STARTUP_S,
            )
            answered.append(f"{pod.name} {probe.name}")
    return answered


async def _cases(port: int) -> list[router_service_pb2.ListCasesResponse]:
    pages = []
    async with clients.connect(f"127.0.0.1:{port}") as channel:
        token = ""
        while True:
            page = await clients.router(channel).ListCases(
                router_service_pb2.ListCasesRequest(page_size=500, page_token=token), timeout=5
            )
            pages.append(page)
            token = page.next_page_token
            if not token:
                return pages


def test_every_probe_answers_and_posts_become_cases_one_trace_each(deployment: Deployment) -> None:
    answered = asyncio.run(_all_probes_answer(deployment))
    # Every workload names its probes; NATS answers them on each of its three nodes.
    assert {p.workload.name for p in deployment.pods.values()} == {n.split(" ")[0].rsplit("-", 1)[0] for n in answered}
    complaints, borderline = expected_verdicts(deployment.posts, SOURCE)
    expected = set(complaints) - borderline
    assert len(expected) >= 10  # the posts must exercise the path
    router = deployment.pod_of("router")
    router_port = router.ports[router.workload.ports["grpc"]]

    def case_mentions() -> list[str]:
        pages = asyncio.run(_cases(router_port))
        return [m.mention.id for page in pages for case in page.cases for m in case.mentions]

    async def all_cases() -> bool:
        return set(await asyncio.to_thread(case_mentions)) - borderline >= expected

    asyncio.run(eventually(all_cases, what=f"every complaint a case\n{deployment.logs()}", within_s=STARTUP_S))
    delivered = case_mentions()
    assert [m for m, n in Counter(delivered).items() if n > 1] == []
    assert set(delivered) - borderline == expected

    # The port the PodMonitors scrape answers with each service's metrics and resource.
    for pod in deployment.pods.values():
        if pod.workload.component in SERVICES:
            port = pod.ports[pod.workload.ports["metrics"]]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
                page = answer.read().decode()
            assert f'service_name="{pod.workload.component}"' in page, pod.name
            assert 'deployment_environment_name="' in page

    # SIGTERM flushes each service's spans to the receiver, as a rolling update would.
    stopped = [pod for pod in deployment.pods.values() if pod.workload.component in SERVICES]
    for pod in stopped:
        pod.stop()
    # A clean drain exits 0; a service that had to be killed, or crashed on the way out, does not.
    assert {p.name: p.process.returncode for p in stopped if p.process is not None} == {p.name: 0 for p in stopped}
    traces: dict[str, set[str]] = {}
    for span in deployment.receiver.spans:
        mention = span.attributes.get("clamor.mention.id")
        if mention:
            traces.setdefault(mention, set()).add(span.trace_id)
    assert expected <= set(traces)
    assert {m: t for m, t in traces.items() if len(t) != 1} == {}
    services = {span.service for span in deployment.receiver.spans}
    assert services >= {"listener", "triage", "router"}
