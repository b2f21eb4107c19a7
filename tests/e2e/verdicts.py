"""What triage must decide about a replay file: the same model, run here on the same posts.

The service classifies in batches of its own size; the scores agree to float precision, so a post
scored within ``BORDERLINE`` of the threshold may land either side and is not asserted.
"""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING

from clamor.v1 import triage_pb2
from services.triage.domain import Post
from services.triage.model import ModelClassifier

if TYPE_CHECKING:
    from pathlib import Path

BORDERLINE = 0.002


@cache
def classifier() -> ModelClassifier:
    return ModelClassifier.load()


def expected_verdicts(posts: Path, source: str) -> tuple[dict[str, triage_pb2.TriageResult], set[str]]:
    """(complaints by mention id, mention ids too near the threshold to call)."""
    rows = [json.loads(line) for line in posts.read_text(encoding="utf-8").splitlines() if line.strip()]
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
