"""Start the whole mesh as separate processes, as production does, for end-to-end tests.

By default the mesh runs on its own nats-server; given ``nats_url`` (one URL or a cluster's
comma-separated list) it runs on that NATS instead, with ``stream_replicas`` for every stream and
bucket. A service may run as several replicas: each is its own process with its own gRPC port.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import yaml

from services.cli.live import Snapshot, consumer_lag, pending_work
from services.cli.mesh import SERVICES, MeshConfig, load_mesh_config
from services.cli.probe import ServiceReport, probe, probe_all
from services.shared import subjects
from services.shared.config import GrpcSettings
from services.shared.nats_server import LocalNatsServer, free_port
from services.shared.status import QUEUED_GAUGE

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "services" / "cli_data" / "sample_posts.jsonl"


def sample_posts(folder: Path, count: int) -> Path:
    """The first ``count`` bundled sample posts, as a replay file in ``folder``."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:count]
    path = folder / "posts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` laid over it, mappings merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_config(
    folder: Path,
    *,
    nats_url: str,
    posts: Path,
    rate: float,
    stream_replicas: int = 1,
    overrides: dict[str, Any] | None = None,
) -> Path:
    config: dict[str, Any] = {
        "nats": {"url": nats_url, "stream_replicas": stream_replicas},
        "telemetry": {"span_dir": "spans", "log_format": "json"},
        "listener": {
            "grpc": {"port": free_port()},
            "sources": [{"name": "e2e", "kind": "replay", "path": str(posts), "rate_per_second": rate}],
        },
        "triage": {"grpc": {"port": free_port()}, "batch_size": 16, "batch_wait_ms": 100},
        "router": {"grpc": {"port": free_port()}, "outbox": {"path": "outbox.jsonl"}},
        "reputation": {"grpc": {"port": free_port()}},
        "notifier": {
            "grpc": {"port": free_port()},
            # One message per escalation, at once: the test counts them.
            "channels": [{"kind": "file", "name": "file", "path": "notifications.jsonl"}],
            "grouping": {"group_by": ["case"], "group_wait_s": 0, "group_interval_s": 0},
            "tick_s": 0.2,
        },
    }
    path = folder / "clamor.yaml"
    path.write_text(yaml.safe_dump(merged(config, overrides or {})), encoding="utf-8")
    return path


def replica_key(name: str, replica: int) -> str:
    """The process key of a service's replica: the first keeps the service's name."""
    return name if replica == 1 else f"{name}#{replica}"


@dataclass
class Mesh:
    folder: Path
    posts: Path
    rate: float = 200.0
    # An external NATS (a cluster's URL list); None starts a nats-server of the mesh's own.
    nats_url: str | None = None
    stream_replicas: int = 1
    # Settings laid over the default config, section by section (a destination, an alert channel).
    overrides: dict[str, Any] = field(default_factory=dict)
    nats: LocalNatsServer | None = field(init=False, default=None)
    config_path: Path = field(init=False)
    config: MeshConfig = field(init=False)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # The gRPC port of every process, by process key ("router", "router#2").
    grpc_ports: dict[str, int] = field(default_factory=dict)
    # Where every process serves Prometheus /metrics, by process key.
    metrics_ports: dict[str, int] = field(default_factory=dict)
    # Environment variables for every service process (OTEL_*), over the test's own.
    env: dict[str, str] = field(default_factory=dict)
    # What a test did to the running mesh before it stopped, for the assertions after.
    observed: dict[str, Any] = field(default_factory=dict)
    _calm: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.nats_url is None:
            self.nats = LocalNatsServer(
                self.folder / "nats", port=free_port(), monitor_port=free_port(), log_file=self.folder / "nats.log"
            )
            self.nats_url = self.nats.url
        self.config_path = write_config(
            self.folder,
            nats_url=self.nats_url,
            posts=self.posts,
            rate=self.rate,
            stream_replicas=self.stream_replicas,
            overrides=self.overrides,
        )
        self.config = load_mesh_config(self.config_path)

    @property
    def servers(self) -> list[str]:
        return self.config.nats.servers

    @property
    def outbox(self) -> Path:
        return self.config.router.outbox.path

    @property
    def span_dir(self) -> Path:
        assert self.config.telemetry.span_dir is not None
        return self.config.telemetry.span_dir

    def start(self, *, replicas: int = 1) -> None:
        """Start NATS (unless external) and ``replicas`` processes of every service."""
        if self.nats is not None:
            self.nats.start()
        for replica in range(1, replicas + 1):
            for name in SERVICES:
                self.start_service(name, replica=replica)

    def start_service(self, name: str, *, replica: int = 1) -> None:
        key = replica_key(name, replica)
        env = dict(os.environ, HF_HUB_OFFLINE="1") | self.env
        self.metrics_ports[key] = self.metrics_ports.get(key) or free_port()
        env["CLAMOR__TELEMETRY__METRICS_PORT"] = str(self.metrics_ports[key])
        port = self.config.grpc(name).port
        if replica > 1:
            # Every replica reads the same file; only its gRPC port differs.
            port = self.grpc_ports.get(key) or free_port()
            env[f"CLAMOR__{name.upper()}__GRPC__PORT"] = str(port)
        self.grpc_ports[key] = port
        with (self.folder / f"{key.replace('#', '-')}.log").open("ab") as log:
            self.processes[key] = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.folder,
            )

    def pids(self) -> dict[str, int]:
        return {key: process.pid for key, process in self.processes.items()}

    def exited(self) -> dict[str, int]:
        """The processes that are no longer running, with their exit codes."""
        return {key: code for key, process in self.processes.items() if (code := process.poll()) is not None}

    def freeze_with_unacked_work(self, name: str, timeout_s: float = 30.0) -> int:
        """SIGSTOP ``name`` at a moment it holds delivered, unacknowledged messages; returns how many."""
        process = self.processes[name]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            process.send_signal(signal.SIGSTOP)
            held = asyncio.run(self._ack_pending(name))
            if held > 0:
                return held
            process.send_signal(signal.SIGCONT)
            time.sleep(0.01)
        raise AssertionError(f"{name} never held unacknowledged messages")

    async def _ack_pending(self, durable: str) -> int:
        nc = await nats.connect(servers=self.servers)
        try:
            info = await nc.jetstream().consumer_info(subjects.TRIAGE_CONSUMER.stream, durable)
        finally:
            await nc.close()
        return int(info.num_ack_pending or 0)

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                raise AssertionError(f"{name} did not stop within 20s of SIGTERM") from None
        if self.nats is not None:
            self.nats.stop()

    def scrape(self, key: str) -> str:
        """The Prometheus exposition text a process serves on /metrics now."""
        url = f"http://127.0.0.1:{self.metrics_ports[key]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            return str(answer.read().decode("utf-8"))

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.folder.glob("*.log"))

    def counters(self, service: str) -> dict[str, int]:
        reports = asyncio.run(probe_all(self.config, timeout_s=1.0))
        return next(r.counters for r in reports if r.name == service)

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            reports = asyncio.run(probe_all(self.config, timeout_s=1.0))
            if all(r.serving for r in reports):
                return
            time.sleep(0.2)
        raise AssertionError(f"services not ready within {timeout_s}s\n{self.logs()}")

    def wait_idle(self, timeout_s: float = 120.0) -> None:
        """Every post replayed and no consumer with pending or unacknowledged work, twice in a row."""
        deadline = time.monotonic() + timeout_s
        calm = 0
        while time.monotonic() < deadline:
            if asyncio.run(self._idle()):
                calm += 1
                if calm >= 3:
                    return
            else:
                calm = 0
            time.sleep(0.3)
        raise AssertionError(f"mesh not idle within {timeout_s}s\n{self.logs()}")

    async def _idle(self) -> bool:
        # What `clamor up --exit-when-idle` waits for: sources exhausted, every durable answered, none busy.
        reports = await probe_all(self.config, timeout_s=1.0)
        nc = await nats.connect(servers=self.servers)
        try:
            return Snapshot(reports=reports, lag=await pending_work(reports, nc)).idle
        finally:
            await nc.close()

    # ---- the same observations for async tests, every replica included --------------------

    async def reports(self) -> dict[str, ServiceReport]:
        """Every process's health and status, by process key."""
        keys = list(self.processes)
        found = await asyncio.gather(
            *(probe(key.split("#")[0], GrpcSettings(port=self.grpc_ports[key]), timeout_s=2.0) for key in keys)
        )
        return dict(zip(keys, found, strict=True))

    async def serving(self) -> bool:
        """Every process answers health with SERVING (a process that exited fails the test at once)."""
        assert not self.exited(), f"exited: {self.exited()}\n{self.logs()}"
        return all(report.serving for report in (await self.reports()).values())

    async def idle(self) -> bool:
        """Every listener's sources exhausted and no work pending anywhere, at three checks in a row."""
        self._calm = self._calm + 1 if await self._idle_everywhere() else 0
        return self._calm >= 3

    async def lag(self) -> dict[str, int]:
        """Messages each durable has not acknowledged yet; a durable that does not answer is left out."""
        nc = await nats.connect(servers=self.servers, connect_timeout=2, max_reconnect_attempts=1)
        try:
            return await consumer_lag(nc)
        finally:
            await nc.close()

    async def _idle_everywhere(self) -> bool:
        reports = await self.reports()
        listeners = [r for key, r in reports.items() if key.startswith("listener")]
        # One replica replays each source (the one holding its lease): a source is done when any
        # replica reports it exhausted, and every replica must report its sources at all.
        if not all(r.sources for r in listeners):
            return False
        done: dict[str, bool] = {}
        for report in listeners:
            for source in report.sources:
                done[source.name] = done.get(source.name, False) or source.exhausted
        if not all(done.values()):
            return False
        lag = await self.lag()
        # Notifications a notifier holds in its groups count as work, in every replica.
        held = sum(r.gauges.get(QUEUED_GAUGE, 0) for key, r in reports.items() if key.startswith("notifier"))
        # Every durable answered (none is missing for a leader being elected) and none holds work.
        return len(lag) == len(subjects.ALL_CONSUMERS) and sum(lag.values()) + held == 0


def outbox_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def outbox_cases(path: Path) -> list[dict[str, Any]]:
    """Each case as its latest outbox line shows it (a case's updates carry the whole case)."""
    latest: dict[str, dict[str, Any]] = {}
    for line in outbox_lines(path):
        latest[line.get("update_of", line["id"])] = line
    return list(latest.values())


def mention_ids_of(cases: list[dict[str, Any]]) -> list[str]:
    return [m["mention"]["id"] for case in cases for m in case["mentions"]]
