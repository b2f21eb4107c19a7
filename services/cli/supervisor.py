"""Run the whole mesh on one machine: a local nats-server and the five services as processes.

Each service runs in its own session, so Ctrl-C reaches only the supervisor, which then stops
the services in order (SIGTERM, their graceful shutdown, SIGKILL after a grace period) and
nats-server last. A service that exits unexpectedly is restarted, as Kubernetes would, and so is
the local nats-server, on the same port and store: the services' clients reconnect to it and their
durable consumers go on from where they were. If the supervisor itself dies, services notice
(``CLAMOR_SUPERVISOR_PID``) and stop on their own.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from services.cli.mesh import SERVICES, MeshConfig
from services.shared.errors import NatsServerError
from services.shared.nats_server import LocalNatsServer

SUPERVISOR_ENV = "CLAMOR_SUPERVISOR_PID"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
STOP_GRACE_S = 15.0
RESTART_DELAY_S = 1.0


def _die_with_parent() -> None:
    """Linux: deliver SIGTERM to this child when the supervisor dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class ServiceProcess:
    name: str
    command: list[str]
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    exited_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        self.exited_at = None

    def signal(self, signum: int) -> None:
        if self.running and self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)


def metrics_port(config: MeshConfig, index: int) -> int | None:
    """Where the ``index``-th service serves /metrics under `clamor up`: one port each, from the
    configured one up (9464, 9465, ...); in Kubernetes every pod uses the configured port itself."""
    base = config.telemetry.metrics_port
    return base + index if base else None


def metrics_port_env(config: MeshConfig, index: int) -> dict[str, str]:
    port = metrics_port(config, index)
    return {"CLAMOR__TELEMETRY__METRICS_PORT": str(port)} if port is not None else {}


class Supervisor:
    """Owns nats-server and the service processes for ``clamor up``."""

    def __init__(self, config: MeshConfig, config_path: Path, data_dir: Path) -> None:
        self.config = config
        self.config_path = config_path
        self.data_dir = data_dir
        self.nats: LocalNatsServer | None = None
        self.nats_restarts = 0
        self._nats_exited_at: float | None = None
        env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        env[SUPERVISOR_ENV] = str(os.getpid())
        self.services = [
            ServiceProcess(
                name=name,
                command=[sys.executable, "-m", f"services.{name}", "--config", str(config_path)],
                log_path=data_dir / "logs" / f"{name}.log",
                env=env | metrics_port_env(config, index),
            )
            for index, name in enumerate(SERVICES)
        ]

    def scrape_targets(self) -> dict[str, str]:
        """What Prometheus can scrape here: each service's /metrics and the local nats-server's monitor."""
        host = self.config.telemetry.metrics_host
        targets = {
            name: f"http://{host}:{port}/metrics"
            for index, name in enumerate(SERVICES)
            if (port := metrics_port(self.config, index)) is not None
        }
        if self._starts_nats and self.config.nats.monitor_port is not None:
            targets["nats-server"] = f"http://127.0.0.1:{self.config.nats.monitor_port}/varz"
        return targets

    @property
    def _starts_nats(self) -> bool:
        servers = self.config.nats.servers
        # One local address is ours to start; a list of servers is a cluster that runs on its own.
        return len(servers) == 1 and urlparse(servers[0]).hostname in LOCAL_HOSTS

    def start(self) -> None:
        servers = self.config.nats.servers
        url = urlparse(servers[0])
        if self._starts_nats:
            self.nats = LocalNatsServer(
                self.data_dir / "nats",
                host="127.0.0.1" if url.hostname == "localhost" else url.hostname or "127.0.0.1",
                port=url.port or 4222,
                sync_always=self.config.nats.sync == "always",
                monitor_port=self.config.nats.monitor_port,
                log_file=self.data_dir / "logs" / "nats-server.log",
                preexec=_die_with_parent,
            )
            self.nats.start()
        for service in self.services:
            service.start()

    def keep_alive(self) -> list[str]:
        """Restart nats-server and services that exited; returns the names restarted now."""
        restarted = []
        now = time.monotonic()
        if self._keep_nats_alive(now):
            restarted.append("nats-server")
        for service in self.services:
            if service.running:
                continue
            if service.exited_at is None:
                service.exited_at = now
            elif now - service.exited_at >= RESTART_DELAY_S:
                service.restarts += 1
                service.start()
                restarted.append(service.name)
        return restarted

    def _keep_nats_alive(self, now: float) -> bool:
        nats = self.nats
        if nats is None or not nats.exited:
            return False
        if self._nats_exited_at is None:
            self._nats_exited_at = now
            return False
        if now - self._nats_exited_at < RESTART_DELAY_S:
            return False
        try:
            nats.start()
        except NatsServerError:
            # The port may still be held a moment after the crash; the next call tries again.
            self._nats_exited_at = time.monotonic()
            return False
        self._nats_exited_at = None
        self.nats_restarts += 1
        return True

    def stop(self) -> None:
        for service in self.services:
            service.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for service in self.services:
            if service.process is None:
                continue
            try:
                service.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                service.signal(signal.SIGKILL)
                service.process.wait()
        if self.nats is not None:
            self.nats.stop()


__all__ = ["NatsServerError", "ServiceProcess", "Supervisor"]
