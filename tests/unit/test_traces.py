"""Trace trees from span dicts: one mention's trace, its forest and the chain of services."""

from __future__ import annotations

from typing import Any

import pytest

from services.cli.traces import build_forest, chain_services, trace_of

MENTION = "sample:p0001"


def span(
    span_id: str, service: str, start: int, *, parent: str = "", trace: str = "t1", mention: str = ""
) -> dict[str, Any]:
    return {
        "trace_id": trace,
        "span_id": span_id,
        "parent_span_id": parent,
        "service": service,
        "name": f"{service} work",
        "kind": "INTERNAL",
        "start_ns": start,
        "end_ns": start + 1_000_000,
        "attributes": {"clamor.mention.id": mention} if mention else {},
    }


@pytest.fixture
def spans() -> list[dict[str, Any]]:
    """listener → triage → router → notifier for MENTION, a side span, and an unrelated trace."""
    return [
        span("n1", "notifier", 400, parent="r2"),
        span("t1", "triage", 200, parent="l1", mention=MENTION),
        span("l1", "listener", 100, mention=MENTION),
        span("r2", "router", 350, parent="r1"),
        span("r3", "router", 320, parent="r1"),
        span("r1", "router", 300, parent="t1"),
        span("tx", "triage", 210, parent="l1"),
        span("u1", "listener", 50, trace="t2", mention="sample:p0002"),
        span("u2", "triage", 60, parent="u1", trace="t2", mention="sample:p0002"),
    ]


def test_trace_of_keeps_only_the_mentions_trace(spans: list[dict[str, Any]]) -> None:
    assert {s["span_id"] for s in trace_of(MENTION, spans)} == {"l1", "t1", "tx", "r1", "r2", "r3", "n1"}


def test_trace_of_includes_spans_without_the_mention_attribute(spans: list[dict[str, Any]]) -> None:
    assert "n1" in {s["span_id"] for s in trace_of(MENTION, spans)}


def test_trace_of_unknown_mention_is_empty(spans: list[dict[str, Any]]) -> None:
    assert trace_of("sample:nope", spans) == []


def test_trace_of_gathers_every_trace_that_carries_the_mention(spans: list[dict[str, Any]]) -> None:
    spans.append(span("x1", "router", 900, trace="t3", mention=MENTION))
    assert {s["trace_id"] for s in trace_of(MENTION, spans)} == {"t1", "t3"}


def test_build_forest_has_one_root_per_trace(spans: list[dict[str, Any]]) -> None:
    assert [root.span["span_id"] for root in build_forest(spans)] == ["u1", "l1"]


def test_build_forest_orders_children_by_start(spans: list[dict[str, Any]]) -> None:
    (root,) = build_forest(trace_of(MENTION, spans))
    assert [child.span["span_id"] for child in root.children] == ["t1", "tx"]


def test_build_forest_nests_the_chain(spans: list[dict[str, Any]]) -> None:
    (root,) = build_forest(trace_of(MENTION, spans))
    router = root.children[0].children[0]
    assert router.span["span_id"] == "r1"
    assert [c.span["span_id"] for c in router.children] == ["r3", "r2"]
    assert [c.span["span_id"] for c in router.children[1].children] == ["n1"]


def test_span_with_a_missing_parent_becomes_a_root(spans: list[dict[str, Any]]) -> None:
    orphan = span("o1", "router", 5, parent="gone")
    roots = build_forest([*spans, orphan])
    assert roots[0].span["span_id"] == "o1"


def test_span_duration_is_in_milliseconds() -> None:
    (root,) = build_forest([span("a", "listener", 0)])
    assert root.duration_ms == pytest.approx(1.0)


def test_span_with_end_before_start_has_zero_duration() -> None:
    raw = span("a", "listener", 5_000_000)
    raw["end_ns"] = 1
    (root,) = build_forest([raw])
    assert root.duration_ms == 0


def test_chain_services_follows_the_deepest_path(spans: list[dict[str, Any]]) -> None:
    (root,) = build_forest(trace_of(MENTION, spans))
    assert chain_services(root) == ["listener", "triage", "router", "notifier"]


def test_chain_services_collapses_repeated_services() -> None:
    chain = [
        span("a", "listener", 1),
        span("b", "listener", 2, parent="a"),
        span("c", "triage", 3, parent="b"),
        span("d", "triage", 4, parent="c"),
    ]
    (root,) = build_forest(chain)
    assert chain_services(root) == ["listener", "triage"]


def test_chain_services_of_a_lone_span_is_its_service() -> None:
    (root,) = build_forest([span("a", "router", 1)])
    assert chain_services(root) == ["router"]
