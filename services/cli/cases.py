"""``clamor cases``, ``clamor case``, ``clamor dlq`` and ``clamor rules``: the router's cases, dead letters and rules.

Every command but ``rules validate`` asks the running router over gRPC, at the address the
config file gives (``router.grpc``, or ``CLAMOR__ROUTER__GRPC__PORT`` and the like). ``rules
validate`` reads a file and checks it here, so rules can be checked before any router runs.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import grpc
import typer
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clamor.v1 import case_pb2, router_service_pb2, triage_pb2
from services.cli import clients
from services.cli.config_in_use import ConfigOption, mesh_in_use
from services.cli.mesh import MeshConfig, default_config_path
from services.cli.rules_file import RuleNames, describe_problem, validate_rules_file
from services.router.config import OUTBOX
from services.shared.case_names import priority_name

if TYPE_CHECKING:
    from google.protobuf.timestamp_pb2 import Timestamp

    from services.cli.clients import RouterStub

T = TypeVar("T")

case_app = typer.Typer(help="Show one case, or answer it: acknowledge, resolve, not a complaint.", no_args_is_help=True)
dlq_app = typer.Typer(help="Deliveries the router gave up on: list them, deliver them again.", no_args_is_help=True)
rules_app = typer.Typer(help="Routing rules: check a file, or have the router read them again.", no_args_is_help=True)

console = Console()
errors = Console(stderr=True, soft_wrap=True)

# Long enough for a router scanning a large dead-letter stream, short enough that a hung one is noticed.
TIMEOUT_S = 10.0

ActorOption = Annotated[
    str, typer.Option("--actor", "--by", help="Who answers; shown in the case history (default: $USER).")
]
NoteOption = Annotated[str, typer.Option(help="A note for the case history.")]
DestinationOption = Annotated[str, typer.Option("--destination", "-d", help="Only this destination's (default: all).")]


# --- talking to the router ------------------------------------------------------------------


def _ask_router(mesh: MeshConfig, call: Callable[[RouterStub], Awaitable[T]], *, case_id: str = "") -> T:
    """One RPC to the router; a failure is printed as one line and ends the command with exit code 1."""
    address = clients.address_of(mesh.router.grpc)

    async def ask() -> T:
        async with clients.connect(address) as channel:
            return await call(clients.router(channel))

    try:
        return asyncio.run(ask())
    except grpc.aio.AioRpcError as exc:
        errors.print(_failure(address, exc, case_id=case_id))
        raise typer.Exit(1) from exc


def _failure(address: str, exc: grpc.aio.AioRpcError, *, case_id: str) -> str:
    code, details = exc.code(), exc.details() or ""
    where = escape(address)
    # A refused connection reads "failed to connect to all addresses"; the router's own UNAVAILABLE
    # (still connecting to NATS) carries its reason, which says more than advice to start it.
    if code == grpc.StatusCode.UNAVAILABLE and (not details or details.startswith("failed to connect")):
        return (
            f"[red]no router at {where}[/red]: start the mesh with [bold]clamor up[/bold], "
            "or the router alone with [bold]clamor serve router[/bold]"
        )
    if code == grpc.StatusCode.NOT_FOUND and case_id:
        return f"[red]no case {escape(case_id)}[/red] at the router at {where}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"[red]router at {where} did not answer within {TIMEOUT_S:g}s[/red]"
    return f"[red]router at {where}[/red]: {escape(code.name)} {escape(details)}"


# --- formatting -----------------------------------------------------------------------------


def _event_kind(event: case_pb2.CaseEvent) -> str:
    """A history entry's kind as people read it ("post added", "sla warning")."""
    return case_pb2.CaseEventKind.Name(event.event_kind).removeprefix("CASE_EVENT_KIND_").lower().replace("_", " ")


def _when(stamp: Timestamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return "-"
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _enum(name_of: Callable[[Any], str], value: int, prefix: str) -> str:
    # A value from a newer proto than ours shows as its number rather than failing the command.
    try:
        return name_of(value).removeprefix(prefix)
    except ValueError:
        return str(value)


def _state(case: case_pb2.Case) -> str:
    return _enum(case_pb2.CaseState.Name, case.state, "CASE_STATE_").lower()


def _severity(value: int) -> str:
    return _enum(triage_pb2.Severity.Name, value, "SEVERITY_")


def _flags(values: list[int]) -> str:
    return ", ".join(_enum(triage_pb2.RiskFlag.Name, v, "RISK_FLAG_").lower() for v in values)


def _due(stamp: Timestamp, breached: bool) -> str:
    when = _when(stamp)
    return f"[red]{when} breached[/red]" if breached else when


# Below this many columns the table keeps what a care agent scans first; `--json` has everything.
WIDE_TABLE_COLUMNS = 110


def cases_table(cases: list[case_pb2.Case], *, width: int = WIDE_TABLE_COLUMNS) -> Table:
    table = Table(title=f"latest {len(cases)} cases (times in UTC)", title_justify="left")
    wide = width >= WIDE_TABLE_COLUMNS
    columns = ["id", "state", "severity", "priority", "team", "destinations", "posts", "created", "first response due"]
    if not wide:
        columns = ["id", "state", "severity", "team", "posts", "created"]
    for column in columns:
        table.add_column(column, no_wrap=column not in ("team", "destinations"))
    for case in cases:
        row = {
            "id": escape(case.id),
            "state": _state(case),
            "severity": _severity(case.severity),
            "priority": escape(priority_name(case.priority_level) or "-"),
            "team": escape(case.team or "-"),
            "destinations": escape(", ".join(case.destinations) or "-"),
            "posts": str(len(case.mentions)),
            "created": _when(case.created_at) if wide else _when(case.created_at)[5:16],
            "first response due": _due(case.sla.first_response_due, case.sla.first_response_breached),
        }
        table.add_row(*(row[column] for column in columns))
    return table


def case_details(case: case_pb2.Case) -> list[Table]:
    """A case as ``clamor case show`` prints it: its fields, its posts, its history."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="dim")
    fields.add_column()
    sla = case.sla
    rows = [
        ("state", _state(case) + (f" (escalation level {case.escalation_level})" if case.escalation_level else "")),
        ("severity", _severity(case.severity)),
        ("category", case.category or "-"),
        ("risk flags", _flags(list(case.risk_flags)) or "-"),
        ("team", case.team or "-"),
        ("owner", case.owner or "-"),
        ("priority", priority_name(case.priority_level) or "-"),
        ("SLA policy", case.sla_policy or "-"),
        ("matched rules", ", ".join(case.matched_rules) or "the defaults"),
        ("destinations", ", ".join(case.destinations) or "-"),
        ("grouped by", ", ".join(case.group_keys) or "-"),
    ]
    fields.add_row("id", escape(case.id))
    for name, value in rows:
        fields.add_row(name, escape(value))
    fields.add_row("first response due", _due(sla.first_response_due, sla.first_response_breached))
    fields.add_row("resolution due", _due(sla.resolution_due, sla.resolution_breached))
    for name, stamp in (
        ("created", case.created_at),
        ("updated", case.updated_at),
        ("acknowledged", case.acknowledged_at),
        ("resolved", case.resolved_at),
    ):
        fields.add_row(name, _when(stamp))
    posts = Table(title=f"{len(case.mentions)} posts", title_justify="left")
    for column in ("mention", "posted", "platform", "author", "severity", "text"):
        posts.add_column(column)
    for triaged in case.mentions:
        mention = triaged.mention
        posts.add_row(
            escape(mention.id),
            _when(mention.created_at),
            escape(mention.platform or "-"),
            escape(mention.author.handle or "-"),
            _severity(triaged.result.severity),
            escape(mention.text),
        )
    history = Table(title="history (UTC)", title_justify="left")
    for column in ("at", "event", "detail"):
        history.add_column(column)
    for event in case.history:
        detail = f"{event.detail}\nnote: {event.note}" if event.note else event.detail
        history.add_row(_when(event.at), escape(_event_kind(event)), escape(detail))
    return [fields, posts, history]


def dead_letters_table(found: list[router_service_pb2.DeadLetter]) -> Table:
    table = Table(title=f"{len(found)} dead letters (times in UTC)", title_justify="left")
    for column in ("sequence", "destination", "case", "attempts", "first attempt", "dead at", "error"):
        table.add_column(column)
    for item in found:
        table.add_row(
            str(item.sequence),
            escape(item.destination),
            escape(item.case_id),
            str(item.attempts),
            _when(item.first_attempt_at),
            _when(item.dead_at),
            escape(item.error[:200]),
        )
    return table


# --- cases ----------------------------------------------------------------------------------


def list_cases(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many, most recently changed first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per case and line, for scripts.")] = False,
    config: ConfigOption = None,
) -> None:
    """The router's cases, most recently changed first: state, severity, owner, where they went, the SLA due."""
    mesh = mesh_in_use(config)
    found = _ask_router(mesh, lambda stub: _cases(stub, limit=limit))
    if as_json:
        for case in found:
            print(json.dumps(MessageToDict(case, preserving_proto_field_name=True), ensure_ascii=False))
        return
    if not found:
        console.print("no cases yet")
        return
    console.print(cases_table(list(found), width=console.width))


@case_app.command("show")
def show_case(
    case_id: Annotated[str, typer.Argument(help="The case id, e.g. c_1f3a….")],
    as_json: Annotated[bool, typer.Option("--json", help="The case as one JSON object.")] = False,
    config: ConfigOption = None,
) -> None:
    """One case with its posts and its history."""
    mesh = mesh_in_use(config)
    request = router_service_pb2.GetCaseRequest(case_id=case_id)
    case = _ask_router(mesh, lambda stub: stub.GetCase(request, timeout=TIMEOUT_S), case_id=case_id).case
    if as_json:
        print(json.dumps(MessageToDict(case, preserving_proto_field_name=True), ensure_ascii=False))
        return
    for part in case_details(case):
        console.print(part)


def _act(case_id: str, kind: case_pb2.CaseActionKind.ValueType, *, actor: str, note: str, config: Path | None) -> None:
    mesh = mesh_in_use(config)
    actor = actor or os.environ.get("USER", "") or "cli"
    request = router_service_pb2.ActOnCaseRequest(case_id=case_id, kind=kind, actor=actor, note=note)
    answer = _ask_router(mesh, lambda stub: stub.ActOnCase(request, timeout=TIMEOUT_S), case_id=case_id)
    done = {
        case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE: "acknowledged",
        case_pb2.CASE_ACTION_KIND_RESOLVE: "resolved",
        case_pb2.CASE_ACTION_KIND_NOT_A_COMPLAINT: "closed as not a complaint:",
    }[kind]
    console.print(f"[green]{done}[/green] {escape(case_id)} by {escape(actor)}", soft_wrap=True)
    console.print(f"action {escape(answer.action_id)}", soft_wrap=True)


@case_app.command("ack")
def ack_case(
    case_id: Annotated[str, typer.Argument(help="The case to acknowledge.")],
    actor: ActorOption = "",
    note: NoteOption = "",
    config: ConfigOption = None,
) -> None:
    """Acknowledge a case: its first-response clock stops and nothing escalates it again."""
    _act(case_id, case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE, actor=actor, note=note, config=config)


@case_app.command("resolve")
def resolve_case(
    case_id: Annotated[str, typer.Argument(help="The case to resolve.")],
    actor: ActorOption = "",
    note: NoteOption = "",
    config: ConfigOption = None,
) -> None:
    """Resolve a case: every clock stops and its destinations hear that it is closed."""
    _act(case_id, case_pb2.CASE_ACTION_KIND_RESOLVE, actor=actor, note=note, config=config)


@case_app.command("not-complaint")
def not_a_complaint(
    case_id: Annotated[str, typer.Argument(help="The case that is no complaint.")],
    actor: ActorOption = "",
    note: NoteOption = "",
    config: ConfigOption = None,
) -> None:
    """Close a case as "not a complaint"; triage learns from it as a labelled example."""
    _act(case_id, case_pb2.CASE_ACTION_KIND_NOT_A_COMPLAINT, actor=actor, note=note, config=config)


# --- dead letters ---------------------------------------------------------------------------


@dlq_app.command("list")
def list_dead_letters(
    destination: DestinationOption = "",
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, oldest first.")] = 100,
    config: ConfigOption = None,
) -> None:
    """Deliveries that kept failing for longer than their destination's retry period."""
    mesh = mesh_in_use(config)
    found = _ask_router(mesh, lambda stub: _dead_letters(stub, destination=destination, limit=limit))
    if not found:
        console.print("no dead letters" + (f" for {escape(destination)}" if destination else ""))
        return
    console.print(dead_letters_table(found))


async def _cases(stub: RouterStub, *, limit: int) -> list[case_pb2.Case]:
    async def ask(token: str, size: int) -> clients.Page[case_pb2.Case]:
        request = router_service_pb2.ListCasesRequest(page_size=size, page_token=token)
        answer = await stub.ListCases(request, timeout=TIMEOUT_S)
        return answer.cases, answer.next_page_token

    return await clients.follow_pages(ask, limit=limit)


async def _dead_letters(stub: RouterStub, *, destination: str, limit: int) -> list[router_service_pb2.DeadLetter]:
    async def ask(token: str, size: int) -> clients.Page[router_service_pb2.DeadLetter]:
        request = router_service_pb2.ListDeadLettersRequest(destination=destination, page_size=size, page_token=token)
        answer = await stub.ListDeadLetters(request, timeout=TIMEOUT_S)
        return answer.dead_letters, answer.next_page_token

    return await clients.follow_pages(ask, limit=limit)


@dlq_app.command("replay")
def replay_dead_letters(
    destination: DestinationOption = "",
    seq: Annotated[
        list[int] | None, typer.Option("--seq", min=1, help="Only this dead letter (its sequence); repeatable.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Deliver dead letters again, with a fresh retry period; without --seq, every one that matches."""
    mesh = mesh_in_use(config)
    request = router_service_pb2.ReplayDeadLettersRequest(destination=destination, sequences=seq or [])
    replayed = _ask_router(mesh, lambda stub: stub.ReplayDeadLetters(request, timeout=TIMEOUT_S)).replayed
    console.print(f"replayed {replayed} dead letter{'' if replayed == 1 else 's'}")


# --- rules ----------------------------------------------------------------------------------


def _names_in_use(config: Path | None) -> RuleNames:
    """Destinations and SLA policies of the config in use; the built-in ones when there is no config."""
    if config is None and not default_config_path().exists():
        return RuleNames(destinations=frozenset({OUTBOX}), sla_policies=frozenset(), origin="the built-in defaults")
    router = mesh_in_use(config).router
    return RuleNames(
        destinations=frozenset({OUTBOX, *(d.name for d in router.destinations)}),
        sla_policies=frozenset(p.name for p in router.sla_policies),
        origin=str(config or default_config_path()),
    )


@rules_app.command("validate")
def validate_rules(
    file: Annotated[Path, typer.Argument(help="YAML: a list of rules, a mapping with rules: or a whole clamor.yaml.")],
    config: ConfigOption = None,
) -> None:
    """Check routing rules without a router: fields, values, and the destinations and SLA policies they name.

    A whole clamor.yaml is checked against its own router section; a rules file against the config in use.
    """
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        errors.print(f"[red]cannot read {escape(str(file))}[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from exc
    checked = validate_rules_file(text, names=lambda: _names_in_use(config))
    for problem in checked.problems:
        console.print(escape(describe_problem(problem, file=str(file))), soft_wrap=True, highlight=False)
    if checked.problems:
        count = len(checked.problems)
        errors.print(f"[red]{count} problem{'' if count == 1 else 's'}[/red] in {escape(str(file))}")
        raise typer.Exit(1)
    console.print(
        f"[green]valid[/green]: {checked.rule_count} rule{'' if checked.rule_count == 1 else 's'} in "
        f"{escape(str(file))} (destinations and SLA policies from {escape(checked.names.origin)})",
        soft_wrap=True,
    )


@rules_app.command("reload")
def reload_rules(config: ConfigOption = None) -> None:
    """Have the running router read the rules in its config file again; it keeps the old ones on any error."""
    mesh = mesh_in_use(config)
    request = router_service_pb2.ReloadRulesRequest()
    answer = _ask_router(mesh, lambda stub: stub.ReloadRules(request, timeout=TIMEOUT_S))
    if not answer.reloaded:
        for error in answer.errors:
            console.print(escape(describe_problem(error, file="config")), soft_wrap=True, highlight=False)
        errors.print("[red]not reloaded[/red]: the router keeps the rules it had")
        raise typer.Exit(1)
    console.print(f"[green]reloaded[/green] {answer.rule_count} rule{'' if answer.rule_count == 1 else 's'}")
