"""The whole mesh as processes: every complaint reaches the outbox once, traced end to end."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from clamor.v1 import case_pb2, notifier_service_pb2, router_service_pb2, triage_pb2
from services.cli import clients, traces
from services.cli.mesh import SERVICES
from services.shared import subjects
from services.shared.metric_catalogue import BY_NAME
from services.shared.telemetry import package_version
from tests.e2e.mesh import Mesh, mention_ids_of, outbox_cases, outbox_lines, sample_posts
from tests.e2e.verdicts import decided, expected_complaints, expected_verdicts
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.prometheus_text import samples, total

pytestmark = pytest.mark.e2e

POSTS = 150


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def otel_variables(receiver: OtlpReceiver) -> dict[str, str]:
    """Only standard OTEL_* variables: traces over gRPC, metrics over HTTP, exported every second."""
    return {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{receiver.http_port}/v1/metrics",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=e2e",
    }


@pytest.fixture(scope="module")
def finished_mesh(tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Mesh:
    folder = tmp_path_factory.mktemp("mesh")
    mesh = Mesh(folder, sample_posts(folder, POSTS), env=otel_variables(receiver))
    mesh.start()
    try:
        mesh.wait_ready()
        mesh.observed["poison_trace_id"] = asyncio.run(publish_undecodable_mention(mesh))
        mesh.wait_idle()
        acknowledge_one_case(mesh)
        mesh.observed["metrics"] = settled_metrics(mesh)
        assert mesh.nats is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{mesh.nats.monitor_port}/jsz", timeout=10) as answer:
            mesh.observed["jsz"] = json.loads(answer.read())
    finally:
        mesh.stop()  # flushes every service's spans and metrics
    return mesh


async def publish_undecodable_mention(mesh: Mesh) -> str:
    """A mention that is not a Mention, inside a trace of its own: triage must dead-letter it. Its trace id."""
    trace_id = secrets.token_hex(16)
    nc = await nats.connect(servers=mesh.servers)
    try:
        await nc.jetstream().publish(
            subjects.mention_subject("e2e"),
            b"\xff\xfe not a protobuf Mention",
            headers={
                subjects.MSG_ID_HEADER: "poison-1",
                "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
            },
        )
    finally:
        await nc.close()
    return trace_id


def settled_metrics(mesh: Mesh) -> dict[str, str]:
    """Every process's /metrics once the lag gauges (read every few seconds) show the idle mesh."""
    deadline = time.monotonic() + 60
    while True:
        pages = {key: mesh.scrape(key) for key in mesh.processes}
        lag = total(list(pages.values()), "clamor_jetstream_consumer_pending")
        lag += total(list(pages.values()), "clamor_jetstream_consumer_ack_pending")
        depths = [s for page in pages.values() for s in samples(page) if s.name == "clamor_dead_letters_depth"]
        stages = {s.labels["clamor_stage"] for s in depths}
        if lag == 0 and stages >= {spec.durable for spec in subjects.ALL_CONSUMERS}:
            return pages
        assert time.monotonic() < deadline, f"lag {lag}, stages {stages}"
        time.sleep(0.5)


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


# --- metrics, OTLP and logs of the same run ----------------------------------------------------


def test_metrics_scraped_from_each_service_agree_with_what_happened(finished_mesh: Mesh) -> None:
    pages: dict[str, str] = finished_mesh.observed["metrics"]
    cases = outbox_cases(finished_mesh.outbox)
    deliveries = outbox_lines(finished_mesh.outbox)
    notifications = outbox_lines(finished_mesh.folder / "notifications.jsonl")
    complaints, borderline = expected_verdicts(finished_mesh.posts, "e2e")

    assert total(pages["listener"], "clamor_listener_posts_new_total", clamor_source="e2e") == POSTS
    assert total(pages["listener"], "clamor_listener_posts_seen_total", clamor_source="e2e") == POSTS
    sent = "messaging_client_sent_messages_total"
    assert total(pages["listener"], sent, error_type="") == POSTS  # one mention per post, by platform subject
    assert total(pages["triage"], sent, error_type="") == POSTS
    assert total(pages["triage"], "clamor_triage_verdicts_total") == POSTS
    counted = total(pages["triage"], "clamor_triage_verdicts_total", clamor_label="complaint")
    assert len(set(complaints) - borderline) <= counted <= len(set(complaints) | borderline)
    # Every post processed once by triage, and the undecodable one dead-lettered by class.
    consumed = "messaging_client_consumed_messages_total"
    assert total(pages["triage"], consumed, messaging_consumer_group_name="triage", error_type="") == POSTS
    assert total(pages["triage"], consumed, messaging_consumer_group_name="triage", error_type="PermanentError") == 1
    assert total(pages["triage"], "clamor_messages_dead_lettered_total", clamor_stage="triage") == 1
    assert total(pages["triage"], "clamor_dead_letters_depth", clamor_stage="triage") == 1
    assert total([p for k, p in pages.items() if k != "triage"], "clamor_dead_letters_depth") == 0
    timed = total(pages["triage"], "messaging_process_duration_seconds_count", messaging_consumer_group_name="triage")
    assert timed == POSTS + 1

    assert total(pages["router"], "clamor_router_cases_opened_total") == len(cases)
    assert total(pages["router"], "clamor_router_crm_requests_total", clamor_outcome="delivered") == len(deliveries)
    assert total(pages["router"], "clamor_router_dead_letters_total") == 0
    assert total(pages["notifier"], "clamor_notifier_notifications_total", clamor_outcome="sent") == len(notifications)

    # gRPC calls are timed, the status polls and probes are not.
    assert total(pages["notifier"], "rpc_server_call_duration_seconds_count", rpc_method="Acknowledge") == 1
    assert total(pages["router"], "rpc_server_call_duration_seconds_count", rpc_method="GetCase") >= 1
    for page in pages.values():
        assert total(page, "rpc_server_call_duration_seconds_count", rpc_method="GetStatus") == 0
        assert total(page, "rpc_server_call_duration_seconds_count", rpc_method="Check") == 0
        assert total(page, "process_resident_memory_bytes") > 0

    # The harness polled GetStatus and health all through the run: none of it became a span.
    polled = [
        s["name"] for s in traces.read_spans(finished_mesh.span_dir) if "Status" in s["name"] or "Health" in s["name"]
    ]
    assert polled == []

    # nats-server's own monitoring sees the same streams (what its Prometheus exporter reads).
    assert finished_mesh.observed["jsz"]["streams"] >= 5


def test_otlp_carries_every_services_traces_over_grpc_and_metrics_over_http(
    finished_mesh: Mesh, receiver: OtlpReceiver
) -> None:
    services = set(SERVICES)
    assert {("traces", s) for s in services - {"reputation"}} <= receiver.protocols["grpc"]
    assert {("metrics", s) for s in services} <= receiver.protocols["http"]
    assert not {signal for signal, _ in receiver.protocols["grpc"]} - {"traces"}
    for metric in receiver.metrics:
        spec = BY_NAME.get(metric.name)
        assert spec is not None, metric.name
        assert metric.unit == spec.unit, metric.name
        assert set(metric.attributes) <= set(spec.attributes), (metric.name, metric.attributes)
        assert metric.resource["service.namespace"] == "clamor"
        assert metric.resource["service.version"] == package_version()
        assert metric.resource["deployment.environment.name"] == "e2e"
    instances = {(m.service, m.resource["service.instance.id"]) for m in receiver.metrics}
    assert len(instances) == len(services) == len({instance for _, instance in instances})
    # The last export (at shutdown) holds the same cumulative count /metrics showed.
    new_posts = [m.value for m in receiver.metrics if m.name == "clamor.listener.posts.new"]
    assert new_posts[-1] == POSTS


def test_warnings_and_errors_about_a_message_carry_its_trace_id(finished_mesh: Mesh) -> None:
    lines = [
        json.loads(line)
        for path in finished_mesh.folder.glob("*.log")
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
        if line.startswith("{")
    ]
    poison = [line for line in lines if "dead-lettered" in line["message"] and line["level"] == "ERROR"]
    assert [(line["service"], line.get("trace_id")) for line in poison] == [
        ("triage", finished_mesh.observed["poison_trace_id"])
    ]
    # Every warning or error written while a message was in hand names its trace: those of the
    # consumers' settle path (retries, dead letters) name the subject they were about.
    about_messages = [line for line in lines if line["level"] in ("WARNING", "ERROR") and "clamor." in line["message"]]
    assert about_messages
    assert [line for line in about_messages if not line.get("trace_id")] == []
    # RFC 3339 with milliseconds and the zone.
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"]) for line in lines)


def test_no_log_line_or_span_holds_a_posts_text(finished_mesh: Mesh) -> None:
    """Logs and traces carry ids, never what people wrote (their text stays in the streams and cases)."""
    texts = [json.loads(line)["text"] for line in finished_mesh.posts.read_text(encoding="utf-8").splitlines()]
    # A stretch long enough to be the post's own words, short enough to survive truncation.
    snippets = {text[:24] for text in texts if len(text) >= 24}
    assert len(snippets) > 100
    files = [*finished_mesh.folder.glob("*.log"), *finished_mesh.span_dir.glob("*.jsonl")]
    assert len(files) >= 10
    for path in files:
        content = path.read_text(encoding="utf-8", errors="replace")
        assert [snippet for snippet in snippets if snippet in content] == [], path.name
