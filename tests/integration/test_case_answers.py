"""Answers about cases tell the truth: an unknown case is an error wherever an action is asked for,
and the actor's note is kept in the history and reaches the CRMs, except the CRM that sent the action.

A real router on a real nats-server, its real gRPC servicer and the notifier's on free ports, the
``clamor`` command against them, and a local Zendesk (tests/integration/crm_servers.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import grpc
import pytest
from click import unstyle
from typer.testing import CliRunner

from clamor.v1 import case_pb2, notifier_service_pb2, notifier_service_pb2_grpc, router_service_pb2_grpc
from clamor.v1 import router_service_pb2 as rs
from services.cli.app import app
from services.notifier.clients import NotificationLog
from services.notifier.server import NotifierServicer
from services.router.consumer import RulesHolder
from services.router.domain import case_id_for
from services.router.server import RouterParts, RouterServicer
from services.shared.case_actions import CaseActions
from services.shared.known_cases import KnownCases
from tests.integration.crm_servers import FakeZendesk, serve_crm
from tests.integration.router_harness import (
    RunningRouter,
    complaint,
    outbox_lines,
    publish_triaged,
    router_settings,
    running_router,
)
from tests.support.clock import tracer
from tests.support.eventually import eventually

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client as NatsClient
    from typer.testing import Result

UNKNOWN = "c_doesnotexist"
CASE_ID = case_id_for("mastodon:h1")


@asynccontextmanager
async def router_api(running: RunningRouter) -> AsyncIterator[int]:
    """The router's real servicer on a free port, over the running router's store and actions."""
    router = running.router
    servicer = RouterServicer(router.settings, RulesHolder(router.settings.rules), None)
    servicer.attach(RouterParts(cases=router.cases, actions=router.actions, dead_letters=router.dead_letters))
    server = grpc.aio.server()
    router_service_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)


@asynccontextmanager
async def notifier_api(running: RunningRouter) -> AsyncIterator[int]:
    """The notifier's real servicer on a free port, on the same NATS as the router."""
    js = running.js
    servicer = NotifierServicer()
    servicer.attach(NotificationLog(js, tracer()), CaseActions(js, tracer()), {}, KnownCases(js))
    server = grpc.aio.server()
    notifier_service_pb2_grpc.add_NotifierServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)


@pytest.fixture
async def running(nc: NatsClient, tmp_path: Path) -> AsyncIterator[RunningRouter]:
    js = nc.jetstream()
    async with running_router(js, router_settings({"outbox": {"path": "outbox.jsonl"}}, tmp_path)) as router:
        await publish_triaged(js, complaint("mastodon:h1"))
        await router.settle()
        yield router


async def clamor(tmp_path: Path, port: int, *args: str) -> Result:
    """The command, in a thread: it runs its own event loop, and the router answers on this one."""
    config = tmp_path / "clamor.yaml"
    config.write_text(f"router:\n  grpc: {{host: 127.0.0.1, port: {port}}}\n", encoding="utf-8")
    runner = CliRunner()

    def invoke() -> Result:
        return runner.invoke(app, [*args, "--config", str(config)], env={"COLUMNS": "250"})

    return await asyncio.to_thread(invoke)


# --- an unknown case is an error at every entry point ---------------------------------------


async def test_act_on_case_for_an_unknown_case_is_not_found_naming_the_case(running: RunningRouter) -> None:
    async with router_api(running) as port, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = router_service_pb2_grpc.RouterServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ActOnCase(rs.ActOnCaseRequest(case_id=UNKNOWN, kind=case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE))
    assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.NOT_FOUND, f"no case {UNKNOWN!r}")


@pytest.mark.parametrize("command", [["ack"], ["case", "ack"], ["case", "resolve"], ["case", "not-complaint"]])
async def test_the_cli_answering_an_unknown_case_prints_one_error_line_and_exits_1(
    running: RunningRouter, tmp_path: Path, command: list[str]
) -> None:
    async with router_api(running) as port:
        result = await clamor(tmp_path, port, *command, UNKNOWN, "--note", "called back")
    assert result.exit_code == 1
    assert unstyle(result.stderr).splitlines() == [f"no case {UNKNOWN} at the router at 127.0.0.1:{port}"]
    assert result.stdout == ""


async def test_the_notifier_acknowledging_an_unknown_case_is_not_found(running: RunningRouter) -> None:
    async with notifier_api(running) as port, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = notifier_service_pb2_grpc.NotifierServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Acknowledge(notifier_service_pb2.AcknowledgeRequest(case_id=UNKNOWN, actor="dana"))
    assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.NOT_FOUND, f"no case {UNKNOWN!r}")


async def test_the_notifier_acknowledges_a_case_the_router_holds_with_its_note(running: RunningRouter) -> None:
    async with notifier_api(running) as port, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = notifier_service_pb2_grpc.NotifierServiceStub(channel)
        answer = await stub.Acknowledge(
            notifier_service_pb2.AcknowledgeRequest(case_id=CASE_ID, actor="dana", note="on it")
        )
    await running.settle()
    entry = (await running.case(CASE_ID)).history[-1]
    assert (entry.event_kind, entry.note) == (case_pb2.CASE_EVENT_KIND_ACKNOWLEDGE, "on it")
    assert entry.detail == f"acknowledge by dana via grpc [{answer.action_id}]"


# --- the note is kept and reaches the CRM ---------------------------------------------------


async def test_the_cli_note_is_kept_in_the_history_and_shown(running: RunningRouter, tmp_path: Path) -> None:
    async with router_api(running) as port:
        acked = await clamor(tmp_path, port, "ack", CASE_ID, "--by", "dana", "--note", "called the customer back")
        assert acked.exit_code == 0, acked.output
        await running.settle()
        shown = await clamor(tmp_path, port, "case", "show", CASE_ID)
    entry = (await running.case(CASE_ID)).history[-1]
    assert (entry.event_kind, entry.note) == (case_pb2.CASE_EVENT_KIND_ACKNOWLEDGE, "called the customer back")
    assert "note: called the customer back" in unstyle(shown.stdout)


def zendesk_and_outbox(fake: FakeZendesk, tmp_path: Path) -> dict[str, object]:
    zendesk = {
        "kind": "zendesk",
        "name": "zendesk",
        "base_url": fake.base_url,
        "email": fake.email,
        "api_token": fake.api_token,
        "allow_hosts": ["127.0.0.1"],
    }
    return {
        "outbox": {"path": str(tmp_path / "outbox.jsonl")},
        "destinations": [zendesk],
        "default_destinations": ["zendesk", "outbox"],
    }


def comments(fake: FakeZendesk) -> list[str]:
    return [comment["body"] for thread in fake.comments.values() for comment in thread]


async def test_a_note_reaches_the_crm_comment_but_a_crm_action_is_not_echoed_to_that_crm(
    nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    fake = FakeZendesk()
    async with serve_crm(fake):
        settings = router_settings(zendesk_and_outbox(fake, tmp_path), tmp_path)
        async with running_router(js, settings) as router:
            await publish_triaged(js, complaint("mastodon:h1"))
            # The case is placed, then its deliveries made: both tickets exist before anything happens.
            await router.settle()
            await router.settle()
            assert len(fake.tickets) == 1
            assert len(outbox_lines(tmp_path / "outbox.jsonl")) == 1
            # Zendesk's own agent acknowledged it there, and Zendesk called back saying so.
            await router.router.actions.publish(
                CASE_ID,
                case_pb2.CASE_ACTION_KIND_ACKNOWLEDGE,
                actor="maria",
                via="crm",
                request_id="zd-1",
                note="taken in ZD",
                origin_destination="zendesk",
            )
            # Then somebody resolved it with the CLI's gRPC call.
            await router.router.actions.publish(
                CASE_ID,
                case_pb2.CASE_ACTION_KIND_RESOLVE,
                actor="dana",
                via="grpc",
                request_id="cli-1",
                note="refund sent",
            )
            await eventually(
                lambda: any("resolve by dana" in body for body in comments(fake)), what="the resolve comment"
            )
            await eventually(
                lambda: any(
                    event.get("note") == "refund sent"
                    for line in outbox_lines(tmp_path / "outbox.jsonl")
                    for event in line.get("events", [])
                ),
                what="the resolve event in the outbox",
            )
            history = (await router.case(CASE_ID)).history
    notes = [(e.note, e.origin_destination) for e in history if e.note]
    assert notes == [("taken in ZD", "zendesk"), ("refund sent", "")]
    [resolved] = [body for body in comments(fake) if "resolve by dana" in body]
    assert "Note: refund sent" in resolved
    # Zendesk made the acknowledgement: it hears of it from nobody, the outbox (not its source) does.
    assert not any("acknowledge by maria" in body or "taken in ZD" in body for body in comments(fake))
    outboxed = [event for line in outbox_lines(tmp_path / "outbox.jsonl") for event in line.get("events", [])]
    assert [event["note"] for event in outboxed if "note" in event] == ["taken in ZD", "refund sent"]
