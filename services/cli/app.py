"""The ``clamor`` command: run the mesh, run one service, inspect it, classify posts."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import grpc
import nats
import typer
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client as NatsClient
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from clamor.v1 import listener_service_pb2, notification_pb2
from services.cli import cases, dashboard, live, traces, trends
from services.cli.clients import address_of
from services.cli.config_in_use import ConfigOption, load_or_exit, mesh_in_use
from services.cli.mesh import (
    DEFAULT_DATA_DIR,
    SERVICES,
    Bootstrap,
    MeshConfig,
    ensure_default_config,
)
from services.cli.probe import ServiceReport, probe_all
from services.cli.sources import app as sources_app
from services.cli.supervisor import Supervisor
from services.cli.triage import app as triage_app
from services.shared.config import NatsSettings
from services.shared.consumer_gauges import DEAD_LETTERS_GAUGE_PREFIX, LAG_GAUGE_PREFIX
from services.shared.errors import NatsServerError

app = typer.Typer(
    help="Clamor: hear public complaints, triage them, route them as cases, tell the right people.",
    no_args_is_help=True,
    add_completion=False,
)
config_app = typer.Typer(help="Work with the config file.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(sources_app, name="sources")
app.add_typer(triage_app, name="triage")
app.add_typer(cases.case_app, name="case")
app.add_typer(cases.dlq_app, name="dlq")
app.add_typer(cases.rules_app, name="rules")

console = Console()
errors = Console(stderr=True, soft_wrap=True)


@app.command()
def up(
    config: ConfigOption = None,
    data_dir: Annotated[Path, typer.Option(help="Where NATS data, logs, spans and outputs go.")] = DEFAULT_DATA_DIR,
    fresh: Annotated[bool, typer.Option("--fresh", help="Delete the data folder first and start over.")] = False,
    exit_when_idle: Annotated[
        bool, typer.Option("--exit-when-idle", help="Stop once every replay source is done and nothing is pending.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Stop after this many seconds (0: never).")] = 0.0,
) -> None:
    """Start nats-server and the five services on this machine; show what flows until Ctrl-C."""
    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    boot = ensure_default_config(data_dir) if config is None else Bootstrap(config, created=False)
    if boot.created:
        console.print(f"wrote the default config to [bold]{boot.config_path}[/bold] (edit it to add real sources)")
    mesh = load_or_exit(boot.config_path)
    supervisor = Supervisor(mesh, boot.config_path.resolve(), data_dir.resolve())
    console.print(f"starting nats-server and {', '.join(SERVICES)}; logs in {data_dir / 'logs'}")
    scrape = supervisor.scrape_targets()
    if scrape:
        console.print("metrics: " + ", ".join(f"{name} {url}" for name, url in scrape.items()))
    try:
        supervisor.start()
    except NatsServerError as exc:
        errors.print(f"[red]{escape(str(exc))}[/red]")
        supervisor.stop()
        raise typer.Exit(1) from exc
    try:
        snapshot = asyncio.run(_watch(mesh, supervisor, exit_when_idle=exit_when_idle, timeout_s=timeout))
    finally:
        console.print("stopping services and nats-server…")
        supervisor.stop()
    console.print(f"stopped. {live.plain_line(snapshot)}" if snapshot else "stopped.")
    outbox = mesh.router.outbox.path
    if outbox.exists():
        lines = [line for line in outbox.read_text(encoding="utf-8").splitlines() if line.strip()]
        # A case's first line opens it; later lines (a post added, an escalation) name it in "update_of".
        updates = sum(1 for line in lines if '"update_of"' in line)
        console.print(f"outbox: {len(lines) - updates} cases ({updates} updates) in {outbox}")
    traced = [mention for _, mention in snapshot.notifications if mention] if snapshot else []
    if traced:
        console.print(f"follow one escalated mention end to end: [bold]clamor trace {escape(traced[0])}[/bold]")


async def _watch(
    mesh: MeshConfig, supervisor: Supervisor, *, exit_when_idle: bool, timeout_s: float
) -> live.Snapshot | None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    nc = await _connect_quietly(mesh.nats)
    started = time.monotonic()
    snapshot: live.Snapshot | None = None
    idle_checks = 0
    last_plain = 0.0
    live_view = Live(console=console, refresh_per_second=4, transient=False) if console.is_terminal else None
    with live_view if live_view is not None else contextlib.nullcontext():
        while not stop.is_set():
            for name in supervisor.keep_alive():
                errors.print(f"[yellow]{name} exited; restarted it (see {supervisor.data_dir / 'logs'})[/yellow]")
            # The client does not reconnect by itself (see _connect_quietly): after nats-server
            # restarts, a closed one is replaced, so consumer lag is read again.
            if nc is None or nc.is_closed:
                nc = await _connect_quietly(mesh.nats)
            snapshot = await live.take_snapshot(mesh, nc)
            if live_view is not None:
                live_view.update(live.render(snapshot, supervisor))
            elif time.monotonic() - last_plain >= 5.0:
                print(live.plain_line(snapshot), flush=True)
                last_plain = time.monotonic()
            idle_checks = idle_checks + 1 if snapshot.idle else 0
            if exit_when_idle and idle_checks >= 3:
                break
            if timeout_s and time.monotonic() - started >= timeout_s:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
    if nc is not None:
        with contextlib.suppress(Exception):
            await nc.close()
    return snapshot


async def _connect_quietly(settings: NatsSettings) -> NatsClient | None:
    """A client of any one of the configured servers, or None when none answers now (asked again later)."""

    async def quiet(_: Exception) -> None:
        return None

    try:
        # A retry or two per server, then give up: with max_reconnect_attempts=0 nats-py cycles the list forever.
        return await nats.connect(
            servers=settings.servers,
            connect_timeout=1,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            allow_reconnect=False,
            user=settings.user or None,
            password=settings.password or None,
            token=settings.token or None,
            error_cb=quiet,
        )
    except Exception:
        return None


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}.")],
    config: ConfigOption = None,
) -> None:
    """Run one service in the foreground (the container entry point)."""
    if service not in SERVICES:
        errors.print(f"[red]unknown service {service!r}[/red]; choose one of {', '.join(SERVICES)}")
        raise typer.Exit(2)
    module = importlib.import_module(f"services.{service}.__main__")
    raise typer.Exit(module.main(["--config", str(config)] if config else []))


@app.command()
def status(config: ConfigOption = None) -> None:
    """Ask each service over gRPC for its health and counters."""
    mesh = mesh_in_use(config)
    reports = asyncio.run(probe_all(mesh))
    table = Table()
    for column in ("service", "address", "health", "uptime", "counters", "not ready"):
        table.add_column(column)
    for report in reports:
        colour = "green" if report.serving else "red"
        shown = report.counters | {k: v for k, v in report.gauges.items() if not k.startswith(STAGE_GAUGE_PREFIXES)}
        counters = ", ".join(f"{k} {v}" for k, v in shown.items())
        table.add_row(
            report.name,
            report.address,
            f"[{colour}]{report.health}[/{colour}]",
            f"{report.uptime_seconds:.0f}s" if report.serving else "-",
            escape(counters),
            escape(", ".join(report.not_ready) or report.error),
        )
    console.print(table)
    stages = stages_table(reports)
    if stages.row_count:
        console.print(stages)
    sources = [source for report in reports for source in report.sources]
    if sources:
        console.print(sources_table(sources))
    if not all(report.serving for report in reports):
        raise typer.Exit(1)


# GetStatus gauges shown in the stages table rather than among a service's counters.
STAGE_GAUGE_PREFIXES = (LAG_GAUGE_PREFIX, DEAD_LETTERS_GAUGE_PREFIX)


def stages_table(reports: list[ServiceReport]) -> Table:
    """Lag and dead letters per durable, as each owning service last read them (its /metrics too)."""
    table = Table(title="stages", title_justify="left")
    for column in ("stage", "service", "lag", "dead letters"):
        table.add_column(column)
    for report in reports:
        for name, lag in sorted(report.gauges.items()):
            if name.startswith(LAG_GAUGE_PREFIX):
                durable = name.removeprefix(LAG_GAUGE_PREFIX)
                dead = report.gauges.get(DEAD_LETTERS_GAUGE_PREFIX + durable, 0)
                colour = "red" if dead else "green"
                table.add_row(durable, report.name, str(lag), f"[{colour}]{dead}[/{colour}]")
    return table


def _age(stamp: Timestamp, now: datetime) -> str:
    if not stamp.seconds:
        return "-"
    seconds = (now - stamp.ToDatetime(tzinfo=UTC)).total_seconds()
    if seconds < 0:
        return f"in {-seconds:.0f}s"
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def sources_table(sources: list[listener_service_pb2.SourceStatus]) -> Table:
    now = datetime.now(UTC)
    table = Table(title="sources", title_justify="left")
    columns = ["source", "kind", "watch", "state", "seen", "published", "last success", "next poll", "last error"]
    # With several listener replicas, which one polls each source (its lease holder).
    holders = any(source.holder for source in sources)
    for column in [*columns, *(["polled by"] if holders else [])]:
        table.add_column(column)
    for source in sources:
        if source.paused:
            state = "[yellow]paused[/yellow]"
        elif source.exhausted:
            state = "[green]done[/green]"
        elif source.consecutive_failures:
            state = f"[red]failing ×{source.consecutive_failures}[/red]"
        else:
            state = "[green]ok[/green]"
        table.add_row(
            escape(source.name),
            source.kind,
            escape(source.watch or "-"),
            state,
            str(source.posts_seen),
            str(source.published),
            _age(source.last_success_at, now),
            _age(source.next_poll_at, now),
            escape(source.last_error[:80]),
            *([escape(source.holder or "-")] if holders else []),
        )
    return table


def _notifier_unreachable(mesh: MeshConfig, exc: grpc.aio.AioRpcError) -> typer.Exit:
    where = escape(address_of(mesh.notifier.grpc))
    errors.print(f"[red]notifier at {where}[/red]: {escape(exc.code().name)} {escape(exc.details() or '')}")
    return typer.Exit(1)


@app.command()
def notifications(
    config: ConfigOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 20,
    case: Annotated[str, typer.Option(help="Only notifications about this case id.")] = "",
    channel: Annotated[str, typer.Option(help="Only notifications through this channel.")] = "",
) -> None:
    """The notification log: what was sent to whom, when, and the result."""
    mesh = mesh_in_use(config)
    try:
        found = asyncio.run(live.notification_log(mesh, limit=limit, case_id=case, channel_name=channel))
    except grpc.aio.AioRpcError as exc:
        raise _notifier_unreachable(mesh, exc) from exc
    table = Table(title=f"latest {len(found)} notifications", title_justify="left")
    for column in ("at", "channel", "to", "result", "items", "title", "detail"):
        table.add_column(column)
    for item in found:
        sent = item.sent_at.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S") if item.sent_at.seconds else "-"
        result = notification_pb2.DeliveryStatus.Name(item.status).removeprefix("DELIVERY_STATUS_").lower()
        table.add_row(
            sent,
            escape(item.channel),
            escape(item.recipient or "-"),
            result,
            str(len(item.item_ids) or 1),
            escape(item.title),
            escape(item.detail[:80]),
        )
    console.print(table)


@app.command("ack", hidden=True)
def ack(
    case_id: Annotated[str, typer.Argument(help="The case to acknowledge, e.g. c_1f3a….")],
    actor: Annotated[str, typer.Option("--actor", "--by", help="Who acknowledges (default: $USER).")] = "",
    note: cases.NoteOption = "",
    config: ConfigOption = None,
) -> None:
    """The same as ``clamor case ack``, kept under its older, shorter name."""
    cases.ack_case(case_id, actor=actor, note=note, config=config)


@app.command("test-channel")
def send_test_message(
    name: Annotated[str, typer.Argument(help="A channel name from the notifier's config.")],
    config: ConfigOption = None,
) -> None:
    """Send a test message through one channel now, bypassing grouping and quiet hours."""
    mesh = mesh_in_use(config)
    try:
        answer = asyncio.run(live.send_test_message(mesh, name))
    except grpc.aio.AioRpcError as exc:
        raise _notifier_unreachable(mesh, exc) from exc
    said = f" ({escape(answer.remote_id)})" if answer.remote_id else ""
    console.print(f"[green]sent[/green] a test message through {escape(name)}{said}")


@app.command()
def trace(
    mention_id: Annotated[str, typer.Argument(help="A mention id, e.g. sample:p0001.")],
    config: ConfigOption = None,
    span_dir: Annotated[Path | None, typer.Option(help="Folder of span files (default: from the config).")] = None,
) -> None:
    """Draw one mention's trace as a tree: service, span, duration."""
    folder = span_dir or mesh_in_use(config).telemetry.span_dir
    if folder is None or not folder.exists():
        errors.print("[red]no span files[/red]: set telemetry.span_dir in the config (clamor up does)")
        raise typer.Exit(2)
    spans = traces.trace_of(mention_id, traces.read_spans(folder))
    if not spans:
        errors.print(f"[red]no spans for mention {escape(mention_id)!r}[/red] in {folder}")
        raise typer.Exit(1)
    roots = traces.build_forest(spans)
    console.print(traces.render(roots, f"mention {escape(mention_id)}: trace {spans[0]['trace_id']}"))


@config_app.command("validate")
def config_validate(path: Annotated[Path, typer.Argument(help="The YAML config file.")]) -> None:
    """Check a config file; errors name the field and line."""
    mesh = load_or_exit(path)
    sources = len(mesh.listener.sources)
    channels = len(mesh.notifier.channels)
    nats_at = escape(mesh.nats.shown)
    console.print(f"[green]valid[/green]: {sources} source(s), {channels} channel(s), NATS at {nats_at}")


@app.command()
def classify(
    threshold: Annotated[float | None, typer.Option(help="Complaint score threshold (default: the model's).")] = None,
    model: Annotated[Path | None, typer.Option(help="A model directory from `clamor triage train`.")] = None,
    rules: Annotated[bool, typer.Option("--rules", help="The risk rules alone, without the model.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=4096, help="Posts classified together.")] = 256,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress on stderr.")] = False,
) -> None:
    """Read JSON lines {"id", "text"} on stdin; write one verdict line per input on stdout.

    The same classifier as the triage service. Progress and skipped lines go to stderr, so stdout
    holds nothing but JSON lines.
    """
    from services.cli.classify import classify_stream, load  # noqa: PLC0415 - torch loads only for this command

    classifier = load(model=model, rules=rules, threshold=threshold)
    classify_stream(classifier, sys.stdin, sys.stdout, errors=errors, batch_size=batch_size, progress=not quiet)


app.command("cases")(cases.list_cases)
app.command("trends")(trends.trends)
app.command("dashboard")(dashboard.dashboard)


def main() -> None:
    app()
