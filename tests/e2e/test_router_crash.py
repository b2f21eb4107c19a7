"""SIGKILL the router the moment the CRM said 201, a hundred times: every complaint delivered, no duplicate ticket.

The router runs as its own process (``python -m services.router``) against a real nats-server
and a local Zendesk (tests/integration/crm_servers.py). Each ticket create is answered 201,
written out to the socket, and then the router process is killed with SIGKILL, before it can
record the ticket or acknowledge its JetStream message. A new router process is started each
time; JetStream redelivers the job after ``ack_wait``, and the ticket lookup by external id must
turn the repeated create into the ticket that already exists.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import yaml
from aiohttp import web
from nats.js.errors import NotFoundError

from services.router.domain import case_id_for
from services.shared import subjects
from services.shared.jetstream import ensure_streams
from services.shared.nats_server import free_port
from tests.integration.crm_servers import FakeZendesk, respond, serve_crm
from tests.integration.router_harness import complaint, publish_triaged

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client as NatsClient
    from nats.js import JetStreamContext

    from services.shared.nats_server import LocalNatsServer

KILLS = 100
TIMEOUT_S = 420.0


@dataclass
class KillingZendesk(FakeZendesk):
    """A FakeZendesk that kills the router right after answering each ticket create, ``KILLS`` times."""

    armed: bool = False
    kills: int = 0
    router_pid: int = 0
    creates: list[str] = field(default_factory=list)

    async def create_ticket(self, request: web.Request) -> web.Response:
        if not self.armed:
            # Until every complaint is a case, creates are refused: the kills then hit deliveries only.
            return respond({"error": "warming up"}, status=503, headers={"Retry-After": "1"})
        response = await super().create_ticket(request)
        self.creates.append(str(self.tickets[max(self.tickets)]["external_id"]))
        if self.kills < KILLS:
            await response.prepare(request)
            await response.write_eof()
            os.kill(self.router_pid, signal.SIGKILL)
            self.kills += 1
        return response


def write_config(folder: Path, *, nats_url: str, crm_url: str, fake: FakeZendesk) -> Path:
    config = {
        "nats": {"url": nats_url},
        "telemetry": {"log_format": "json"},
        "router": {
            "grpc": {"port": free_port()},
            "escalate_at": "CRITICAL",
            "destinations": [
                {
                    "kind": "zendesk",
                    "name": "zendesk",
                    "base_url": crm_url,
                    "email": fake.email,
                    "api_token": fake.api_token,
                    "allow_hosts": ["127.0.0.1"],
                    "rate_per_s": 200,
                }
            ],
            "default_destinations": ["zendesk"],
            # One job in flight, redelivered a second after a crash.
            "delivery": {"ack_wait_s": 1, "concurrency": 1, "first_retry_s": 0.2, "max_retry_s": 1},
        },
    }
    path = folder / "clamor.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start_router(config: Path, folder: Path) -> subprocess.Popen[bytes]:
    log = (folder / "router.log").open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "services.router", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, HF_HUB_OFFLINE="1"),
            cwd=folder,
        )
    finally:
        log.close()


async def idle(js: JetStreamContext, spec: subjects.ConsumerSpec) -> bool:
    try:
        info = await js.consumer_info(spec.stream, spec.durable)
    except NotFoundError:  # not created yet by a router still starting
        return False
    return bool(info.num_pending == 0 and info.num_ack_pending == 0)


async def test_a_hundred_sigkills_after_the_crm_said_201_lose_nothing_and_duplicate_nothing(
    nats_server: LocalNatsServer, nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    await ensure_streams(js)
    fake = KillingZendesk()
    async with serve_crm(fake) as server:
        config = write_config(tmp_path, nats_url=nats_server.url, crm_url=server.base_url, fake=fake)
        router = start_router(config, tmp_path)
        fake.router_pid = router.pid
        try:
            for n in range(KILLS):
                await publish_triaged(js, complaint(f"mastodon:{n}", handle=f"customer{n}"))
            deadline = time.monotonic() + TIMEOUT_S
            while not await idle(js, subjects.ROUTER_CONSUMER):
                assert time.monotonic() < deadline, "the router did not take the complaints in"
                await asyncio.sleep(0.1)
            fake.armed = True
            restarts = 0
            while not (len(fake.tickets) == KILLS and await idle(js, subjects.ROUTER_DELIVERY_CONSUMER)):
                assert time.monotonic() < deadline, (
                    f"after {fake.kills} kills and {restarts} restarts: {len(fake.tickets)} tickets; "
                    + (tmp_path / "router.log").read_text()[-3000:]
                )
                if router.poll() is not None:
                    router = start_router(config, tmp_path)
                    fake.router_pid = router.pid
                    restarts += 1
                await asyncio.sleep(0.05)
        finally:
            router.terminate()
            router.wait(timeout=30)
    expected = {case_id_for(f"mastodon:{n}") for n in range(KILLS)}
    external_ids = [ticket["external_id"] for ticket in fake.tickets.values()]
    assert fake.kills == KILLS
    assert restarts >= KILLS
    assert len(external_ids) == len(set(external_ids)) == KILLS
    assert set(external_ids) == expected
    # Every create reached the CRM exactly once; every repeat after a kill was answered by the lookup.
    assert sorted(fake.creates) == sorted(expected)
