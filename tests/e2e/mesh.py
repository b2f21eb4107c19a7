"""Start the whole mesh as separate processes, as production does, for end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import yaml

from services.cli.live import pending_work
from services.cli.mesh import SERVICES, MeshConfig, load_mesh_config
from services.cli.probe import probe_all
from services.shared import subjects
from services.shared.nats_server import LocalNatsServer, free_port

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "services" / "cli_data" / "sample_posts.jsonl"


def write_config(folder: Path, *, nats_url: str, posts: Path, rate: float) -> Path:
    config: dict[str, Any] = {
        "nats": {"url": nats_url},
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
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@dataclass
class Mesh:
    folder: Path
    posts: Path
    rate: float = 200.0
    nats: LocalNatsServer = field(init=False)
    config_path: Path = field(init=False)
    config: MeshConfig = field(init=False)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # What a test did to the running mesh before it stopped, for the assertions after.
    observed: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.nats = LocalNatsServer(self.folder / "nats", port=free_port(), log_file=self.folder / "nats.log")
        self.config_path = write_config(self.folder, nats_url=self.nats.url, posts=self.posts, rate=self.rate)
        self.config = load_mesh_config(self.config_path)

    @property
    def outbox(self) -> Path:
        return self.config.router.outbox.path

    @property
    def span_dir(self) -> Path:
        assert self.config.telemetry.span_dir is not None
        return self.config.telemetry.span_dir

    def start(self) -> None:
        self.nats.start()
        for name in SERVICES:
            self.start_service(name)

    def start_service(self, name: str) -> None:
        log = (self.folder / f"{name}.log").open("ab")
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.folder,
        )
        log.close()

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
        nc = await nats.connect(self.nats.url)
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
        self.nats.stop()

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
        reports = await probe_all(self.config, timeout_s=1.0)
        listener = next(r for r in reports if r.name == "listener")
        if not listener.sources or not all(s.exhausted for s in listener.sources):
            return False
        nc = await nats.connect(self.nats.url)
        try:
            lag = await pending_work(reports, nc)
        finally:
            await nc.close()
        return len(lag) >= 3 and sum(lag.values()) == 0


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
