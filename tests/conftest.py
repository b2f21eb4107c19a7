"""Fixtures shared by every test layer: a real nats-server with JetStream on a free loopback port,
or a three-node JetStream cluster of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from services.shared.nats_server import LocalNatsServer, free_port
from tests.support.nats_cluster import NatsCluster


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[LocalNatsServer]:
    server = LocalNatsServer(tmp_path / "nats", port=free_port(), log_file=tmp_path / "nats-server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def nc(nats_server: LocalNatsServer) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


@pytest.fixture
async def nats_cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    """Three JetStream nodes routed to each other, ready to place R3 streams."""
    cluster = NatsCluster(tmp_path / "cluster")
    try:
        await cluster.start()
        yield cluster
    finally:
        cluster.stop()
