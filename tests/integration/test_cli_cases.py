"""`clamor cases`, `clamor case`, `clamor dlq` and `clamor rules reload` against a real gRPC server.

The server is a small in-test RouterService that answers with canned cases and dead letters and
records what it was asked, on a free loopback port. So these tests cover the CLI alone: its
arguments, what it sends, how it renders the answers and how it reports failures (NOT_FOUND, a
router that is not running). The router's own behaviour is tested with the router.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from click import unstyle
from google.protobuf.timestamp_pb2 import Timestamp
from typer.testing import CliRunner, Result

from clamor.v1 import case_pb2, mention_pb2, router_service_pb2, router_service_pb2_grpc, triage_pb2
from services.cli.app import app

CREATED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
DUE = datetime(2026, 11, 2, 13, 30, tzinfo=UTC)


def stamp(at: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(at)
    return result


def post(mention_id: str, text: str, severity: triage_pb2.Severity.ValueType) -> triage_pb2.TriagedMention:
    return triage_pb2.TriagedMention(
        mention=mention_pb2.Mention(
            id=mention_id,
            platform="reddit",
            text=text,
            author=mention_pb2.Author(handle="dana"),
            created_at=stamp(CREATED),
        ),
        result=triage_pb2.TriageResult(verdict=triage_pb2.VERDICT_COMPLAINT, severity=severity),
    )


ESCALATED = case_pb2.Case(
    id="c_0001",
    state=case_pb2.CASE_STATE_ESCALATED,
    severity=triage_pb2.SEVERITY_HIGH,
    category="billing",
    risk_flags=[triage_pb2.RISK_FLAG_LEGAL_THREAT],
    team="billing",
    escalation_level=1,
    priority_level=case_pb2.CASE_PRIORITY_URGENT,
    sla_policy="standard",
    sla=case_pb2.SlaDeadlines(first_response_due=stamp(DUE), first_response_breached=True),
    matched_rules=["billing", "legal"],
    destinations=["outbox", "zendesk"],
    group_keys=["thread:reddit:t-42"],
    mentions=[
        post("reddit:p1", "Charged twice for one order", triage_pb2.SEVERITY_MEDIUM),
        post("reddit:p2", "My lawyer will hear about this", triage_pb2.SEVERITY_HIGH),
    ],
    history=[
        case_pb2.CaseEvent(
            at=stamp(CREATED),
            event_kind=case_pb2.CASE_EVENT_KIND_CREATED,
            detail="from mention reddit:p1, routed by billing",
        ),
        case_pb2.CaseEvent(
            at=stamp(CREATED),
            event_kind=case_pb2.CASE_EVENT_KIND_ESCALATED,
            detail="level 1 to legal: severity HIGH [c_0001:now]",
        ),
    ],
    created_at=stamp(CREATED),
    updated_at=stamp(CREATED),
)
ROUTED = case_pb2.Case(
    id="c_0002",
    state=case_pb2.CASE_STATE_ROUTED,
    severity=triage_pb2.SEVERITY_LOW,
    team="care",
    priority_level=case_pb2.CASE_PRIORITY_NORMAL,
    destinations=["outbox"],
    mentions=[post("reddit:p3", "Parcel late again", triage_pb2.SEVERITY_LOW)],
    created_at=stamp(CREATED),
)
DEAD = [
    router_service_pb2.DeadLetter(
        sequence=3,
        destination="zendesk",
        case_id="c_0001",
        error="HTTP 503 from zendesk",
        attempts=12,
        first_attempt_at=stamp(CREATED),
        dead_at=stamp(DUE),
    ),
    router_service_pb2.DeadLetter(
        sequence=5,
        destination="webhook",
        case_id="c_0002",
        error="connection refused",
        attempts=7,
        first_attempt_at=stamp(CREATED),
        dead_at=stamp(DUE),
    ),
]


@dataclass
class FakeRouter(router_service_pb2_grpc.RouterServiceServicer):
    """Canned answers; every request is kept in ``asked`` for the tests to inspect."""

    cases: list[case_pb2.Case] = field(default_factory=lambda: [ESCALATED, ROUTED])
    reload_errors: list[router_service_pb2.RuleError] = field(default_factory=list)
    # What the real router says while it connects to NATS.
    connecting: bool = False
    # The most dead letters one ListDeadLetters page holds, whatever page_size asks.
    page_cap: int = 1000
    asked: list[object] = field(default_factory=list)
    port: int = 0

    def _heard(self, request: object, context: grpc.ServicerContext) -> None:
        self.asked.append(request)
        if self.connecting:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the router is still connecting to NATS")

    def _case(self, case_id: str, context: grpc.ServicerContext) -> case_pb2.Case:
        found = next((case for case in self.cases if case.id == case_id), None)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no case {case_id!r}")
        return found

    def ListCases(
        self, request: router_service_pb2.ListCasesRequest, context: grpc.ServicerContext
    ) -> router_service_pb2.ListCasesResponse:
        self._heard(request, context)
        # The token is the index the page starts at (the router's is opaque too; the CLI only passes it back).
        start = int(request.page_token or 0)
        page = self.cases[start : start + min(request.page_size or request.limit, self.page_cap)]
        rest = start + len(page) < len(self.cases)
        return router_service_pb2.ListCasesResponse(cases=page, next_page_token=str(start + len(page)) if rest else "")

    def GetCase(
        self, request: router_service_pb2.GetCaseRequest, context: grpc.ServicerContext
    ) -> router_service_pb2.GetCaseResponse:
        self._heard(request, context)
        return router_service_pb2.GetCaseResponse(case=self._case(request.case_id, context))

    def ValidateRules(
        self, request: router_service_pb2.ValidateRulesRequest, context: grpc.ServicerContext
    ) -> router_service_pb2.ValidateRulesResponse:
        self._heard(request, context)
        return router_service_pb2.ValidateRulesResponse(valid=True)

    def ReloadRules(
        self, request: router_service_pb2.ReloadRulesRequest, context: grpc.ServicerContext
    ) -> router_service_pb2.ReloadRulesResponse:
        self._heard(request, context)
        if self.reload_errors:
            return router_service_pb2.ReloadRulesResponse(reloaded=False, errors=self.reload_errors)
        return router_service_pb2.ReloadRulesResponse(reloaded=True, rule_count=7)

    def ActOnCase(
        self, request: router_service_pb2.ActOnCaseRequest, context: grpc.ServicerContext
    ) -> router_service_pb2.ActOnCaseResponse:
        self._heard(request, context)
        self._case(request.case_id, context)
        kind = case_pb2.CaseActionKind.Name(request.kind).removeprefix("CASE_ACTION_KIND_").lower()
        return router_service_pb2.ActOnCaseResponse(action_id=f"{request.case_id}:{kind}:r1")

    def ListDeadLetters(
        self, request: router_service_pb2.ListDeadLettersRequest, context: grpc.ServicerContext
    ) -> router_service_pb2.ListDeadLettersResponse:
        self._heard(request, context)
        found = [d for d in DEAD if not request.destination or d.destination == request.destination]
        # The token is the sequence the page starts at, as the router's is (the CLI only passes it back).
        start = int(request.page_token or 0)
        found = [d for d in found if d.sequence >= start]
        page = found[: min(request.page_size, self.page_cap)]
        rest = found[len(page) :]
        token = str(rest[0].sequence) if rest else ""
        return router_service_pb2.ListDeadLettersResponse(dead_letters=page, next_page_token=token)

    def ReplayDeadLetters(
        self, request: router_service_pb2.ReplayDeadLettersRequest, context: grpc.ServicerContext
    ) -> router_service_pb2.ReplayDeadLettersResponse:
        self._heard(request, context)
        found = [
            d
            for d in DEAD
            if (not request.destination or d.destination == request.destination)
            and (not request.sequences or d.sequence in request.sequences)
        ]
        return router_service_pb2.ReplayDeadLettersResponse(replayed=len(found))


@pytest.fixture
def router() -> Iterator[FakeRouter]:
    servicer = FakeRouter()
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    router_service_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server)
    servicer.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer
    finally:
        server.stop(None).wait()


def config_for(folder: Path, port: int) -> Path:
    path = folder / "clamor.yaml"
    path.write_text(f"router:\n  grpc: {{host: 127.0.0.1, port: {port}}}\n", encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: Path, router: FakeRouter) -> Path:
    return config_for(tmp_path, router.port)


def clamor(config: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    # Wide enough that no table cell is cut.
    return CliRunner().invoke(app, [*args, "--config", str(config)], env={"COLUMNS": "250", **(env or {})})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def table_row(output: str, first_cell: str) -> list[str]:
    """The cells of the table row whose first cell is ``first_cell``."""
    for line in unstyle(output).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│┃").split("│")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in\n{output}")


# --- clamor cases ---------------------------------------------------------------------------


def test_cases_prints_one_row_per_case(config: Path) -> None:
    result = clamor(config, "cases")
    assert result.exit_code == 0, result.output
    assert table_row(result.stdout, "c_0001") == [
        "c_0001",
        "escalated",
        "HIGH",
        "urgent",
        "billing",
        "outbox, zendesk",
        "2",
        "2026-11-02 09:30:00",
        "2026-11-02 13:30:00 breached",
    ]
    assert table_row(result.stdout, "c_0002") == [
        "c_0002",
        "routed",
        "LOW",
        "normal",
        "care",
        "outbox",
        "1",
        "2026-11-02 09:30:00",
        "-",
    ]


def test_cases_asks_for_the_limit_given(config: Path, router: FakeRouter) -> None:
    result = clamor(config, "cases", "--limit", "1")
    assert result.exit_code == 0, result.output
    assert router.asked == [router_service_pb2.ListCasesRequest(page_size=1)]
    assert "c_0002" not in result.stdout


def test_cases_follows_the_pages_up_to_the_limit(config: Path, router: FakeRouter) -> None:
    router.page_cap = 1
    result = clamor(config, "cases", "--json", "--limit", "5")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["c_0001", "c_0002"]
    assert router.asked == [
        router_service_pb2.ListCasesRequest(page_size=5),
        router_service_pb2.ListCasesRequest(page_size=4, page_token="1"),
    ]


def test_cases_refuses_a_limit_out_of_range(config: Path, router: FakeRouter) -> None:
    result = clamor(config, "cases", "--limit", "0")
    assert result.exit_code == 2
    assert router.asked == []


def test_cases_as_json_prints_one_object_per_line(config: Path) -> None:
    result = clamor(config, "cases", "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in records] == ["c_0001", "c_0002"]
    assert (records[0]["state"], records[0]["sla_policy"]) == ("CASE_STATE_ESCALATED", "standard")
    assert records[0]["mentions"][1]["mention"]["text"] == "My lawyer will hear about this"


def test_no_cases_says_so(config: Path, router: FakeRouter) -> None:
    router.cases = []
    result = clamor(config, "cases")
    assert (result.exit_code, unstyle(result.stdout).strip()) == (0, "no cases yet")


# --- clamor case show -----------------------------------------------------------------------


def test_case_show_prints_fields_posts_and_history(config: Path) -> None:
    result = clamor(config, "case", "show", "c_0001")
    assert result.exit_code == 0, result.output
    shown = unstyle(result.stdout)
    for expected in (
        "escalated (escalation level 1)",
        "legal_threat",
        "billing, legal",
        "thread:reddit:t-42",
        "2026-11-02 13:30:00 breached",
    ):
        assert expected in shown
    assert table_row(shown, "reddit:p2")[1:] == [
        "2026-11-02 09:30:00",
        "reddit",
        "dana",
        "HIGH",
        "My lawyer will hear about this",
    ]
    assert table_row(shown, "2026-11-02 09:30:00")[1:] == ["created", "from mention reddit:p1, routed by billing"]
    assert "level 1 to legal: severity HIGH [c_0001:now]" in shown


def test_case_show_as_json(config: Path) -> None:
    result = clamor(config, "case", "show", "c_0002", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["team"] == "care"


def test_case_show_of_an_unknown_case_says_no_case(config: Path, router: FakeRouter) -> None:
    result = clamor(config, "case", "show", "c_missing")
    assert result.exit_code == 1
    assert unstyle(result.stderr).strip() == f"no case c_missing at the router at 127.0.0.1:{router.port}"
    assert result.stdout == ""


# --- clamor case ack / resolve / not-complaint ----------------------------------------------


@pytest.mark.parametrize(
    ("command", "kind", "said"),
    [
        ("ack", case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE, "acknowledged"),
        ("resolve", case_pb2.CASE_ACTION_KIND_RESOLVE, "resolved"),
        ("not-complaint", case_pb2.CASE_ACTION_KIND_NOT_A_COMPLAINT, "closed as not a complaint:"),
    ],
)
def test_answering_a_case_sends_kind_actor_and_note(
    config: Path, router: FakeRouter, command: str, kind: case_pb2.CaseActionKind.ValueType, said: str
) -> None:
    result = clamor(config, "case", command, "c_0001", "--actor", "dana", "--note", "called back")
    assert result.exit_code == 0, result.output
    assert router.asked == [
        router_service_pb2.ActOnCaseRequest(case_id="c_0001", kind=kind, actor="dana", note="called back")
    ]
    name = case_pb2.CaseActionKind.Name(kind).removeprefix("CASE_ACTION_KIND_").lower()
    assert unstyle(result.stdout).splitlines() == [f"{said} c_0001 by dana", f"action c_0001:{name}:r1"]


def test_the_actor_defaults_to_the_user(config: Path, router: FakeRouter) -> None:
    result = clamor(config, "case", "ack", "c_0001", env={"USER": "lee"})
    assert result.exit_code == 0, result.output
    assert [r.actor for r in router.asked if isinstance(r, router_service_pb2.ActOnCaseRequest)] == ["lee"]


def test_clamor_ack_is_the_same_command_as_clamor_case_ack(config: Path, router: FakeRouter) -> None:
    result = clamor(config, "ack", "c_0001", "--by", "dana", "--note", "called back")
    assert result.exit_code == 0, result.output
    assert router.asked == [
        router_service_pb2.ActOnCaseRequest(
            case_id="c_0001", kind=case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE, actor="dana", note="called back"
        )
    ]
    assert unstyle(result.stdout).splitlines() == ["acknowledged c_0001 by dana", "action c_0001:acknowledge:r1"]


def test_clamor_ack_is_not_listed_beside_clamor_case() -> None:
    help_text = unstyle(CliRunner().invoke(app, ["--help"], env={"COLUMNS": "250"}).stdout)
    listed = [line.split()[1] for line in help_text.splitlines() if line.startswith("│ ")]
    assert "case" in listed
    assert "ack" not in listed


def test_answering_an_unknown_case_says_no_case(config: Path) -> None:
    result = clamor(config, "case", "resolve", "c_missing")
    assert result.exit_code == 1
    assert unstyle(result.stderr).startswith("no case c_missing")


# --- clamor dlq -----------------------------------------------------------------------------


def test_dlq_list_prints_one_row_per_dead_letter(config: Path) -> None:
    result = clamor(config, "dlq", "list")
    assert result.exit_code == 0, result.output
    assert table_row(result.stdout, "3") == [
        "3",
        "zendesk",
        "c_0001",
        "12",
        "2026-11-02 09:30:00",
        "2026-11-02 13:30:00",
        "HTTP 503 from zendesk",
    ]
    assert table_row(result.stdout, "5")[1] == "webhook"


def test_dlq_list_asks_for_one_destination(config: Path, router: FakeRouter) -> None:
    result = clamor(config, "dlq", "list", "--destination", "webhook", "--limit", "10")
    assert result.exit_code == 0, result.output
    assert router.asked == [router_service_pb2.ListDeadLettersRequest(destination="webhook", page_size=10)]
    assert "zendesk" not in result.stdout


def test_dlq_list_follows_the_pages_up_to_the_limit(config: Path, router: FakeRouter) -> None:
    router.page_cap = 1
    result = clamor(config, "dlq", "list", "--limit", "5")
    assert result.exit_code == 0, result.output
    assert [table_row(result.stdout, seq)[0] for seq in ("3", "5")] == ["3", "5"]
    assert router.asked == [
        router_service_pb2.ListDeadLettersRequest(page_size=5),
        router_service_pb2.ListDeadLettersRequest(page_size=4, page_token="5"),
    ]


def test_dlq_list_without_dead_letters_says_so(config: Path) -> None:
    result = clamor(config, "dlq", "list", "-d", "hubspot")
    assert (result.exit_code, unstyle(result.stdout).strip()) == (0, "no dead letters for hubspot")


def test_dlq_replay_sends_the_sequences_and_prints_the_count(config: Path, router: FakeRouter) -> None:
    result = clamor(config, "dlq", "replay", "--seq", "3", "--seq", "5")
    assert result.exit_code == 0, result.output
    assert router.asked == [router_service_pb2.ReplayDeadLettersRequest(sequences=[3, 5])]
    assert unstyle(result.stdout).strip() == "replayed 2 dead letters"


def test_dlq_replay_of_one_destination(config: Path, router: FakeRouter) -> None:
    result = clamor(config, "dlq", "replay", "--destination", "zendesk")
    assert result.exit_code == 0, result.output
    assert router.asked == [router_service_pb2.ReplayDeadLettersRequest(destination="zendesk")]
    assert unstyle(result.stdout).strip() == "replayed 1 dead letter"


# --- clamor rules reload --------------------------------------------------------------------


def test_rules_reload_prints_the_count(config: Path) -> None:
    result = clamor(config, "rules", "reload")
    assert result.exit_code == 0, result.output
    assert unstyle(result.stdout).strip() == "reloaded 7 rules"


def test_rules_reload_prints_each_error_and_exits_1(config: Path, router: FakeRouter) -> None:
    router.reload_errors = [
        router_service_pb2.RuleError(rule="vip", field="sla", message="unknown SLA policy 'gold'"),
        router_service_pb2.RuleError(message="cannot read /etc/clamor.yaml: permission denied"),
    ]
    result = clamor(config, "rules", "reload")
    assert result.exit_code == 1
    assert unstyle(result.stdout).splitlines() == [
        "rule vip: sla: unknown SLA policy 'gold'",
        "config: cannot read /etc/clamor.yaml: permission denied",
    ]
    assert "not reloaded" in unstyle(result.stderr)


# --- reaching the router ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [("cases",), ("case", "show", "c_0001"), ("case", "ack", "c_0001"), ("dlq", "list"), ("rules", "reload")]
)
def test_no_router_running_is_one_line_naming_the_address(tmp_path: Path, args: tuple[str, ...]) -> None:
    port = free_port()
    result = clamor(config_for(tmp_path, port), *args)
    assert result.exit_code == 1
    assert unstyle(result.stderr).splitlines() == [
        f"no router at 127.0.0.1:{port}: start the mesh with clamor up, or the router alone with clamor serve router"
    ]


def test_a_router_still_connecting_says_why(config: Path, router: FakeRouter) -> None:
    router.connecting = True
    result = clamor(config, "cases")
    assert result.exit_code == 1
    assert unstyle(result.stderr).strip() == (
        f"router at 127.0.0.1:{router.port}: UNAVAILABLE the router is still connecting to NATS"
    )


def test_the_port_can_come_from_the_environment(tmp_path: Path, router: FakeRouter) -> None:
    stale = config_for(tmp_path, free_port())
    result = clamor(stale, "cases", env={"CLAMOR__ROUTER__GRPC__PORT": str(router.port)})
    assert result.exit_code == 0, result.output
    assert "c_0001" in result.stdout


def test_without_a_config_file_it_says_how_to_get_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["cases", "--config", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    assert "no config at" in unstyle(result.stderr)


def test_cases_keeps_the_columns_an_agent_scans_first_in_a_narrow_terminal(config: Path) -> None:
    result = clamor(config, "cases", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert table_row(result.stdout, "c_0001") == ["c_0001", "escalated", "HIGH", "billing", "2", "11-02 09:30"]
    assert max(len(line) for line in unstyle(result.stdout).splitlines()) <= 80
