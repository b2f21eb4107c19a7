"""Read the JSON-lines span files of ``clamor up`` and draw one mention's trace as a tree."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.tree import Tree


@dataclass
class SpanNode:
    span: dict[str, Any]
    children: list[SpanNode] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        start, end = self.span.get("start_ns") or 0, self.span.get("end_ns") or 0
        return max(end - start, 0) / 1e6


def read_spans(span_dir: Path) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = []
    for path in sorted(span_dir.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    spans.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line being written right now
    return spans


def trace_of(mention_id: str, spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every span of the trace(s) that carry ``mention_id``; the discovery trace comes first."""
    trace_ids = {s["trace_id"] for s in spans if s.get("attributes", {}).get("clamor.mention.id") == mention_id}
    return [s for s in spans if s["trace_id"] in trace_ids]


def build_forest(spans: list[dict[str, Any]]) -> list[SpanNode]:
    nodes = {s["span_id"]: SpanNode(s) for s in spans}
    roots: list[SpanNode] = []
    children: dict[str, list[SpanNode]] = defaultdict(list)
    for node in nodes.values():
        parent = node.span.get("parent_span_id", "")
        if parent and parent in nodes:
            children[parent].append(node)
        else:
            roots.append(node)
    for span_id, kids in children.items():
        nodes[span_id].children = sorted(kids, key=lambda n: n.span.get("start_ns") or 0)
    return sorted(roots, key=lambda n: n.span.get("start_ns") or 0)


def chain_services(root: SpanNode) -> list[str]:
    """Services along the deepest parent chain from ``root``, in order, without repeats."""
    best: list[SpanNode] = []

    def walk(node: SpanNode, path: list[SpanNode]) -> None:
        nonlocal best
        path = [*path, node]
        if len(path) > len(best):
            best = path
        for child in node.children:
            walk(child, path)

    walk(root, [])
    services: list[str] = []
    for node in best:
        if not services or services[-1] != node.span["service"]:
            services.append(node.span["service"])
    return services


def render(roots: list[SpanNode], title: str) -> Tree:
    tree = Tree(title)

    def add(branch: Tree, node: SpanNode) -> None:
        span = node.span
        error = " [red]ERROR[/red]" if span.get("status") == "ERROR" else ""
        label = (
            f"[bold]{escape(span['service'])}[/bold]  {escape(span['name'])}  [dim]{span.get('kind', '').lower()}[/dim]"
            f"  [cyan]{node.duration_ms:.1f} ms[/cyan]{error}"
        )
        child_branch = branch.add(label)
        for child in node.children:
            add(child_branch, child)

    for root in roots:
        add(tree, root)
    return tree
