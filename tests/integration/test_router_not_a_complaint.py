"""An answer of "not a complaint" resolves the case and becomes training data through triage's real Feedback RPC.

A real TriageService (the rules classifier, as in test_triage_feedback.py) on a loopback port writes
its feedback file; the router reaches it through ``triage_address`` and the case action goes in
through the CASE_ACTIONS stream and the router's real durable.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import grpc

from clamor.v1 import case_pb2, triage_service_pb2_grpc
from services.router.domain import case_id_for, event_label
from services.shared import subjects
from services.shared.jsonl import IdempotentJsonlFile
from services.shared.nats_server import free_port
from services.triage.domain import RuleClassifier
from services.triage.server import TriageServicer
from tests.integration.router_harness import complaint, publish_triaged, router_settings, running_router
from tests.support.eventually import eventually

if TYPE_CHECKING:
    from pathlib import Path

    from nats.aio.client import Client as NatsClient

    from services.router.config import RouterSettings

FIRST = "Is the new Acme app out yet? Asking for a friend"
SECOND = "Never mind, found it in the store. Looks nice!"
NOT_A_COMPLAINT = case_pb2.CASE_ACTION_KIND_NOT_A_COMPLAINT


@asynccontextmanager
async def serve_triage(feedback: Path, *, port: int = 0) -> AsyncIterator[int]:
    """TriageService with the rules classifier on ``port`` (0: a free one), its feedback file at ``feedback``."""
    server = grpc.aio.server()
    servicer = TriageServicer(RuleClassifier(), feedback=IdempotentJsonlFile(feedback))
    triage_service_pb2_grpc.add_TriageServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield bound
    finally:
        await server.stop(0)


def settings_for(tmp_path: Path, triage_port: int) -> RouterSettings:
    return router_settings({"outbox": {"path": "outbox.jsonl"}, "triage_address": f"127.0.0.1:{triage_port}"}, tmp_path)


def lines_of(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def noise(action_id: str, mention_id: str, text: str, actor: str) -> dict[str, Any]:
    """The training line triage writes for a post corrected to noise (services/triage/server.py Feedback)."""
    return {
        "id": f"{action_id}:{mention_id}",
        "mention_id": mention_id,
        "text": text,
        "label": "noise",
        "severity": None,
        "category": "none",
        "language": "en",
        "style": "feedback",
        "actor": actor,
    }


async def test_not_a_complaint_resolves_the_case_and_each_post_becomes_noise_for_triage(
    nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    feedback = tmp_path / "triage" / "feedback.jsonl"
    case_id = case_id_for("mastodon:nac1")
    async with serve_triage(feedback) as port, running_router(js, settings_for(tmp_path, port)) as running:
        # One customer's two posts: one case.
        await publish_triaged(js, complaint("mastodon:nac1", handle="curious", text=FIRST))
        await publish_triaged(js, complaint("mastodon:nac2", handle="curious", text=SECOND))
        await running.settle()
        action_id = await running.router.actions.publish(
            case_id, NOT_A_COMPLAINT, actor="Dana Agent", via="grpc", request_id="nac-1"
        )
        await running.settle()
        case = await running.case(case_id)
    assert case.state == case_pb2.CASE_STATE_RESOLVED
    assert event_label(case.history[-1]) == "not_a_complaint"
    assert case.history[-1].detail == f"not_a_complaint by Dana Agent via grpc [{action_id}]"
    assert lines_of(feedback) == [
        noise(action_id, "mastodon:nac1", FIRST, "Dana Agent"),
        noise(action_id, "mastodon:nac2", SECOND, "Dana Agent"),
    ]


async def test_an_answer_given_while_triage_is_down_reaches_it_once_triage_is_up(
    nc: NatsClient, tmp_path: Path
) -> None:
    js = nc.jetstream()
    feedback = tmp_path / "triage" / "feedback.jsonl"
    case_id = case_id_for("mastodon:nac3")
    spec = subjects.ROUTER_ACTIONS_CONSUMER
    port = free_port()  # nothing listens there yet
    async with running_router(js, settings_for(tmp_path, port)) as running:
        await publish_triaged(js, complaint("mastodon:nac3", text=FIRST))
        await running.settle()
        action_id = await running.router.actions.publish(
            case_id, NOT_A_COMPLAINT, actor="crm", via="crm", request_id="nac-3"
        )

        # Triage is down: the Feedback call waits for it (wait_for_ready, within its timeout) instead of
        # failing at once, and the action stays unacknowledged meanwhile.
        await asyncio.sleep(2.0)
        info = await js.consumer_info(spec.stream, spec.durable)
        assert info.num_ack_pending == 1
        assert not feedback.exists()
        async with serve_triage(feedback, port=port):
            # The waiting call goes through once triage listens: no retry delay to wait out.
            await eventually(lambda: bool(lines_of(feedback)), within_s=5.0, what="the feedback")
            await running.settle()
        case = await running.case(case_id)
    assert case.state == case_pb2.CASE_STATE_RESOLVED
    assert sum(event_label(event) == "not_a_complaint" for event in case.history) == 1
    assert lines_of(feedback) == [noise(action_id, "mastodon:nac3", FIRST, "crm")]
