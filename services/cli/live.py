"""What `clamor up` shows while it runs: services, the flow of work, the latest notifications."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsLibraryError
from nats.js.errors import NotFoundError
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table

from clamor.v1 import notification_pb2, notifier_service_pb2
from services.cli import clients
from services.cli.mesh import MeshConfig
from services.cli.probe import ServiceReport, probe_all
from services.cli.supervisor import Supervisor
from services.shared import subjects
from services.shared.status import QUEUED_GAUGE

# (service, counter) pairs behind each column of the flow line.
FLOW = (
    ("polled", "listener", "polled"),
    ("triaged", "triage", "triaged"),
    ("complaints", "triage", "complaints"),
    ("cases", "router", "cases"),
    ("escalations", "router", "escalations"),
    ("notifications", "notifier", "notifications"),
    ("dead-lettered", "*", "dead_lettered"),
)


@dataclass
class Snapshot:
    reports: list[ServiceReport]
    lag: dict[str, int]
    # (title, mention id) of the newest notifications.
    notifications: list[tuple[str, str]] = field(default_factory=list)
    # False while NATS does not answer: ``lag`` then lacks the consumers' share and is a floor.
    nats_connected: bool = True

    @property
    def pending(self) -> str:
        """The pending count as shown: a floor, marked so, while consumer lag cannot be read."""
        total = sum(self.lag.values())
        return str(total) if self.nats_connected else f"≥{total} (NATS unreachable)"

    def flow(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for label, service, counter in FLOW:
            totals[label] = sum(r.counters.get(counter, 0) for r in self.reports if service in ("*", r.name))
        return totals

    @property
    def idle(self) -> bool:
        """Every replay source is exhausted and no consumer has work pending."""
        listener = next((r for r in self.reports if r.name == "listener"), None)
        if listener is None or not listener.serving or not listener.sources:
            return False
        if not all(s.exhausted for s in listener.sources):
            return False
        # A consumer that did not answer is unknown work, not none: every durable must have reported.
        answered = all(spec.durable in self.lag for spec in subjects.ALL_CONSUMERS)
        busy = sum(self.lag.values())
        return self.nats_connected and answered and all(r.serving for r in self.reports) and busy == 0


# The lag entry for notifications the notifier holds in its groups rather than in a consumer.
NOTIFIER_QUEUE = "notifier-queue"


async def consumer_lag(nc: NatsClient) -> dict[str, int]:
    """Messages not yet processed, per durable consumer (pending plus unacknowledged)."""
    js = nc.jetstream()
    lag: dict[str, int] = {}
    for spec in subjects.ALL_CONSUMERS:
        try:
            info = await js.consumer_info(spec.stream, spec.durable)
        except (TimeoutError, NotFoundError, NatsLibraryError):
            continue
        lag[spec.durable] = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
    return lag


def queued(reports: list[ServiceReport]) -> dict[str, int]:
    """Work the services hold outside any consumer, as their GetStatus gauges report it.

    Only the notifier holds such work today (notifications waiting for group_wait, a rate budget or
    the end of quiet hours); an unreachable notifier reports nothing rather than a guess.
    """
    notifier = next((r for r in reports if r.name == "notifier" and r.serving), None)
    return {NOTIFIER_QUEUE: notifier.gauges.get(QUEUED_GAUGE, 0)} if notifier is not None else {}


def unpublished(reports: list[ServiceReport]) -> dict[str, int]:
    """Posts each replay source has still to publish, as the listener reports them.

    Read whatever the listener's health: while NATS is down it is not serving, and that is exactly
    when its backlog grows.
    """
    listener = next((r for r in reports if r.name == "listener"), None)
    sources = listener.sources if listener is not None else []
    return {f"{REPLAY_PREFIX}{s.name}": s.remaining for s in sources if s.kind == "replay"}


# Lag entries for replay sources are named "replay:<source>", apart from the durables' names.
REPLAY_PREFIX = "replay:"


async def pending_work(reports: list[ServiceReport], nc: NatsClient | None) -> dict[str, int]:
    """Unpublished replay posts, consumer lag and what the services hold: zero everywhere means idle."""
    lag = await consumer_lag(nc) if nc is not None and nc.is_connected else {}
    return {**unpublished(reports), **lag, **queued(reports)}


async def notification_log(
    config: MeshConfig, *, limit: int, case_id: str = "", channel_name: str = ""
) -> list[notification_pb2.Notification]:
    """The notifier's log, newest first; raises AioRpcError when the notifier does not answer."""
    async with clients.connect(clients.address_of(config.notifier.grpc)) as channel:
        stub = clients.notifier(channel)

        async def ask(token: str, size: int) -> clients.Page[notification_pb2.Notification]:
            request = notifier_service_pb2.ListNotificationsRequest(
                page_size=size, page_token=token, case_id=case_id, channel=channel_name
            )
            answer = await stub.ListNotifications(request, timeout=5.0)
            return answer.notifications, answer.next_page_token

        return await clients.follow_pages(ask, limit=limit)


async def send_test_message(config: MeshConfig, name: str) -> notifier_service_pb2.TestChannelResponse:
    async with clients.connect(clients.address_of(config.notifier.grpc)) as channel:
        response: notifier_service_pb2.TestChannelResponse = await clients.notifier(channel).TestChannel(
            notifier_service_pb2.TestChannelRequest(channel=name), timeout=30.0
        )
    return response


async def latest_notifications(config: MeshConfig, limit: int = 5) -> list[tuple[str, str]]:
    """(line, mention id) of the newest notifications, one per escalation with all its channels."""
    async with clients.connect(clients.address_of(config.notifier.grpc)) as channel:
        try:
            response = await clients.notifier(channel).ListNotifications(
                notifier_service_pb2.ListNotificationsRequest(page_size=limit * 4), timeout=1.0
            )
        except grpc.aio.AioRpcError:
            return []
    first: dict[str, notification_pb2.Notification] = {}
    channels: dict[str, list[str]] = {}
    for n in response.notifications:
        first.setdefault(n.source_id, n)
        channels.setdefault(n.source_id, []).append(n.channel)
    lines = [(f"{n.title} → {', '.join(channels[key])}", n.mention_id) for key, n in first.items()]
    return lines[:limit]


async def take_snapshot(config: MeshConfig, nc: NatsClient | None) -> Snapshot:
    reports = await probe_all(config, timeout_s=0.5)
    return Snapshot(
        reports=reports,
        lag=await pending_work(reports, nc),
        notifications=await latest_notifications(config),
        nats_connected=nc is not None and nc.is_connected,
    )


def render(snapshot: Snapshot, supervisor: Supervisor) -> RenderableType:
    services = Table(title="Clamor mesh", title_justify="left", expand=False)
    for column in ("service", "pid", "health", "restarts", "counters"):
        services.add_column(column)
    restarts = {s.name: s for s in supervisor.services}
    for report in snapshot.reports:
        process = restarts[report.name]
        colour = "green" if report.serving else ("yellow" if report.health != "UNREACHABLE" else "red")
        counters = ", ".join(f"{k} {v}" for k, v in (report.counters | report.gauges).items())
        services.add_row(
            report.name,
            str(process.pid or "-"),
            f"[{colour}]{report.health}[/{colour}]",
            str(process.restarts),
            escape(counters),
        )
    flow = snapshot.flow()
    line = (
        "  ·  ".join(f"[bold]{value}[/bold] {label}" for label, value in flow.items())
        + f"  ·  [bold]{escape(snapshot.pending)}[/bold] pending"
    )
    nats = supervisor.nats
    parts: list[RenderableType] = [services, line]
    if nats is not None:
        state = "[green]running[/green]" if nats.running else "[red]down, restarting[/red]"
        parts.append(f"nats-server {nats.url} (pid {nats.pid or '-'}): {state}, restarts {supervisor.nats_restarts}")
    listener = next((r for r in snapshot.reports if r.name == "listener"), None)
    for source in listener.sources if listener is not None else []:
        state = "[green]done[/green]" if source.exhausted else "running"
        error = f"  [red]{escape(source.last_error)}[/red]" if source.last_error else ""
        backlog = f", {source.remaining} to go" if source.kind == "replay" and not source.exhausted else ""
        parts.append(
            f"source {escape(source.name)} ({source.kind}): {source.published} published{backlog}, {state}{error}"
        )
    if snapshot.notifications:
        parts.append("[dim]latest notifications:[/dim]")
        parts += [f"  {escape(title)}" for title, _ in snapshot.notifications]
    parts.append("[dim]Ctrl-C stops everything.[/dim]")
    return Group(*parts)


def plain_line(snapshot: Snapshot) -> str:
    flow = snapshot.flow()
    ready = sum(r.serving for r in snapshot.reports)
    counts = ", ".join(f"{label} {value}" for label, value in flow.items())
    return f"{ready}/{len(snapshot.reports)} services ready; {counts}; {snapshot.pending} pending"
