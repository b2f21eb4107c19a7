"""The nats-server `clamor up` starts: its fsync policy as the server itself reports it, and a restart."""

from __future__ import annotations

from pathlib import Path

import httpx
import nats
import pytest

from services.shared.nats_server import LocalNatsServer, free_port
from tests.support.eventually import eventually


async def jetstream_config(server: LocalNatsServer) -> dict[str, object]:
    """``/varz``'s JetStream config, once the monitoring endpoint answers."""
    found: dict[str, object] = {}

    async def answered() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://{server.host}:{server.monitor_port}/varz")
        except httpx.TransportError:
            return False
        found.update(response.json()["jetstream"]["config"])
        return True

    await eventually(answered, what="nats-server's monitoring endpoint")
    return found


@pytest.mark.parametrize(("sync_always", "interval_ns"), [(True, None), (False, 120 * 10**9)])
async def test_the_server_fsyncs_as_configured(tmp_path: Path, sync_always: bool, interval_ns: int | None) -> None:
    server = LocalNatsServer(tmp_path / "nats", port=free_port(), sync_always=sync_always, monitor_port=free_port())
    server.start()
    try:
        config = await jetstream_config(server)
    finally:
        server.stop()
    # The server leaves the key out when it is false.
    assert config.get("sync_always", False) is sync_always
    if interval_ns is not None:
        assert config["sync_interval"] == interval_ns


async def test_a_killed_server_starts_again_on_its_port_with_its_streams(tmp_path: Path) -> None:
    server = LocalNatsServer(tmp_path / "nats", port=free_port(), sync_always=True)
    server.start()
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(name="KEPT", subjects=["kept.>"])
        await js.publish("kept.one", b"acknowledged before the kill")
        await nc.close()
        server.kill()
        assert server.exited
        assert not server.running
        server.start()
        assert server.running
        nc = await nats.connect(server.url)
        message = await nc.jetstream().get_msg("KEPT", seq=1)
        await nc.close()
    finally:
        server.stop()
    assert message.data == b"acknowledged before the kill"
