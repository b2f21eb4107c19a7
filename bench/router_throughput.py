"""Router throughput: complaints turned into cases, grouped, and delivered, per second on this machine.

One process, and for each phase a real nats-server with JetStream of its own, with the router's
parts built by ``services.router.app.assemble`` and its three durable consumers run through
``PullConsumer`` exactly as the service runs them (batch sizes, delivery concurrency, a 1 s fetch
wait). No SLA policies are configured, so the SLA clock has nothing to do and is not run.
Complaints are published to ``clamor.triaged.complaint`` as triage publishes them.

1. outbox: N complaints from N distinct authors (N cases) are published as fast as JetStream
   acknowledges them, and timed from the first publish until the outbox holds N lines. Then a
   probe of about 3 s (at most N/10 complaints), paced at a quarter of that rate, gives the
   path's own latency rather than the burst's queueing. The outbox is watched by tailing the
   file: every 5 ms a ``stat``, and a read of only the bytes added since (the router fsyncs each
   line before acknowledging), so a line is seen at most 5 ms late and the watch costs the
   router next to nothing.
2. grouping: N posts from N/5 customers (5 each, published round-robin, so every customer's
   later posts find an open case) to the outbox; timed until all three consumers have settled
   (nothing pending, nothing unacknowledged: every case and every update delivered).
3. CRM: the same N complaints as in 1 delivered, by the real Zendesk adapter
   (``ZendeskDestination``, ``allow_hosts: [127.0.0.1]``, ``rate_per_s`` 1000), to a local
   Zendesk-shaped HTTP server in this process that serves the three Tickets API calls the
   adapter makes and notes when each ticket is created; then a paced probe as in 1. Every case
   costs two requests: the lookup by external id that makes ``create`` idempotent, and the POST.

Latency is publish (just before the ``publish`` call) → outbox line seen / ticket created. The
last line is the headline.

    python bench/router_throughput.py --complaints 2000 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from aiohttp import web
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from clamor.v1 import mention_pb2, triage_pb2
from services.router.app import Router, assemble
from services.router.config import RouterConfig, RouterSettings
from services.router.domain import case_id_for
from services.shared import subjects
from services.shared.jetstream import ensure_streams, publish
from services.shared.nats_server import LocalNatsServer, free_port
from services.shared.pull_consumer import ConsumerSet
from services.shared.status import Counters

POSTS_PER_CUSTOMER = 5
WATCH_POLL_S = 0.005
TEXT = "Charged twice this month and support will not answer; third week without my refund"
ZENDESK_EMAIL = "agent@acme.example"
ZENDESK_TOKEN = "zd-bench-token"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def complaint(n: int, *, handle: str, text: str = TEXT) -> triage_pb2.TriagedMention:
    """A triaged complaint shaped like ``tests.integration.router_harness.complaint``."""
    mention_id = f"mastodon:{n}"
    mention = mention_pb2.Mention(
        id=mention_id,
        source="mastodon-acme",
        platform="mastodon",
        native_id=str(n),
        url=f"https://social.example/@{handle}/{n}",
        text=f"#{n}: {text}",
        language="en",
        author=mention_pb2.Author(handle=handle, display_name=handle.title(), followers=300),
        watch="acme",
    )
    result = triage_pb2.TriageResult(
        verdict=triage_pb2.VERDICT_COMPLAINT,
        complaint_score=0.93,
        severity=triage_pb2.SEVERITY_MEDIUM,
        category="billing",
        language="en",
        model_version="bench/1",
    )
    return triage_pb2.TriagedMention(mention=mention, result=result)


async def publish_all(
    js: JetStreamContext, tracer: trace.Tracer, items: list[triage_pb2.TriagedMention], *, rate: float = 0.0
) -> dict[str, float]:
    """Publish ``items`` (paced at ``rate``/s when set); case id of each post → its publish time."""
    published: dict[str, float] = {}
    started = time.perf_counter()
    for offset, item in enumerate(items):
        if rate > 0:
            await asyncio.sleep(max(0.0, started + offset / rate - time.perf_counter()))
        published[case_id_for(item.mention.id)] = time.perf_counter()
        await publish(
            js,
            tracer,
            subjects.triaged_subject("complaint"),
            item,
            msg_id=f"triaged:{item.mention.id}",
            mention_id=item.mention.id,
        )
    return published


# --- The router -------------------------------------------------------------------------------


@dataclass
class RunningRouter:
    js: JetStreamContext
    router: Router
    counters: Counters
    consumers: ConsumerSet

    async def pending(self) -> int:
        """Messages the consumers have not acknowledged yet."""
        return await self.consumers.pending()

    async def close(self) -> None:
        await self.consumers.stop()
        await self.router.close()


def router_settings(folder: Path, concurrency: int, **extra: Any) -> RouterSettings:
    data = {"outbox": {"path": "outbox.jsonl"}, "triage_address": "", "delivery": {"concurrency": concurrency}}
    return RouterConfig.model_validate({"router": data | extra}, context={"base_dir": folder}).router


@contextlib.asynccontextmanager
async def router_on_fresh_nats(
    folder: Path, settings: RouterSettings, tracer: trace.Tracer
) -> AsyncIterator[RunningRouter]:
    """A nats-server of its own, and the router's consumers running on it."""
    server = LocalNatsServer(folder / "nats", port=free_port())
    server.start()
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await ensure_streams(js)
        counters = Counters()
        router = await assemble(js, settings, tracer=tracer, counters=counters)
        # The service's fetch wait (1 s) and batch sizes, so the figures are the service's.
        consumers = await ConsumerSet.start(js, router.consumers(), tracer=tracer, counters=counters, fetch_wait_s=1.0)
        running = RunningRouter(js, router, counters, consumers)
        try:
            yield running
        finally:
            await running.close()
            await nc.close()
    finally:
        server.stop()


# --- Watching the outbox, and a local Zendesk ---------------------------------------------------


class OutboxWatch:
    """Tails the outbox: the time each case's first line was seen, reading only what was appended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: dict[str, float] = {}
        self.lines = 0
        self._offset = 0
        self._partial = b""

    def poll(self) -> None:
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return
        if size <= self._offset:
            return
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            data = self._partial + handle.read(size - self._offset)
        self._offset = size
        now = time.perf_counter()
        *complete, self._partial = data.split(b"\n")
        for line in complete:
            if line.strip():
                self.lines += 1
                record = json.loads(line)
                # An update line names its case in update_of; its own id is "<case>.<history length>".
                self.seen.setdefault(str(record.get("update_of") or record["id"]), now)

    async def run(self) -> None:
        while True:
            self.poll()
            await asyncio.sleep(WATCH_POLL_S)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class LocalZendesk:
    """The Tickets API calls ``ZendeskDestination`` makes, tickets indexed by external id; creation times kept."""

    tickets: dict[int, dict[str, Any]] = field(default_factory=dict)
    by_external_id: dict[str, int] = field(default_factory=dict)
    created_at: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    base_url: str = ""

    def app(self) -> web.Application:
        expected = basic(f"{ZENDESK_EMAIL}/token", ZENDESK_TOKEN)

        @web.middleware
        async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.requests += 1
            if request.headers.get("Authorization") != expected:
                return web.json_response({"error": "Couldn't authenticate you"}, status=401)
            return await handler(request)

        app = web.Application(middlewares=[authenticate])
        app.router.add_get("/api/v2/tickets.json", self.list_tickets)
        app.router.add_post("/api/v2/tickets.json", self.create_ticket)
        app.router.add_put(r"/api/v2/tickets/{id:\d+}.json", self.update_ticket)
        return app

    def _shown(self, ticket_id: int) -> dict[str, Any]:
        return {"url": f"{self.base_url}/api/v2/tickets/{ticket_id}.json"} | self.tickets[ticket_id]

    async def list_tickets(self, request: web.Request) -> web.Response:
        found = self.by_external_id.get(request.query.get("external_id", ""))
        tickets = [] if found is None else [self._shown(found)]
        return web.json_response({"tickets": tickets, "next_page": None, "previous_page": None, "count": len(tickets)})

    async def create_ticket(self, request: web.Request) -> web.Response:
        ticket = (await request.json()).get("ticket", {})
        if not ticket.get("comment", {}).get("body") or not ticket.get("external_id"):
            return web.json_response({"error": "RecordInvalid", "description": "Record validation errors"}, status=422)
        ticket_id = len(self.tickets) + 1
        self.tickets[ticket_id] = {
            "id": ticket_id,
            "external_id": ticket["external_id"],
            "subject": ticket.get("subject", ""),
            "priority": ticket.get("priority"),
            "status": "new",
        }
        self.by_external_id[ticket["external_id"]] = ticket_id
        self.created_at.setdefault(ticket["external_id"], time.perf_counter())
        headers = {"Location": f"{self.base_url}/api/v2/tickets/{ticket_id}.json"}
        return web.json_response({"ticket": self._shown(ticket_id)}, status=201, headers=headers)

    async def update_ticket(self, request: web.Request) -> web.Response:
        ticket_id = int(request.match_info["id"])
        if ticket_id not in self.tickets:
            return web.json_response({"error": "RecordNotFound", "description": "Not found"}, status=404)
        changes = (await request.json()).get("ticket", {})
        self.tickets[ticket_id] |= {k: v for k, v in changes.items() if k in ("priority", "status")}
        return web.json_response({"ticket": self._shown(ticket_id), "audit": {"ticket_id": ticket_id, "events": []}})


@contextlib.asynccontextmanager
async def serve_zendesk() -> AsyncIterator[LocalZendesk]:
    zendesk = LocalZendesk()
    runner = web.AppRunner(zendesk.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    zendesk.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield zendesk
    finally:
        await runner.cleanup()


# --- Measuring ----------------------------------------------------------------------------------


async def wait_for(what: str, done: Callable[[], Awaitable[int]], total: int, timeout_s: float) -> None:
    """Poll ``done`` until it reaches ``total``; progress on stderr."""
    started = time.perf_counter()
    reported = started
    while (count := await done()) < total:
        now = time.perf_counter()
        if now - started > timeout_s:
            raise SystemExit(f"{what}: only {count}/{total} after {timeout_s:.0f}s")
        if now - reported >= 2.0:
            note(f"  {what}: {count}/{total} ({now - started:.1f}s)")
            reported = now
        await asyncio.sleep(0.02)


def counting(count: Callable[[], int]) -> Callable[[], Awaitable[int]]:
    async def counted() -> int:
        return count()

    return counted


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100)[q - 1]


def latency(published: dict[str, float], arrived: dict[str, float]) -> str:
    values = [(arrived[key] - at) * 1000 for key, at in published.items() if key in arrived]
    return f"p50 {percentile(values, 50):.0f} ms, p95 {percentile(values, 95):.0f} ms, max {max(values):.0f} ms"


@dataclass
class Figures:
    outbox_per_s: float = 0.0
    grouped_per_s: float = 0.0
    tickets_per_s: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class Run:
    count: int
    concurrency: int
    probe_rate: float
    timeout_s: float
    tracer: trace.Tracer = field(default_factory=lambda: TracerProvider().get_tracer("bench"))


async def burst_and_probe(
    run: Run, running: RunningRouter, arrived: dict[str, float], what: str
) -> tuple[float, str, str]:
    """N complaints at once, then a paced probe; (per second, burst latency, probe description)."""
    burst = [complaint(n, handle=f"user{n}") for n in range(run.count)]
    published = await publish_all(running.js, run.tracer, burst)
    note(f"  published {run.count} complaints in {time.perf_counter() - min(published.values()):.2f}s")
    await wait_for(what, counting(lambda: len(arrived)), run.count, run.timeout_s)
    per_s = run.count / (max(arrived[key] for key in published) - min(published.values()))
    # Well below capacity, so the figure is the path's latency rather than a backlog's; about 3 s of it.
    rate = run.probe_rate or max(1.0, per_s / 4)
    probe = max(20, min(run.count // 10, round(3 * rate)))
    note(f"  latency probe: {probe} complaints at {rate:.0f}/s")
    items = [complaint(n, handle=f"user{n}") for n in range(run.count, run.count + probe)]
    paced = await publish_all(running.js, run.tracer, items, rate=rate)
    await wait_for(f"{what} (probe)", counting(lambda: len(arrived)), run.count + probe, run.timeout_s)
    return per_s, latency(published, arrived), f"at {rate:.0f}/s: {latency(paced, arrived)} ({probe} complaints)"


async def outbox_phase(folder: Path, run: Run, figures: Figures) -> None:
    note(f"outbox: {run.count} complaints from distinct authors (delivery.concurrency {run.concurrency})")
    settings = router_settings(folder, run.concurrency)
    watch = OutboxWatch(settings.outbox.path)
    async with router_on_fresh_nats(folder, settings, run.tracer) as running:
        watcher = asyncio.create_task(watch.run())
        try:
            per_s, burst, probe = await burst_and_probe(run, running, watch.seen, "outbox lines")
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    figures.outbox_per_s = per_s
    figures.notes += [
        f"outbox: {run.count} complaints → {run.count} cases in the outbox at {per_s:,.0f} complaints/s "
        f"(first publish → last line)",
        f"  publish → outbox line, the burst: {burst}",
        f"  publish → outbox line, paced {probe}",
    ]


async def grouping_phase(folder: Path, run: Run, figures: Figures) -> None:
    customers = max(1, run.count // POSTS_PER_CUSTOMER)
    posts = customers * POSTS_PER_CUSTOMER
    note(f"grouping: {posts} posts from {customers} customers ({POSTS_PER_CUSTOMER} each, round-robin)")
    settings = router_settings(folder, run.concurrency)
    items = [
        complaint(k * customers + c, handle=f"customer{c}", text=f"post {k + 1}: still no refund")
        for k in range(POSTS_PER_CUSTOMER)
        for c in range(customers)
    ]
    async with router_on_fresh_nats(folder, settings, run.tracer) as running:
        started = time.perf_counter()
        await publish_all(running.js, run.tracer, items)
        note(f"  published {posts} posts in {time.perf_counter() - started:.2f}s; waiting for the consumers")

        def handled() -> int:
            return running.counters.get("cases") + running.counters.get("posts_grouped")

        await wait_for("posts placed", counting(handled), posts, run.timeout_s)

        async def settled() -> int:
            return posts - await running.pending()

        await wait_for("settled", settled, posts, run.timeout_s)
        elapsed = time.perf_counter() - started
        cases = running.counters.get("cases")
        watch = OutboxWatch(settings.outbox.path)
        watch.poll()
    figures.grouped_per_s = posts / elapsed
    figures.notes.append(
        f"grouping: {posts} posts from {customers} customers → {cases} cases ({posts / max(1, cases):.1f} posts "
        f"a case), {watch.lines} outbox lines (cases and updates), at {figures.grouped_per_s:,.0f} posts/s "
        f"(first publish → consumers settled)"
    )


async def crm_phase(folder: Path, run: Run, figures: Figures) -> None:
    note(f"crm: {run.count} complaints to a local Zendesk (rate_per_s 1000, delivery.concurrency {run.concurrency})")
    async with serve_zendesk() as zendesk:
        destination = {
            "kind": "zendesk",
            "name": "zendesk",
            "base_url": zendesk.base_url,
            "email": ZENDESK_EMAIL,
            "api_token": ZENDESK_TOKEN,
            "allow_hosts": ["127.0.0.1"],
            "rate_per_s": 1000,
            "burst": 100,
        }
        settings = router_settings(
            folder, run.concurrency, destinations=[destination], default_destinations=["zendesk"]
        )
        async with router_on_fresh_nats(folder, settings, run.tracer) as running:
            per_s, burst, probe = await burst_and_probe(run, running, zendesk.created_at, "tickets")
    figures.tickets_per_s = per_s
    figures.notes += [
        f"crm: {run.count} complaints → {run.count} Zendesk tickets at {per_s:,.0f} tickets/s "
        f"({zendesk.requests} requests in all; first publish → last ticket created)",
        f"  publish → ticket created, the burst: {burst}",
        f"  publish → ticket created, paced {probe}",
    ]


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


async def bench(run: Run) -> Figures:
    figures = Figures()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, phase in (("outbox", outbox_phase), ("grouping", grouping_phase), ("crm", crm_phase)):
            folder = root / name
            folder.mkdir()
            await phase(folder, run, figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--complaints", type=int, default=2000, help="complaints (and posts) per phase")
    parser.add_argument("--concurrency", type=int, default=8, help="delivery.concurrency (deliveries at once)")
    parser.add_argument(
        "--probe-rate", type=float, default=0, help="complaints/s of the latency probes (default: 1/4 of the burst)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds each wait may take at most")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    run = Run(options.complaints, options.concurrency, options.probe_rate, options.timeout)
    figures = asyncio.run(bench(run))
    for line in figures.notes:
        print(line)
    rss = peak_rss_mb()
    print(f"run time {time.perf_counter() - started:.1f}s; peak RSS {rss:.0f} MB (this process, not nats-server)")
    print(
        f"router: {figures.outbox_per_s:.0f} complaints/s to the outbox, {figures.grouped_per_s:.0f} posts/s grouped, "
        f"{figures.tickets_per_s:.0f} tickets/s to Zendesk (delivery.concurrency {run.concurrency}), "
        f"peak RSS {rss:.0f} MB"
    )


if __name__ == "__main__":
    main()
