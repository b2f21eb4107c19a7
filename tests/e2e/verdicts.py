"""What triage must decide about a replay file: the same model, run here on the same posts.

The service classifies in batches of its own size; the scores agree to float precision, so a post
scored within ``BORDERLINE`` of the threshold may land either side and is not asserted. A post by
one of its watch's own accounts is never a complaint, whatever the model would say.
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING

from clamor.v1 import triage_pb2
from services.triage.domain import Post
from services.triage.model import ModelClassifier

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

    from services.listener.watch import Watch

BORDERLINE = 0.002


@cache
def classifier() -> ModelClassifier:
    return ModelClassifier.load()


def expected_verdicts(
    posts: Path, source: str, *, watches: Mapping[str, Watch] | None = None
) -> tuple[dict[str, triage_pb2.TriageResult], set[str]]:
    """(complaints by mention id, mention ids too near the threshold to call); ``watches`` as the listener has them."""
    rows = [json.loads(line) for line in posts.read_text(encoding="utf-8").splitlines() if line.strip()]
    watches = watches or {}
    rows = [
        row
        for row in rows
        if not ((watch := watches.get(row.get("watch", ""))) and watch.is_own(row["author"].get("handle", "")))
    ]
    model = classifier()
    results = model.classify([Post(r["text"], r.get("language", ""), r["author"]["followers"]) for r in rows])
    complaints: dict[str, triage_pb2.TriageResult] = {}
    borderline: set[str] = set()
    for row, result in zip(rows, results, strict=True):
        mention_id = f"{source}:{row['id']}"
        if abs(result.complaint_score - model.threshold) < BORDERLINE:
            borderline.add(mention_id)
        if result.verdict == triage_pb2.VERDICT_COMPLAINT:
            complaints[mention_id] = result
    return complaints, borderline


def expected_complaints(posts: Path, source: str) -> dict[str, triage_pb2.TriageResult]:
    """Triage's complaints, the borderline posts left out."""
    complaints, borderline = expected_verdicts(posts, source)
    return {m: r for m, r in complaints.items() if m not in borderline}


def decided(mention_ids: Iterable[str], posts: Path, source: str) -> set[str]:
    """``mention_ids`` without the borderline posts, which may land either side."""
    return set(mention_ids) - expected_verdicts(posts, source)[1]
