"""A three-node NATS JetStream cluster of real nats-server processes on loopback.

Each node has its own client port, route port, ``server_name`` and store folder, and every node
lists every route, as a static cluster in production does. A node can be killed with SIGKILL and
restarted on the same ports and store, so a test can take the leader of a stream away, let the
cluster elect another, and wait until the old node has caught up again.

Readiness is observed, never slept for: the cluster is ready once every node answers a JetStream
request (the meta leader is elected) and a stream at R3 can be placed (every node has joined).
"""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import nats
from nats.errors import Error as NatsLibraryError
from nats.js.api import StorageType, StreamConfig

from services.shared.nats_server import free_port, nats_server_binary, port_open
from tests.support.eventually import eventually

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.js.api import StreamInfo

HOST = "127.0.0.1"
SIZE = 3
# A stream the readiness check places at R3 and removes again; no service uses the name.
PROBE_STREAM = "CLUSTER_PROBE"
# A cold cluster on a busy machine elects its meta leader within seconds; this only ends a stuck start.
READY_WITHIN_S = 90.0
# What a request may take while a leader is being elected: it fails, and the check asks again.
REQUEST_TIMEOUT_S = 2.0
# Failures a request meets while a node is down or a leader is being elected.
UNAVAILABLE = (TimeoutError, OSError, NatsLibraryError)


async def _expected(_: Exception) -> None:
    """A client of a cluster whose nodes are killed on purpose meets refused connections: not news."""


@dataclass
class ClusterNode:
    name: str
    client_port: int
    route_port: int
    store_dir: Path
    log_file: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.client_port}"

    @property
    def route_url(self) -> str:
        return f"nats://{HOST}:{self.route_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


class NatsCluster:
    """``size`` JetStream nodes routed to each other; ``urls`` lists them all for a client."""

    def __init__(self, folder: Path, *, size: int = SIZE, name: str = "clamor-test") -> None:
        self.name = name
        self.nodes = [
            ClusterNode(
                name=f"n{index}",
                client_port=free_port(HOST),
                route_port=free_port(HOST),
                store_dir=folder / f"n{index}",
                log_file=folder / f"n{index}.log",
            )
            for index in range(1, size + 1)
        ]

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-separated: the form ``nats.url`` takes."""
        return ",".join(node.url for node in self.nodes)

    @property
    def url_list(self) -> list[str]:
        return [node.url for node in self.nodes]

    def node(self, name: str) -> ClusterNode:
        return next(node for node in self.nodes if node.name == name)

    async def start(self) -> None:
        for node in self.nodes:
            self._spawn(node)
        await self.ready()

    def stop(self) -> None:
        for node in self.nodes:
            if node.running and node.process is not None:
                node.process.terminate()
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL: no shutdown, no leadership handed over; the others must notice and elect."""
        process = node.process
        assert process is not None, f"{node.name} never started"
        assert process.poll() is None, f"{node.name} is not running"
        process.kill()
        process.wait()

    async def restart(self, node: ClusterNode) -> None:
        """Start ``node`` again on its ports and store, and wait until it answers JetStream requests."""
        assert not node.running, f"{node.name} is still running"
        self._spawn(node)
        await eventually(partial(self._listening, node), what=f"{node.name} listening", within_s=30)
        await eventually(partial(self._jetstream_answers, node), what=f"{node.name} answering JetStream requests")

    async def ready(self) -> None:
        for node in self.nodes:
            await eventually(partial(self._listening, node), what=f"{node.name} listening", within_s=30)
        for node in self.nodes:
            await eventually(
                partial(self._jetstream_answers, node),
                what=f"{node.name} answering JetStream (meta leader elected)",
                within_s=READY_WITHIN_S,
            )
        await eventually(self._places_r3, what="an R3 stream placed on the cluster", within_s=READY_WITHIN_S)

    async def connect(self) -> NatsClient:
        """A client that knows every node and follows the cluster through kills and restarts."""
        return await nats.connect(
            servers=self.url_list,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
            connect_timeout=2,
            error_cb=_expected,
        )

    async def stream_info(self, stream: str) -> StreamInfo | None:
        """The stream as its leader describes it, or None while none answers (an election)."""
        nc = await self.connect()
        try:
            return await nc.jetstream(timeout=REQUEST_TIMEOUT_S).stream_info(stream)
        except UNAVAILABLE:
            return None
        finally:
            await nc.close()

    async def describe(self, stream: str) -> StreamInfo:
        """The stream as its leader describes it, once one answers."""
        found: list[StreamInfo] = []

        async def answered() -> bool:
            info = await self.stream_info(stream)
            found[:] = [info] if info is not None else []
            return bool(found)

        await eventually(answered, what=f"{stream} described by its leader", every_s=0.2)
        return found[0]

    async def leader_of(self, stream: str) -> ClusterNode:
        """The node that leads ``stream`` (a KV bucket ``b`` is stream ``KV_b``), once one does."""
        found: list[ClusterNode] = []

        async def led() -> bool:
            info = await self.stream_info(stream)
            leader = info.cluster.leader if info is not None and info.cluster is not None else None
            found[:] = [node for node in self.nodes if node.name == leader and node.running]
            return bool(found)

        await eventually(led, what=f"a leader for {stream}", every_s=0.2)
        return found[0]

    async def wait_current(self, stream: str) -> None:
        """Until ``stream`` has a leader and every replica is online and caught up with it."""

        async def current() -> bool:
            info = await self.stream_info(stream)
            if info is None or info.cluster is None or not info.cluster.leader:
                return False
            peers = info.cluster.replicas or []
            if len(peers) != len(self.nodes) - 1:
                return False
            return all(peer.current and not peer.offline for peer in peers)

        await eventually(current, what=f"every replica of {stream} current", every_s=0.2)

    def _spawn(self, node: ClusterNode) -> None:
        node.store_dir.mkdir(parents=True, exist_ok=True)
        command = [
            str(nats_server_binary()),
            "--jetstream",
            "--store_dir",
            str(node.store_dir),
            "--server_name",
            node.name,
            "--addr",
            HOST,
            "--port",
            str(node.client_port),
            "--cluster",
            node.route_url,
            "--cluster_name",
            self.name,
            "--routes",
            ",".join(other.route_url for other in self.nodes if other is not node),
        ]
        with node.log_file.open("ab") as log:
            node.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _listening(self, node: ClusterNode) -> bool:
        assert node.running, f"{node.name} exited; see {node.log_file}"
        return port_open(HOST, node.client_port)

    async def _jetstream_answers(self, node: ClusterNode) -> bool:
        try:
            nc = await nats.connect(
                node.url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=1, error_cb=_expected
            )
        except UNAVAILABLE:
            return False
        try:
            await nc.jetstream(timeout=REQUEST_TIMEOUT_S).account_info()
        except UNAVAILABLE:
            return False
        finally:
            await nc.close()
        return True

    async def _places_r3(self) -> bool:
        nc = await self.connect()
        js = nc.jetstream(timeout=REQUEST_TIMEOUT_S)
        try:
            config = StreamConfig(
                name=PROBE_STREAM, subjects=["cluster.probe"], storage=StorageType.MEMORY, num_replicas=len(self.nodes)
            )
            await js.add_stream(config)
            await js.delete_stream(PROBE_STREAM)
        except UNAVAILABLE:
            with contextlib.suppress(*UNAVAILABLE):
                await js.delete_stream(PROBE_STREAM)
            return False
        finally:
            await nc.close()
        return True

    def logs(self) -> str:
        return "\n".join(
            f"--- {node.name}\n{node.log_file.read_text(errors='replace')[-3000:]}"
            for node in self.nodes
            if node.log_file.exists()
        )
