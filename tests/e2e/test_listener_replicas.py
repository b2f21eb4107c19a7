"""Two listener processes on one NATS: they split the polled sources, both take pushes, and when one is
killed the other takes its sources once its leases lapse; SIGTERM releases the survivor's leases."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
from collections import Counter
from pathlib import Path

import httpx
import nats
import pytest
import yaml
from aiohttp import web

from clamor.v1 import listener_state_pb2, mention_pb2
from services.listener.records import lease_from_proto, source_lease_key
from services.shared import subjects
from services.shared.nats_server import LocalNatsServer, free_port
from tests.e2e.test_listener_service import Listener, stream_messages
from tests.http_server import LocalHttpServer, serve
from tests.support.eventually import eventually

pytestmark = pytest.mark.e2e

SOURCES = ("s0", "s1", "s2", "s3")
POSTS_PER_SOURCE = 3
SECRET = "push-secret"
REPLICA_HEADER = "X-Replica"
TTL_S = 3


def write_config(folder: Path, replica: str, server: LocalHttpServer, nats_url: str) -> Listener:
    """One replica's config: the same sources as the other's, but each fetch names the replica."""
    folder.mkdir()
    grpc_port, webhook_port = free_port(), free_port()
    sources: list[dict[str, object]] = [
        {
            "kind": "json",
            "name": name,
            "url": server.url(f"/feeds/{name}"),
            "items_path": "items",
            "allow_hosts": ["127.0.0.1"],
            "interval_s": 5,
            "jitter": 0,
            "headers": {REPLICA_HEADER: replica},
        }
        for name in SOURCES
    ]
    sources.append({"kind": "webhook", "name": "crm", "secrets": [SECRET]})
    config = folder / "clamor.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "nats": {"url": nats_url},
                "listener": {
                    "grpc": {"port": grpc_port},
                    "webhook_server": {"port": webhook_port},
                    "lease_ttl_s": TTL_S,
                    "sources": sources,
                },
            }
        )
    )
    return Listener(folder, config, grpc_port, webhook_port, nats_url)


async def holders(listener: Listener) -> dict[str, str]:
    return {name: status.holder for name, status in (await listener.sources()).items()}


async def push(listener: Listener, post_id: str) -> int:
    body = json.dumps({"posts": [{"id": post_id, "text": f"pushed {post_id}"}]})
    signature = "sha256=" + hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"http://127.0.0.1:{listener.webhook_port}/hooks/crm",
            content=body,
            headers={"Content-Type": "application/json", "X-Clamor-Signature": signature},
        )
    return response.status_code


def fetches_since(server: LocalHttpServer, start: int) -> Counter[tuple[str, str]]:
    return Counter(
        (request.path.rsplit("/", 1)[-1], request.headers.get(REPLICA_HEADER, ""))
        for request in server.requests[start:]
    )


async def stored_leases(url: str) -> dict[str, listener_state_pb2.SourceLeaseRecord]:
    nc = await nats.connect(url)
    try:
        bucket = await nc.jetstream().key_value(subjects.LISTENER_LEASES_BUCKET)
        found = {}
        for name in SOURCES:
            entry = await bucket.get(source_lease_key(name))
            found[name] = listener_state_pb2.SourceLeaseRecord.FromString(entry.value or b"")
        return found
    finally:
        await nc.close()


async def test_two_listener_processes_split_the_sources_and_the_survivor_takes_a_killed_ones(
    tmp_path: Path, nats_server: LocalNatsServer
) -> None:
    feeds = {
        name: [{"id": f"{name}-{n}", "text": f"post {n} of {name}"} for n in range(POSTS_PER_SOURCE)]
        for name in SOURCES
    }

    async def feed(request: web.Request) -> web.Response:
        return web.json_response({"items": feeds[request.match_info["source"]]})

    async with serve({("GET", "/feeds/{source}"): feed}) as server:
        a = write_config(tmp_path / "a", "a", server, nats_server.url)
        b = write_config(tmp_path / "b", "b", server, nats_server.url)
        try:
            a.start()
            b.start()
            await a.ready()
            await b.ready()

            async def split() -> bool:
                seen = [await holders(listener) for listener in (a, b)]
                polled = {name: holder for name, holder in seen[0].items() if name in SOURCES}
                return seen[0] == seen[1] and sorted(Counter(polled.values()).values()) == [2, 2]

            await eventually(split, what="the two processes split the sources two and two")
            # A pushed source has no lease: both processes take pushes.
            assert (await holders(a))["crm"] == ""
            assert (await push(a, "p-a"), await push(b, "p-b")) == (202, 202)

            assert a.process is not None
            a.process.send_signal(signal.SIGKILL)
            a.process.wait()

            async def b_holds_all() -> bool:
                polled = {holder for name, holder in (await holders(b)).items() if name in SOURCES}
                return len(polled) == 1 and "" not in polled

            await eventually(b_holds_all, what="the survivor holds every source once the killed one's leases lapse")
            mark = len(server.requests)

            def each_polled_again() -> bool:
                return {source for source, _ in fetches_since(server, mark)} == set(SOURCES)

            await eventually(each_polled_again, what="every source polled by the survivor")
            assert {replica for _, replica in fetches_since(server, mark)} == {"b"}
        finally:
            a.stop()
            b.stop()
        mentions = [mention_pb2.Mention.FromString(m) for m in await stream_messages(nats_server.url, "MENTIONS")]
        expected = [f"json:{item['id']}" for items in feeds.values() for item in items]
        assert sorted(m.id for m in mentions) == sorted([*expected, "webhook:p-a", "webhook:p-b"])
        # The survivor stopped on SIGTERM and released its leases: each lapsed when it stopped, sooner
        # than a TTL after its last renewal, where a lease left to lapse would end.
        leases = [lease_from_proto(record) for record in (await stored_leases(nats_server.url)).values()]
        assert all((lease.expires_at - lease.renewed_at).total_seconds() < TTL_S for lease in leases)
