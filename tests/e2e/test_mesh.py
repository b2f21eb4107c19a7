"""The whole mesh as processes: every complaint reaches the outbox once, traced end to end."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from clamor.v1 import case_pb2, notifier_service_pb2, router_service_pb2, triage_pb2
from services.cli import clients, traces
from tests.e2e.mesh import Mesh, mention_ids_of, outbox_cases, outbox_lines, sample_posts
from tests.e2e.verdicts import decided, expected_complaints, expected_verdicts

pytestmark = pytest.mark.e2e

POSTS = 150


@pytest.fixture(scope="module")
def finished_mesh(tmp_path_factory: pytest.TempPathFactory) -> Mesh:
    folder = tmp_path_factory.mktemp("mesh")
    mesh = Mesh(folder, sample_posts(folder, POSTS))
    mesh.start()
    try:
        mesh.wait_ready()
        mesh.wait_idle()
        acknowledge_one_case(mesh)
    finally:
        mesh.stop()  # flushes every service's spans
    return mesh


def test_every_complaint_reaches_the_outbox_exactly_once(finished_mesh: Mesh) -> None:
    cases = outbox_cases(finished_mesh.outbox)
    delivered = mention_ids_of(cases)
    expected = expected_complaints(finished_mesh.posts, "e2e")
    assert len(expected) > 30  # the sample must exercise the path
    assert [m for m, n in Counter(delivered).items() if n > 1] == []
    assert len({c["id"] for c in cases}) == len(cases)
    assert decided(delivered, finished_mesh.posts, "e2e") == set(expected)


def test_escalated_cases_reach_the_notifier(finished_mesh: Mesh) -> None:
    expected = expected_complaints(finished_mesh.posts, "e2e")
    borderline = expected_verdicts(finished_mesh.posts, "e2e")[1]
    severe = {m for m, r in expected.items() if r.severity >= triage_pb2.SEVERITY_HIGH}
    posts_of = [[m["mention"]["id"] for m in case["mentions"]] for case in outbox_cases(finished_mesh.outbox)]
    # A case is escalated when any of its posts is severe; the escalation names the case's first post.
    severe_cases = {ids[0] for ids in posts_of if set(ids) & severe and not set(ids) & borderline}
    notified = {n["mention_id"] for n in outbox_lines(finished_mesh.folder / "notifications.jsonl")}
    assert severe_cases
    assert severe_cases <= notified
    assert notified <= {ids[0] for ids in posts_of}


def case_at_router(mesh: Mesh, case_id: str) -> case_pb2.Case:
    async def get() -> case_pb2.Case:
        async with clients.connect(clients.address_of(mesh.config.router.grpc)) as channel:
            response = await clients.router(channel).GetCase(
                router_service_pb2.GetCaseRequest(case_id=case_id), timeout=5.0
            )
        return response.case

    return asyncio.run(get())


def acknowledge_through_notifier(mesh: Mesh, case_id: str) -> str:
    """The notifier's Acknowledge RPC (what a chat integration calls); the action id."""

    async def acknowledge() -> str:
        async with clients.connect(clients.address_of(mesh.config.notifier.grpc)) as channel:
            response = await clients.notifier(channel).Acknowledge(
                notifier_service_pb2.AcknowledgeRequest(case_id=case_id, actor="e2e-responder"), timeout=5.0
            )
        return response.action_id

    return asyncio.run(acknowledge())


def acknowledge_one_case(mesh: Mesh) -> None:
    """An acknowledgement through the notifier's gRPC, then wait for the router to record it on the case."""
    case_id = outbox_lines(mesh.folder / "notifications.jsonl")[0]["case_id"]
    action_id = acknowledge_through_notifier(mesh, case_id)
    deadline = time.monotonic() + 15
    while (case := case_at_router(mesh, case_id)).state != case_pb2.CASE_STATE_ACKNOWLEDGED:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    mesh.observed.update(case=case, action_id=action_id)


def test_an_acknowledgement_through_the_notifier_reaches_the_case_at_the_router(finished_mesh: Mesh) -> None:
    case: case_pb2.Case = finished_mesh.observed["case"]
    assert case_pb2.CaseState.Name(case.state) == "CASE_STATE_ACKNOWLEDGED"
    assert case.history[-1].detail == f"acknowledge by e2e-responder via grpc [{finished_mesh.observed['action_id']}]"


def test_one_mention_trace_holds_all_five_services(finished_mesh: Mesh) -> None:
    expected = expected_complaints(finished_mesh.posts, "e2e")
    mention_id = next(m for m, r in expected.items() if r.severity >= triage_pb2.SEVERITY_HIGH)
    spans = traces.trace_of(mention_id, traces.read_spans(finished_mesh.span_dir))
    assert len({s["trace_id"] for s in spans}) == 1
    roots = traces.build_forest(spans)
    assert len(roots) == 1
    assert roots[0].span["name"] == "discover e2e"
    assert traces.chain_services(roots[0]) == ["listener", "triage", "router", "notifier"]
    kinds = {(s["service"], s["name"].split(" ")[0], s["kind"]) for s in spans}
    assert ("triage", "process", "CONSUMER") in kinds
    assert ("router", "publish", "PRODUCER") in kinds
    # The reputation service counts the post beside the router: a branch off triage's publish.
    assert ("reputation", "process", "CONSUMER") in kinds
    [counted] = [s for s in spans if s["service"] == "reputation" and s["name"].startswith("process ")]
    [published] = [s for s in spans if s["service"] == "triage" and s["name"].startswith("publish clamor.triaged.")]
    assert counted["parent_span_id"] == published["span_id"]
    assert {s["service"] for s in spans} == {"listener", "triage", "router", "reputation", "notifier"}


def test_sigkill_of_triage_mid_run_loses_nothing(tmp_path: Path) -> None:
    posts = sample_posts(tmp_path, POSTS)
    mesh = Mesh(tmp_path, posts, rate=25.0)
    mesh.start()
    try:
        mesh.wait_ready()
        deadline = time.monotonic() + 60
        while mesh.counters("triage").get("triaged", 0) < 20:
            assert time.monotonic() < deadline, mesh.logs()
            time.sleep(0.1)
        held = mesh.freeze_with_unacked_work("triage")
        assert held > 0
        mesh.kill("triage")
        mesh.start_service("triage")
        # Unacked messages come back after the consumer's ack_wait (30 s).
        mesh.wait_idle(timeout_s=150)
    finally:
        mesh.stop()
    delivered = mention_ids_of(outbox_cases(mesh.outbox))
    assert [m for m, n in Counter(delivered).items() if n > 1] == []
    assert decided(delivered, posts, "e2e") == set(expected_complaints(posts, "e2e"))
